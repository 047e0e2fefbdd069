"""What `docker cp` brings back from a container is untrusted: only plain, capped, new files.

A stand-in `docker` on PATH writes a crafted tar stream (as a hostile daemon or container
could make it) to stdout, or fails as the CLI does.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from pytest_llem.host.containers import copy_in, copy_out, tar_of


def member(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def stream(*members: tuple[str, bytes, dict[str, object]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        member(tar, ".", type=tarfile.DIRTYPE, mode=0o777)
        for name, data, attrs in members:
            member(tar, name, data, **attrs)
    return buffer.getvalue()


@pytest.fixture
def fake_docker(tmp_path: Path) -> dict[str, str]:
    """An environment whose `docker` prints $FAKE_TAR, then says $FAKE_ERR and exits $FAKE_RC."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        'echo "$@" > "$FAKE_ARGS"\n'
        '[ -n "$FAKE_STDIN" ] && cat > "$FAKE_STDIN"\n'
        '[ -n "$FAKE_SLEEP" ] && sleep "$FAKE_SLEEP"\n'
        '[ -n "$FAKE_TAR" ] && cat "$FAKE_TAR"\n'
        '[ -n "$FAKE_ERR" ] && echo "$FAKE_ERR" >&2\n'
        'exit "${FAKE_RC:-0}"\n'
    )
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_ARGS": str(tmp_path / "args")}


def back_from(env: dict[str, str], tmp_path: Path, data: bytes, **kwargs: object) -> Path:
    tar_path = tmp_path / "stream.tar"
    tar_path.write_bytes(data)
    env["FAKE_TAR"] = str(tar_path)
    target = tmp_path / "run"
    target.mkdir(exist_ok=True)
    return target


def test_regular_files_come_back_and_nothing_else(
    fake_docker: dict[str, str], tmp_path: Path
) -> None:
    data = stream(
        ("./001_result.json", b'{"energy_j": 1}', {}),
        ("./notes.txt", b"hello", {"mode": 0o4755}),
        ("./link.json", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
        ("./hard.json", b"", {"type": tarfile.LNKTYPE, "linkname": "./notes.txt"}),
        ("./pipe", b"", {"type": tarfile.FIFOTYPE}),
        ("./dev", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
        ("./sub", b"", {"type": tarfile.DIRTYPE}),
        ("./sub/inner.txt", b"nested", {}),
        ("../escape.txt", b"x", {}),
        ("/etc/cron.d/evil", b"x", {}),
        ("./big.bin", b"x" * 2048, {}),
        ("./kept.json", b"theirs", {}),
        ("./001_config.json", b"as sent", {}),
    )
    target = back_from(fake_docker, tmp_path, data)
    (target / "kept.json").write_bytes(b"ours")
    (target / "001_config.json").write_bytes(b"as sent")
    back = copy_out(
        "c1", "/run/llem", target, file_cap=1024, sent={"001_config.json": b"as sent"},
        env=fake_docker,
    )  # fmt: skip
    assert back.error == ""
    assert back.copied == ["001_result.json", "notes.txt"]
    assert sorted(back.refused) == [
        "../escape.txt: not a plain name",
        "/etc/cron.d/evil: not a plain name",
        "big.bin: larger than 1024 bytes",
        "dev: not a regular file",
        "hard.json: a hard link",
        "kept.json: the run directory has that name already: kept",
        "link.json: a symbolic link",
        "pipe: not a regular file",
        "sub: a directory (nothing in it is copied)",
    ]
    assert sorted(p.name for p in target.iterdir()) == [
        "001_config.json", "001_result.json", "kept.json", "notes.txt",
    ]  # fmt: skip
    assert (target / "kept.json").read_bytes() == b"ours"
    assert (target / "001_result.json").read_bytes() == b'{"energy_j": 1}'
    assert stat.S_IMODE((target / "notes.txt").stat().st_mode) == 0o644  # no set-uid kept
    assert not (tmp_path / "escape.txt").exists()
    assert (tmp_path / "args").read_text().split() == ["cp", "c1:/run/llem/.", "-"]


def test_a_link_planted_in_the_run_directory_is_not_followed(
    fake_docker: dict[str, str], tmp_path: Path
) -> None:
    target = back_from(fake_docker, tmp_path, stream(("./out.json", b"theirs", {})))
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (target / "out.json").symlink_to(victim)
    back = copy_out("c1", "/run/llem", target, env=fake_docker)
    assert back.refused == ["out.json: the run directory has that name already: kept"]
    assert victim.read_text() == "precious"


def test_the_whole_copy_is_capped(fake_docker: dict[str, str], tmp_path: Path) -> None:
    files = [(f"./f{n}.bin", os.urandom(4096), {}) for n in range(8)]
    target = back_from(fake_docker, tmp_path, stream(*files))
    back = copy_out("c1", "/run/llem", target, stream_cap=16 * 1024, env=fake_docker)
    assert back.error == "the files are larger than 16384 bytes in all: cut"
    assert 1 <= len(back.copied) < 8


def test_a_failed_copy_says_why(fake_docker: dict[str, str], tmp_path: Path) -> None:
    target = back_from(fake_docker, tmp_path, b"")
    fake_docker.update(FAKE_TAR="", FAKE_RC="1", FAKE_ERR="Error: No such container:path: c1:/x")
    back = copy_out("c1", "/run/llem", target, env=fake_docker)
    assert back.error == "Error: No such container:path: c1:/x"
    assert back.notes() == [
        "llem: copying back the run directory: Error: No such container:path: c1:/x"
    ]


def test_a_copy_that_hangs_is_cut(fake_docker: dict[str, str], tmp_path: Path) -> None:
    target = back_from(fake_docker, tmp_path, b"")
    fake_docker.update(FAKE_TAR="", FAKE_SLEEP="30")
    back = copy_out("c1", "/run/llem", target, timeout=0.5, env=fake_docker)
    assert back.error == "no end after 0.5 s: cut"


def test_copy_in_sends_the_directory_and_its_files(
    fake_docker: dict[str, str], tmp_path: Path
) -> None:
    fake_docker.update(FAKE_STDIN=str(tmp_path / "in.tar"))
    result = copy_in("c1", "/run/llem", {"001_config.json": b"{}"}, env=fake_docker)
    assert result.ok
    assert (tmp_path / "args").read_text().split() == ["cp", "-", "c1:/"]
    with tarfile.open(tmp_path / "in.tar") as tar:
        found = [(m.name, m.type, oct(m.mode)) for m in tar.getmembers()]
    assert found == [
        ("run/llem", tarfile.DIRTYPE, "0o777"),
        ("run/llem/001_config.json", tarfile.REGTYPE, "0o644"),
    ]
    assert tar_of("/run/llem", {}) != b""


def test_the_number_of_files_is_capped_but_the_result_comes_back(
    fake_docker: dict[str, str], tmp_path: Path
) -> None:
    files = [(f"./f{n}", b"x", {}) for n in range(5)]
    data = stream(*files, ("./001_result.json", b"{}", {}), ("./more", b"x", {}))
    target = back_from(fake_docker, tmp_path, data)
    back = copy_out(
        "c1", "/run/llem", target, count_cap=3, keep=["001_result.json"], env=fake_docker
    )
    assert back.copied == ["f0", "f1", "f2", "001_result.json"]
    assert back.error == "more than 3 files: 3 not copied"
    assert back.notes() == ["llem: copying back the run directory: more than 3 files: 3 not copied"]
    assert sorted(p.name for p in target.iterdir()) == ["001_result.json", "f0", "f1", "f2"]


def test_refusals_count_towards_the_cap(fake_docker: dict[str, str], tmp_path: Path) -> None:
    links = [(f"./l{n}", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc"}) for n in range(4)]
    target = back_from(fake_docker, tmp_path, stream(*links))
    back = copy_out("c1", "/run/llem", target, count_cap=2, env=fake_docker)
    assert back.refused == ["l0: a symbolic link", "l1: a symbolic link"]
    assert back.error == "more than 2 files: 2 not copied"
