"""Per-user memory of passed GPU probes, keyed by everything that could change their answer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..domain.records import CommandResult, HostFacts, ImageFacts, ProbeFacts
from . import docker
from .jsonfile import read_trusted_json, write_json
from .paths import cache_dir

# 2: the key covers the engine's runtimes and CDI setup, the host's GPUs and the GPU request.
SCHEMA = 2
MAX_CACHE_BYTES = 4 * 1024 * 1024
# How far in the future an entry's date may lie (a clock set back a little) and still be
# believed; one dated later than that was not written by this clock: it is not used.
CLOCK_SLACK_S = 60.0


class ProbeCache:
    """A JSON file of passed probes; damaged or unwritable files are ignored, never fatal.

    A remembered probe answers only where a fresh one would answer the same: its key covers
    everything the answer depends on (see `key`), and it is used only within its lifetime.
    """

    def __init__(
        self,
        ttl_s: float,
        identify: Callable[[], dict[str, str]],
        path: Path | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.path = path or cache_dir() / "probes.json"
        self._identify = identify
        self._lock = threading.Lock()
        self._identity: dict[str, str] | None = None

    def identity(self) -> dict[str, str] | None:
        """What identifies the engine and toolkit, asked once (None: cannot key safely)."""
        with self._lock:
            if self._identity is None:
                self._identity = self._identify()
            identity = dict(self._identity)
        return identity if identity.get("daemon_id") else None

    def key(self, host: HostFacts, image: ImageFacts, request: str) -> str | None:
        """The key of a probe of ``image`` that asks for the GPUs ``request`` (what follows
        `--gpus`: "all", "device=1,3") on ``host``; None when it cannot be told safely.

        It covers the engine (its ID, version, endpoint, runtimes, default runtime and CDI
        setup, from the identity), the toolkit (its version, executables and config file),
        the image's ID, the request, and the host's driver and GPUs. Without the host's GPUs
        (a remote daemon: no `nvidia-smi -q` here) nothing is remembered: a change of them
        could not be told.
        """
        identity = self.identity()
        if identity is None or image.info is None or not image.info.id:
            return None
        gpus = _gpu_identities(host)
        if gpus is None:
            return None
        assert host.smi_info is not None
        parts = {
            **identity,
            "endpoint": host.endpoint.url,
            "server_version": host.server_version,
            "toolkit_tools": sorted(host.toolkit.items()),
            "image_id": image.info.id,
            "request": request,
            "driver_version": host.smi_info.driver_version or "",
            "cuda_version": host.smi_info.cuda_version or "",
            "gpus": gpus,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _read(self) -> dict[str, Any]:
        """The entries, from a file of this user's that no one else can write (else none)."""
        data = read_trusted_json(self.path, MAX_CACHE_BYTES)
        if data is None or data.get("schema") != SCHEMA:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def remembers_any(self) -> bool:
        """Whether the file holds any probe at all (a lookup could find one)."""
        return bool(self._read())

    def lookup(self, host: HostFacts, image: ImageFacts, request: str) -> ProbeFacts | None:
        """The remembered probe for this key, if it lives and is whole (else None)."""
        entries = self._read()
        if not entries:  # nothing to find: don't wait for the engine's identity
            return None
        key = self.key(host, image, request)
        entry = entries.get(key) if key else None
        if not isinstance(entry, dict) or not _usable(entry, time.time(), self.ttl_s):
            return None
        remembered = entry.get("gpus")
        if not isinstance(remembered, list) or not remembered:
            return None
        if not all(isinstance(gpu, dict) for gpu in remembered):
            return None
        gpus = [{str(k): str(v) for k, v in gpu.items()} for gpu in remembered]
        result = CommandResult(tuple(docker.probe_argv(image.image, "cached", request)), 0)
        return ProbeFacts(image.image, "cached", result, gpus, cached=True, request=request)

    def store(self, host: HostFacts, image: ImageFacts, request: str, probe: ProbeFacts) -> None:
        key = self.key(host, image, request)
        if key is None:
            return
        now = time.time()
        with self._lock, contextlib.suppress(OSError):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            entries = {k: v for k, v in self._read().items() if _usable(v, now, self.ttl_s)}
            entries[key] = {
                "image": image.image,
                "request": request,
                "gpus": probe.gpus,
                "stored": now,
                "expires": now + self.ttl_s,
            }
            write_json(self.path, {"schema": SCHEMA, "entries": entries}, mode=0o600)


def _gpu_identities(host: HostFacts) -> list[Any] | None:
    """Each GPU of the host by index, with its UUID and those of its MIG instances; None
    when the host's GPUs are not all known (no `nvidia-smi -q`, a GPU without UUID, a list
    cut short)."""
    info = host.smi_info
    if info is None or not info.gpus or any(not gpu.uuid for gpu in info.gpus):
        return None
    if info.attached_gpus is not None and info.attached_gpus != len(info.gpus):
        return None
    return [
        [gpu.index, gpu.uuid, [mig.uuid for mig in gpu.mig]]
        for gpu in sorted(info.gpus, key=lambda gpu: gpu.index)
    ]


def _usable(entry: Any, now: float, ttl_s: float) -> bool:
    """Whether ``entry`` is alive at ``now``: not expired, and not dated in the future
    (stored later than now, or lasting longer than ``ttl_s`` from now, beyond a little
    slack). A damaged entry is not usable."""
    try:
        stored, expires = float(entry["stored"]), float(entry["expires"])
    except (KeyError, TypeError, ValueError):
        return False
    if not (math.isfinite(stored) and math.isfinite(expires)):
        return False
    if expires < now:
        return False
    # Dated in the future: not written by this clock, or for a longer lifetime than now's.
    return stored <= now + CLOCK_SLACK_S and expires <= now + ttl_s + CLOCK_SLACK_S
