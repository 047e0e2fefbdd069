"""Report paths (`--json`, `--junit`, `--llem-json`): `-` and /dev/stdout are stdout, a link is
written through and stays a link, a FIFO never hangs llem, a link or FIFO another user planted
in a sticky directory is refused, and so is a device no report belongs on."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed import ensure_test_user, user_command
from testbed.captures import verbatim

from pytest_llem.host import jsonfile
from pytest_llem.host.jsonfile import ReportPathError, report_target, same_destination, write_report

ROOT = os.geteuid() == 0
LOCAL_STUDY = "name: s\nexperiments: [{model: gpt2, backend: pytorch, command: [python, w.py]}]\n"
LIMIT_S = 60  # far beyond what one of these runs takes: a run still going then is hung


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Path]:
    """A directory anyone may enter, with a local-only study and an `nvidia-smi` answering as
    an idle H200: `llem preflight s.yaml` runs the measurement checks alone, and passes."""
    where = Path(tempfile.mkdtemp(prefix="llem-report-paths-", dir="/tmp"))
    where.chmod(0o777)
    (where / "smi-q.txt").write_text(verbatim("captured/h200-580.159.04_smi-q.txt"))
    tool = where / "bin" / "nvidia-smi"
    tool.parent.mkdir()
    tool.write_text(f"#!/bin/sh\nexec cat {where / 'smi-q.txt'}\n")
    for path in (where / "smi-q.txt", tool, tool.parent):
        path.chmod(0o755)
    (where / "s.yaml").write_text(LOCAL_STUDY)
    (where / "s.yaml").chmod(0o644)
    yield where
    subprocess.run(["rm", "-rf", "--", str(where)], check=False)


def llem_env(where: Path) -> dict[str, str]:
    path = f"{where / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    return {
        "PATH": path,
        "HOME": str(where),
        "XDG_CACHE_HOME": str(where / "cache"),
        "LANG": "C.UTF-8",
    }


# Run as root, a command gets a /dev of its own (a tmpfs in a mount namespace of its own,
# with the links /dev/stdout, /dev/stderr, /dev/fd and the real /dev/null): llem as it was
# replaced /dev/stdout with a regular file, and a regression must not do that to this machine.
PRIVATE_DEV = (
    'd="$1"; shift; mount -t tmpfs llem-test-dev "$d" && touch "$d/null" '
    '&& mount --bind /dev/null "$d/null" && ln -s /proc/self/fd/1 "$d/stdout" '
    '&& ln -s /proc/self/fd/2 "$d/stderr" && ln -s /proc/self/fd "$d/fd" '
    '&& mount --rbind "$d" /dev && exec "$@"'
)


@functools.cache
def private_dev_reason() -> str | None:
    """Why a command cannot have a /dev of its own here, or None."""
    try:
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError as exc:
        return f"unshare: {exc.strerror}"
    return None if probe.returncode == 0 else f"unshare: {probe.stderr.strip()}"


def with_private_dev(cmd: list[str], where: Path) -> list[str]:
    if not ROOT:  # (/dev is not the user's to change)
        return cmd
    if private_dev_reason() is not None:
        if "/dev/stdout" in cmd:
            pytest.skip(f"no private /dev for /dev/stdout as root: {private_dev_reason()}")
        return cmd
    mount_point = where / "dev"
    mount_point.mkdir(exist_ok=True)
    unshare = ["unshare", "--mount", "--propagation", "private"]
    return [*unshare, "sh", "-c", PRIVATE_DEV, "sh", str(mount_point), *cmd]


def llem(
    where: Path, *args: str, stdout: int | object = subprocess.PIPE, user: bool = False
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest_llem", "preflight", "s.yaml", *args]
    return subprocess.run(
        with_private_dev(user_command(cmd) if user else cmd, where),
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        text=True,
        cwd=where,
        env=llem_env(where),
        timeout=LIMIT_S,
    )


def planted_by_another_user(path: Path) -> None:
    """Give ``path`` (a link or a FIFO) to the test user, as if that user had made it."""
    import pwd

    user = pwd.getpwnam(ensure_test_user())
    os.lchown(path, user.pw_uid, user.pw_gid)


# -- stdout ------------------------------------------------------------------------------------


def test_json_to_dash_is_stdout_alone_and_the_checklist_goes_to_stderr(host: Path) -> None:
    result = llem(host, "--json", "-")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "passed"  # (what `| jq .status` reads)
    assert "Docker pre-flight passed: 7 checks" in result.stderr
    assert not (host / "-").exists()


def test_json_to_dev_stdout_through_a_pipe_is_the_json_alone(host: Path) -> None:
    """`llem preflight --json /dev/stdout | jq .status` works: the checklist is on stderr."""
    result = llem(host, "--json", "/dev/stdout")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "passed"
    assert "✓ gpu-idle: GPU 0 idle" in result.stderr


def test_junit_to_dash_is_stdout_alone(host: Path) -> None:
    result = llem(host, "--junit", "-", "--json", "r.json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<?xml") and "<testsuite" in result.stdout
    assert json.loads((host / "r.json").read_text())["status"] == "passed"


def test_a_link_to_stdout_redirected_to_a_file_stays_a_link(host: Path) -> None:
    """`llem preflight --json /dev/stdout > out.txt` as root once replaced /dev/stdout with a
    regular file. Here the link is one of ours, pointing where /dev/stdout does."""
    link = host / "stdout-link"
    link.symlink_to("/proc/self/fd/1")
    with open(host / "out.txt", "w") as out:
        result = llem(host, "--json", str(link), stdout=out)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert json.loads((host / "out.txt").read_text())["status"] == "passed"  # the JSON alone
    assert "Docker pre-flight passed: 7 checks" in result.stderr


def test_a_redirect_appended_to_keeps_what_it_held(host: Path) -> None:
    (host / "log.txt").write_text("earlier line\n")
    with open(host / "log.txt", "a") as out:
        result = llem(host, "--json", "/dev/stdout", stdout=out)
    assert result.returncode == 0, result.stderr
    earlier, _, text = (host / "log.txt").read_text().partition("\n")
    assert earlier == "earlier line" and json.loads(text)["status"] == "passed"


@pytest.mark.skipif(not ROOT, reason="runs llem as the test user (needs root)")
def test_json_to_dev_stdout_as_a_user_is_no_usage_error(host: Path) -> None:
    """A user who cannot write /dev got exit 2 (a shut gate on a healthy host)."""
    with open(host / "out.txt", "w") as out:
        os.fchmod(out.fileno(), 0o666)
        result = llem(host, "--json", "/dev/stdout", stdout=out, user=True)
    assert result.returncode == 0, result.stderr
    assert json.loads((host / "out.txt").read_text())["status"] == "passed"
    assert Path("/dev/stdout").is_symlink()


# -- links -------------------------------------------------------------------------------------


def test_a_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "latest.json"
    target.parent.mkdir()
    target.write_text("an older, longer report than the new one\n" * 10)
    link = tmp_path / "r.json"
    link.symlink_to(target)
    write_report(report_target(str(link)), '{"a": 1}\n')
    assert link.is_symlink() and target.read_text() == '{"a": 1}\n'
    assert not list(tmp_path.glob(".r.json.*"))


def test_a_dangling_link_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "r.json"
    link.symlink_to(tmp_path / "made.json")
    write_report(report_target(str(link)), "{}\n")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "{}\n"


def test_a_regular_file_is_still_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")
    inode = path.stat().st_ino
    write_report(report_target(str(path)), "new\n")
    assert path.read_text() == "new\n" and path.stat().st_ino != inode


@pytest.fixture
def sticky(tmp_path: Path) -> Path:
    """A world-writable sticky directory like /tmp (ours)."""
    where = tmp_path / "tmp"
    where.mkdir()
    where.chmod(0o1777)
    return where


@pytest.mark.skipif(not ROOT, reason="a link of another user needs root to make")
def test_a_link_another_user_planted_in_a_sticky_directory_is_refused(
    sticky: Path, tmp_path: Path
) -> None:
    """As fs.protected_symlinks refuses it, whether or not the sysctl is on."""
    victim = tmp_path / "victim"
    victim.write_text("kept\n")
    link = sticky / "report.xml"
    link.symlink_to(victim)
    planted_by_another_user(link)
    with pytest.raises(ReportPathError, match=r"is a link of another user .* sticky directory"):
        report_target(str(link))
    # Also as a directory on the way, and when it was planted after the path was judged.
    (sticky / "dir").symlink_to(tmp_path)
    planted_by_another_user(sticky / "dir")
    with pytest.raises(ReportPathError, match="dir is a link of another user"):
        report_target(str(sticky / "dir" / "victim"))
    judged = report_target(str(sticky / "later.xml"))
    (sticky / "later.xml").symlink_to(victim)
    planted_by_another_user(sticky / "later.xml")
    with pytest.raises(ReportPathError):
        write_report(judged, "<xml/>\n")
    assert victim.read_text() == "kept\n"


@pytest.mark.skipif(not ROOT, reason="a directory of another user needs root to make")
def test_links_of_the_caller_or_the_directory_owner_are_followed(
    sticky: Path, tmp_path: Path
) -> None:
    target = tmp_path / "r.json"
    (sticky / "mine").symlink_to(target)  # the caller's own link
    write_report(report_target(str(sticky / "mine")), "1\n")
    assert target.read_text() == "1\n"
    planted_by_another_user(sticky)  # the directory's owner's link
    (sticky / "owners").symlink_to(target)
    planted_by_another_user(sticky / "owners")
    write_report(report_target(str(sticky / "owners")), "2\n")
    assert target.read_text() == "2\n"


@pytest.mark.skipif(not ROOT, reason="runs llem as root with a link of another user")
def test_llem_refuses_a_planted_link_with_one_line_and_exit_2(host: Path, sticky: Path) -> None:
    victim = host / "victim"
    victim.write_text("kept\n")
    (sticky / "r.xml").symlink_to(victim)
    planted_by_another_user(sticky / "r.xml")
    result = llem(host, "--junit", str(sticky / "r.xml"))
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.startswith(f"llem: error: --junit: cannot write {sticky / 'r.xml'}: ")
    assert len(result.stderr.splitlines()) == 1 and victim.read_text() == "kept\n"


# -- FIFOs -------------------------------------------------------------------------------------


def test_a_fifo_nobody_reads_is_one_line_not_a_hang(host: Path) -> None:
    os.mkfifo(host / "r.fifo")
    result = llem(host, "--json", "r.fifo")  # (would raise TimeoutExpired if it hung)
    assert result.returncode == 1
    assert (
        result.stderr
        == "llem: error: cannot write the JSON report to r.fifo: no process reads this FIFO\n"
    )
    assert (host / "r.fifo").is_fifo()


def test_a_fifo_with_a_reader_gets_the_report(tmp_path: Path) -> None:
    fifo = tmp_path / "r.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    text = json.dumps({"big": "x" * 300_000}) + "\n"  # more than a pipe holds: blocking writes
    target = report_target(str(fifo))
    for _ in range(100):  # until the reader has the FIFO open
        try:
            write_report(target, text)
            break
        except OSError:
            threading.Event().wait(0.05)
    reader.join(timeout=30)
    assert got == [text.encode()]


@pytest.mark.skipif(not ROOT, reason="a FIFO of another user needs root to make")
def test_a_fifo_another_user_planted_in_a_sticky_directory_is_refused(sticky: Path) -> None:
    os.mkfifo(sticky / "r.json")
    planted_by_another_user(sticky / "r.json")
    with pytest.raises(ReportPathError, match="is a FIFO of another user"):
        report_target(str(sticky / "r.json"))


# -- devices -----------------------------------------------------------------------------------


def test_dev_null_and_terminals_are_report_places_other_devices_are_not() -> None:
    assert report_target("/dev/null").discard
    with pytest.raises(ReportPathError, match=r"is a character device \(1:5\)"):
        report_target("/dev/zero")
    assert jsonfile._is_terminal(os.makedev(136, 3)) and jsonfile._is_terminal(os.makedev(5, 0))


@pytest.fixture
def block_device(tmp_path: Path) -> Path:
    """A block device node of a major number no driver has (local/experimental use: 240)."""
    node = tmp_path / "disk"
    try:
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(240, 7))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc.strerror}")
    return node


def test_a_report_onto_a_block_device_is_refused_before_the_run(
    host: Path, block_device: Path
) -> None:
    """The JUnit XML was written onto a loop device through a link in /tmp."""
    link = host / "r.xml"
    link.symlink_to(block_device)
    result = llem(host, "--junit", "r.xml")
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == (
        "llem: error: --junit: cannot write r.xml: is a block device (240:7): a report goes to "
        "a regular file, a FIFO, a terminal, /dev/stdout, /dev/stderr or /dev/null\n"
    )


# -- two reports, one place --------------------------------------------------------------------


def test_same_destination(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "x")
    x, link = report_target(str(tmp_path / "x")), report_target(str(tmp_path / "link"))
    new = report_target(str(tmp_path / "new.json"))
    assert same_destination(x, link) and not same_destination(x, new)
    assert same_destination(new, report_target(f"{tmp_path}/./new.json"))
    assert same_destination(report_target("-"), report_target("-"))
    assert not same_destination(report_target("/dev/null"), report_target("/dev/null"))
