"""Files into and out of a container through the Docker API (`docker cp`), for a daemon that
cannot see this machine's files (a remote one): nothing is bind-mounted.

What comes back is a tar stream written by the container's side, so it is read as untrusted:
only regular files directly in the copied directory are kept, each up to a size cap, the
whole stream up to another; a name that is already in the target directory is never replaced,
and a file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: nothing is ever followed or
overwritten. Links, directories, devices, FIFOs and what lies in subdirectories are left out,
and each refusal is named.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Collection, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, NamedTuple

from ..domain.records import CommandResult
from .proc import SLICE_S, run, spawn, spawn_detached

# One file brought back, and everything one copy brings back (the stream, headers included).
FILE_CAP = 64 * 1024 * 1024
STREAM_CAP = 256 * 1024 * 1024
# Names one copy brings back, or refuses: a container must not flood RUN_DIR (or its log).
FILE_COUNT_CAP = 1000
REMOVE_TIMEOUT_S = 30.0
COPY_TIMEOUT_S = 600.0
_CHUNK = 1024 * 1024
_KEPT = "the run directory has that name already: kept"


def remove(
    name: str,
    *,
    timeout: float = REMOVE_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    cli: str = "docker",
) -> str | None:
    """`docker rm -f -v NAME` (``cli``'s: docker or podman): the container and its anonymous
    volumes (an image's `VOLUME`).

    None when no container has the name any more (or never had); else what went wrong, for a
    person: the container may still be there. A removal that does not end in ``timeout``
    (the engine waits for an NVIDIA hook) is left running, detached, to finish by itself.
    """
    argv = [cli, "rm", "--force", "--volumes", name]
    result = run(argv, timeout=timeout, env=env)
    if result.ok or "no such container" in result.stderr.lower():
        return None
    if result.timed_out:
        spawn_detached(argv, env=env)
        return f"`{' '.join(argv)}` did not end in {timeout:g} s (left running)"
    lines = result.output.strip().splitlines() or [f"exit status {result.returncode}"]
    return f"`{' '.join(argv)}` failed: {lines[-1][:300]}"


def copy_in(
    name: str,
    directory: str,
    files: Mapping[str, bytes],
    *,
    timeout: float = COPY_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Create ``directory`` (mode 0777) in container ``name`` holding ``files`` (mode 0644).

    A tar stream on the CLI's standard input, unpacked at ``/``: the daemon creates the
    missing parents of ``directory``, as it does for a bind mount's target.
    """
    argv = ("docker", "cp", "-", f"{name}:/")
    try:
        proc = spawn(
            argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        return CommandResult(argv, 127, stderr=f"docker: {exc.strerror or exc}", missing=True)
    data: bytes | None = tar_of(directory, files)
    deadline = time.monotonic() + timeout
    try:
        while True:  # in slices, so that a Ctrl-C gets through
            try:
                out, err = proc.communicate(data, timeout=min(SLICE_S, timeout))
                break
            except subprocess.TimeoutExpired:
                data = None  # handed over already
                if time.monotonic() > deadline:
                    _kill(proc)
                    out, err = proc.communicate()
                    return CommandResult(argv, None, stderr=_text(err), timed_out=True)
    except BaseException:
        _kill(proc)
        proc.wait()
        raise
    return CommandResult(argv, proc.returncode, _text(out), _text(err))


def _text(data: bytes) -> str:
    return data[-65536:].decode("utf-8", errors="replace")


def tar_of(directory: str, files: Mapping[str, bytes]) -> bytes:
    """A tar of ``directory`` (relative to ``/``) and ``files`` directly in it."""
    base = directory.strip("/")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(base)
        info.type, info.mode = tarfile.DIRTYPE, 0o777
        tar.addfile(info)
        for file_name, data in files.items():
            info = tarfile.TarInfo(f"{base}/{file_name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class CopyBack:
    """What one `docker cp` out of a container brought into a directory."""

    copied: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "NAME: why", one per refusal
    error: str = ""  # the copy itself failed or was cut short

    def notes(self) -> list[str]:
        lines = [f"llem: not copied back: {why}" for why in self.refused]
        if self.error:
            lines.append(f"llem: copying back the run directory: {self.error}")
        return lines


def copy_out(
    name: str,
    directory: str,
    target: Path,
    *,
    timeout: float = COPY_TIMEOUT_S,
    file_cap: int = FILE_CAP,
    stream_cap: int = STREAM_CAP,
    count_cap: int = FILE_COUNT_CAP,
    sent: Mapping[str, bytes] | None = None,
    keep: Collection[str] = (),
    env: Mapping[str, str] | None = None,
) -> CopyBack:
    """Copy the regular files directly in ``directory`` of container ``name`` into ``target``.

    Names already in ``target`` are kept as they are (what llem wrote there itself); a file
    that comes back as it was ``sent`` in is passed over without a word. At most ``count_cap``
    names are copied or refused; past that only the names in ``keep`` (the experiment's result)
    still are. Never raises for what the container left; ``error`` says when the copy failed
    or was cut short by ``timeout``, ``stream_cap`` or ``count_cap``.
    """
    back = CopyBack()
    try:
        proc = spawn(
            ["docker", "cp", f"{name}:{directory.rstrip('/')}/.", "-"],
            env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        back.error = f"docker: {exc.strerror or exc}"
        return back
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[bytes] = []
    stderr = proc.stderr
    reader = threading.Thread(target=lambda: errors.append(stderr.read(65536)), daemon=True)
    reader.start()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill(proc)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    stream = _Capped(proc.stdout, stream_cap)
    problem: str | None = "interrupted"
    read_whole = False
    try:
        caps = _Caps(file_cap, count_cap, frozenset(keep))
        dropped = _unpack(stream, target, caps, sent or {}, back)
        read_whole = True
        problem = f"more than {count_cap} files: {dropped} not copied" if dropped else None
    except _OverCap:
        problem = f"the files are larger than {_size(stream_cap)} in all: cut"
    except (tarfile.TarError, EOFError, OSError) as exc:
        problem = f"unreadable copy ({exc})"
    finally:
        timer.cancel()
        if read_whole:  # the tar's end: what follows is padding, if anything
            with suppress(OSError):
                proc.stdout.read1(_CHUNK)  # type: ignore[attr-defined]
        elif problem != "interrupted":  # a CLI that failed is ending by itself
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
        _kill(proc)
        proc.wait()
        reader.join(timeout=5)
    text = b"".join(errors).decode("utf-8", errors="replace").strip()
    if expired.is_set():
        back.error = f"no end after {timeout:g} s: cut"
    elif proc.returncode not in (0, -signal.SIGKILL) and text:
        back.error = text.splitlines()[-1]
    elif problem is not None:
        back.error = problem
    return back


class _OverCap(Exception):
    pass


class _Caps(NamedTuple):
    file: int  # bytes of one file
    names: int  # names copied or refused
    keep: frozenset[str]  # names copied even past `names`


class _Capped(io.RawIOBase):
    """A pipe read up to ``cap`` bytes; one byte more raises `_OverCap`."""

    def __init__(self, pipe: IO[bytes], cap: int) -> None:
        self._pipe, self._left = pipe, cap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._pipe.read1(min(len(buffer), _CHUNK))  # type: ignore[attr-defined]
        if len(data) > self._left:
            raise _OverCap
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _unpack(
    stream: io.RawIOBase, target: Path, caps: _Caps, sent: Mapping[str, bytes], back: CopyBack
) -> int:
    """Copy what ``stream`` holds into ``target``; how many names were passed over, past
    ``caps.names``."""
    dropped = 0
    with tarfile.open(fileobj=io.BufferedReader(stream), mode="r|") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not parts:  # the directory itself
                continue
            full = len(back.copied) + len(back.refused) >= caps.names
            if full and (len(parts) > 1 or parts[0] not in caps.keep):
                if len(parts) == 1 or parts[0] in ("/", ".."):  # (not in a subdirectory)
                    dropped += 1
                continue
            if len(parts) > 1:  # in a subdirectory (refused as a whole), or outside
                if parts[0] in ("/", ".."):
                    back.refused.append(f"{member.name}: not a plain name")
                continue
            name = parts[0]
            why = _refusal(member, caps.file)
            if why is None:
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                if name not in sent:
                    why = _write_new(target / name, source)
                elif member.size == len(sent[name]) and source.read() == sent[name]:
                    continue  # back as it went in
                else:
                    why = _KEPT
            if why is None:
                back.copied.append(name)
            else:
                back.refused.append(f"{name}: {why}")
    return dropped


def _refusal(member: tarfile.TarInfo, file_cap: int) -> str | None:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.name.strip("/") in ("..", ""):
        return "not a plain name"
    if member.isdir():
        return "a directory (nothing in it is copied)"
    if not member.isreg():
        return "not a regular file"
    if member.size > file_cap:
        return f"larger than {_size(file_cap)}"
    if "\0" in member.name or "\\" in member.name:
        return "not a plain name"
    return None


def _write_new(path: Path, source: IO[bytes]) -> str | None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        return _KEPT
    except OSError as exc:
        return f"cannot create ({exc.strerror or exc})"
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
    return None


def _size(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
