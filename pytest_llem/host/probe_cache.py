"""Per-user memory of passed GPU probes, keyed by everything that could change their answer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..domain.records import CommandResult, HostFacts, ImageFacts, ProbeFacts
from . import docker
from .jsonfile import read_trusted_json, write_json
from .paths import cache_dir

SCHEMA = 1
MAX_CACHE_BYTES = 4 * 1024 * 1024


class ProbeCache:
    """A JSON file of passed probes; damaged or unwritable files are ignored, never fatal."""

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

    def key(self, host: HostFacts, image: ImageFacts) -> str | None:
        identity = self.identity()
        if identity is None or image.info is None or not image.info.id:
            return None
        parts = {
            **identity,
            "endpoint": host.endpoint.url,
            "server_version": host.server_version,
            "image_id": image.info.id,
            "driver_version": host.smi_info.driver_version if host.smi_info else "",
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

    def lookup(self, host: HostFacts, image: ImageFacts) -> ProbeFacts | None:
        entries = self._read()
        if not entries:  # nothing to find: don't wait for the engine's identity
            return None
        key = self.key(host, image)
        entry = entries.get(key) if key else None
        if not isinstance(entry, dict):
            return None
        try:
            if float(entry["expires"]) < time.time():
                return None
            gpus = [{str(k): str(v) for k, v in g.items()} for g in entry["gpus"]]
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        result = CommandResult(tuple(docker.probe_argv(image.image, "cached")), 0)
        return ProbeFacts(image.image, "cached", result, gpus, cached=True)

    def store(self, host: HostFacts, image: ImageFacts, probe: ProbeFacts) -> None:
        key = self.key(host, image)
        if key is None:
            return
        now = time.time()
        with self._lock, contextlib.suppress(OSError):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            entries = {k: v for k, v in self._read().items() if _alive(v, now)}
            entries[key] = {
                "image": image.image,
                "gpus": probe.gpus,
                "stored": now,
                "expires": now + self.ttl_s,
            }
            write_json(self.path, {"schema": SCHEMA, "entries": entries}, mode=0o600)


def _alive(entry: Any, now: float) -> bool:
    try:
        return float(entry["expires"]) > now
    except (KeyError, TypeError, ValueError):
        return False
