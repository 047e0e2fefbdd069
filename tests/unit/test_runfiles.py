"""Files in RUN_DIR: never a link followed, only regular files read or written, reads capped."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pytest_llem.host import runfiles
from pytest_llem.host.runfiles import UnsafeRunFile


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text("SECRET host file\n")
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


def test_write_replaces_a_planted_link_and_leaves_its_target(run_dir: Path, victim: Path) -> None:
    (run_dir / "002_config.json").symlink_to(victim)
    runfiles.write(run_dir / "002_config.json", b"{}\n")
    assert victim.read_text() == "SECRET host file\n"
    assert not (run_dir / "002_config.json").is_symlink()
    assert (run_dir / "002_config.json").read_bytes() == b"{}\n"


def test_create_replaces_a_planted_fifo(run_dir: Path) -> None:
    os.mkfifo(run_dir / "002.log")
    with runfiles.create(run_dir / "002.log") as log:
        log.write(b"line\n")
    assert (run_dir / "002.log").read_bytes() == b"line\n"


def test_a_planted_directory_is_refused(run_dir: Path) -> None:
    (run_dir / "002.log").mkdir()
    with pytest.raises(UnsafeRunFile, match=r"^002.log in the run directory is a directory"):
        runfiles.create(run_dir / "002.log")


def test_read_of_a_regular_file(run_dir: Path) -> None:
    (run_dir / "r.json").write_bytes(b'{"a": 1}')
    assert runfiles.read(run_dir / "r.json", 100) == b'{"a": 1}'
    assert runfiles.read(run_dir / "absent.json", 100) is None


def test_read_never_follows_a_link(run_dir: Path, victim: Path) -> None:
    (run_dir / "001_result.json").symlink_to(victim)
    with pytest.raises(UnsafeRunFile, match="is a symbolic link: refused") as info:
        runfiles.read(run_dir / "001_result.json", 100)
    assert "SECRET" not in str(info.value)
    (run_dir / "dangling.json").symlink_to(run_dir / "nowhere")
    with pytest.raises(UnsafeRunFile, match="is a symbolic link"):
        runfiles.read(run_dir / "dangling.json", 100)


def test_read_of_a_fifo_does_not_wait(run_dir: Path) -> None:
    os.mkfifo(run_dir / "001_result.json")
    with pytest.raises(UnsafeRunFile, match="is a FIFO"):
        runfiles.read(run_dir / "001_result.json", 100)


def test_read_of_other_kinds(run_dir: Path) -> None:
    (run_dir / "d").mkdir()
    with pytest.raises(UnsafeRunFile, match="is a directory"):
        runfiles.read(run_dir / "d", 100)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(run_dir / "s"))
        with pytest.raises(UnsafeRunFile, match="is a socket"):
            runfiles.read(run_dir / "s", 100)


def test_read_is_capped(run_dir: Path) -> None:
    (run_dir / "big.json").write_bytes(b"x" * (2 * 1024 * 1024 + 1))
    with pytest.raises(UnsafeRunFile, match=r"^big.json is larger than 2 MiB"):
        runfiles.read(run_dir / "big.json", 2 * 1024 * 1024)
    assert runfiles.read(run_dir / "big.json", 3 * 1024 * 1024) is not None


def test_tail_reads_the_open_file_not_the_name(run_dir: Path, victim: Path) -> None:
    with runfiles.create(run_dir / "001.log") as log:
        log.write(b"a" * 100 + b"end\n")
        log.flush()
        os.unlink(run_dir / "001.log")
        (run_dir / "001.log").symlink_to(victim)  # what a container could do during its run
        assert runfiles.tail(log, 4) == b"end\n"


def test_a_directory_planted_as_the_manifest_is_one_clear_error(tmp_path: Path) -> None:
    from pytest_llem.errors import LLEMError
    from pytest_llem.run.manifest import Manifest

    (tmp_path / "manifest.json").mkdir()
    with pytest.raises(LLEMError, match=r"manifest\.json: something that is not a file is in"):
        Manifest("s", tmp_path).write()
    assert not [p for p in tmp_path.iterdir() if p.name != "manifest.json"]  # no temporary left


def test_append_adds_to_a_regular_file(run_dir: Path) -> None:
    runfiles.write(run_dir / "001.log", b"first\n")
    runfiles.append(run_dir / "001.log", b"second\n")
    assert (run_dir / "001.log").read_bytes() == b"first\nsecond\n"


def test_append_never_follows_a_link(run_dir: Path, victim: Path) -> None:
    (run_dir / "001.log").symlink_to(victim)
    with pytest.raises(UnsafeRunFile, match=r"^001\.log in the run directory is a symbolic link"):
        runfiles.append(run_dir / "001.log", b"note\n")
    assert victim.read_text() == "SECRET host file\n"


def test_append_to_a_fifo_does_not_wait(run_dir: Path) -> None:
    os.mkfifo(run_dir / "001.log")
    with pytest.raises(UnsafeRunFile, match=r"^001\.log: cannot write"):
        runfiles.append(run_dir / "001.log", b"note\n")
