"""CDI specs (Container Device Interface): what one says, read from its bytes.

A spec is a file in one of the engine's CDI spec directories (``/etc/cdi``, ``/var/run/cdi``):
a ``kind`` (``nvidia.com/gpu``), its ``devices`` (``"0"``, ``GPU-<uuid>``, ``all``, MIG devices
``"0:1"``), each with the container edits it makes, and edits common to them all (the driver's
libraries as bind mounts, device nodes, hooks). Format: https://github.com/cncf-tags/
container-device-interface/blob/main/SPEC.md; NVIDIA's generator is `nvidia-ctk cdi generate`.

The bytes come from a file any local user may have written: they are parsed with PyYAML's safe
loader, without anchors and aliases (no spec generator writes them; an alias bomb needs them),
within a bound on nesting and on the number of devices and edits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

MAX_DEPTH = 32
MAX_ITEMS = 20_000  # devices, and the edits of all of them together
# The CDI library reads `.json` and `.yaml` files only (container-device-interface,
# pkg/cdi/spec-dirs.go, `scanSpecDirs`).
SPEC_SUFFIXES = (".json", ".yaml")
_KIND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
# A library of the NVIDIA driver, named by the driver's version (libcuda.so.550.54.15,
# libnvidia-ml.so.535.104.05): a version of three-digit major. (libnvidia-egl-wayland.so.1.1.13
# carries its own version, not the driver's.)
_DRIVER_LIBRARY = re.compile(
    r"^lib[\w.+-]*(?:nvidia|cuda)[\w.+-]*\.so\.(\d{3}\.\d{1,3}(?:\.\d{1,3})?)$"
)
_HOST_DRIVER_ARG = re.compile(r"^--host-driver-version=(\d{3}\.\d{1,3}(?:\.\d{1,3})?)$")


class SpecError(ValueError):
    """The bytes are no CDI spec llem can read (the message says why)."""


@dataclass(frozen=True)
class CdiEdits:
    """The host files that container edits need: device nodes, bind mounts, hooks."""

    device_nodes: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()
    hook_args: tuple[str, ...] = ()

    @property
    def host_paths(self) -> tuple[str, ...]:
        return (*self.device_nodes, *self.mounts, *self.hooks)


@dataclass(frozen=True)
class CdiDevice:
    name: str  # as the spec names it: "0", "GPU-<uuid>", "all", "0:1", "MIG-<uuid>"
    edits: CdiEdits


@dataclass(frozen=True)
class CdiSpec:
    path: str  # the file it was read from
    kind: str  # vendor/class: nvidia.com/gpu
    devices: tuple[CdiDevice, ...]
    edits: CdiEdits  # common to every device

    def qualified(self, device: CdiDevice) -> str:
        return f"{self.kind}={device.name}"

    @property
    def names(self) -> tuple[str, ...]:
        """Fully qualified device names: ``nvidia.com/gpu=0``."""
        return tuple(self.qualified(d) for d in self.devices)

    def device(self, qualified: str) -> CdiDevice | None:
        kind, _, name = qualified.partition("=")
        if kind != self.kind:
            return None
        return next((d for d in self.devices if d.name == name), None)

    def host_paths(self, devices: Iterable[CdiDevice] | None = None) -> tuple[str, ...]:
        """The host files the common edits and those of ``devices`` (all: None) need."""
        chosen = self.devices if devices is None else tuple(devices)
        paths = [*self.edits.host_paths, *(p for d in chosen for p in d.edits.host_paths)]
        return tuple(dict.fromkeys(paths))

    @property
    def driver_versions(self) -> tuple[str, ...]:
        """The driver version(s) the spec was generated for: those its driver libraries are
        named by (libcuda.so.550.54.15), and the `--host-driver-version=` of its hooks."""
        found: list[str] = []
        for edits in (self.edits, *(d.edits for d in self.devices)):
            for mount in edits.mounts:
                match = _DRIVER_LIBRARY.match(mount.rpartition("/")[2])
                if match:
                    found.append(match.group(1))
            for arg in edits.hook_args:
                match = _HOST_DRIVER_ARG.match(arg)
                if match:
                    found.append(match.group(1))
        return tuple(sorted(set(found)))

    def libraries_of(self, version: str) -> tuple[str, ...]:
        """The mounted driver libraries named by ``version``."""
        edits = (self.edits, *(d.edits for d in self.devices))
        return tuple(
            dict.fromkeys(
                m
                for e in edits
                for m in e.mounts
                if (match := _DRIVER_LIBRARY.match(m.rpartition("/")[2]))
                and match.group(1) == version
            )
        )


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise SpecError(
                f"line {event.start_mark.line + 1}: YAML anchors and aliases are not accepted"
            )
        return super().compose_node(parent, index)


def parse_spec(data: bytes, path: str) -> CdiSpec:
    """The spec in ``data`` (YAML or JSON), read from ``path``; SpecError when it is none."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text") from None
    loader = _Loader(text)
    try:
        value = loader.get_single_data()
    except SpecError:
        raise
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise SpecError("nested too deeply") from None
    finally:
        loader.dispose()
    _check_depth(value)
    if not isinstance(value, dict):
        raise SpecError("not a mapping")
    kind = value.get("kind")
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise SpecError(f"no valid kind (vendor/class): {kind!r}")
    devices = value.get("devices")
    if not isinstance(devices, list):
        raise SpecError("no list of devices")
    budget = [MAX_ITEMS]
    parsed = []
    for item in devices:
        if not isinstance(item, dict):
            raise SpecError("a device is not a mapping")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise SpecError(f"a device has no valid name: {name!r}")
        _spend(budget, 1)
        parsed.append(CdiDevice(name, _edits(item.get("containerEdits"), budget)))
    return CdiSpec(path, kind, tuple(parsed), _edits(value.get("containerEdits"), budget))


def _edits(value: Any, budget: list[int]) -> CdiEdits:
    if value is None:
        return CdiEdits()
    if not isinstance(value, dict):
        raise SpecError("containerEdits is not a mapping")
    nodes = [_text(n.get("hostPath") or n.get("path")) for n in _list(value, "deviceNodes", budget)]
    mounts = [_text(m.get("hostPath")) for m in _list(value, "mounts", budget)]
    hooks = list(_list(value, "hooks", budget))
    args = [_text(a) for h in hooks for a in (h.get("args") or []) if isinstance(a, str)]
    return CdiEdits(
        device_nodes=tuple(n for n in nodes if n),
        mounts=tuple(m for m in mounts if m),
        hooks=tuple(p for h in hooks if (p := _text(h.get("path")))),
        hook_args=tuple(args),
    )


def _list(edits: Mapping[str, Any], key: str, budget: list[int]) -> Iterator[Mapping[str, Any]]:
    items = edits.get(key) or []
    if not isinstance(items, list):
        raise SpecError(f"{key} is not a list")
    _spend(budget, len(items))
    for item in items:
        if not isinstance(item, dict):
            raise SpecError(f"an item of {key} is not a mapping")
        yield item


def _spend(budget: list[int], n: int) -> None:
    budget[0] -= n
    if budget[0] < 0:
        raise SpecError(f"more than {MAX_ITEMS} devices and edits")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError(f"nested deeper than {MAX_DEPTH} levels")
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def resolve(specs: Iterable[CdiSpec], qualified: str) -> tuple[CdiSpec, CdiDevice] | None:
    """The spec and device that ``qualified`` (``nvidia.com/gpu=1``) names; a spec read later
    (a later directory: /var/run/cdi after /etc/cdi) wins, as the CDI library decides."""
    found = None
    for spec in specs:
        device = spec.device(qualified)
        if device is not None:
            found = (spec, device)
    return found
