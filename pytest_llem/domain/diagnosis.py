"""diagnose(): the pure classifier of Docker / NVIDIA output (DESIGN §3).

How a text is read:

1. Clip it (head and tail: engine errors come first or last, never in the middle of a long
   log) and normalise it: unescape the nested quoting of Go errors (Docker 19.03 wraps the
   hook's stderr in up to three levels of ``\\"``), drop ANSI colours and carriage returns,
   squeeze runs of blanks. Line breaks stay: some rules look at one line.
2. Pick out the facts: versions, image references, endpoints.
3. Mask the image references, so that ``nvidia/cuda:12.4.0-base`` in pull output can never
   look like a GPU failure.
4. The first rule of ``_RULES`` that matches names the cause. The rules are grouped by the
   component that speaks, most specific first: the docker CLI and its daemon, the registry,
   the engine's runtime and device setup, the NVIDIA hook / driver, NVML inside the
   container, and last the "command not found" family (whose command decides between
   ``docker_cli_missing``, ``toolkit_missing``, ``toolkit_hook_missing`` and
   ``container_command_not_found``). Each alternative of a rule carries the literals that
   every match contains (``_anchors``): its regular expression runs only where they occur.
5. With no rule matching, the exit status decides: 127 with no output ``docker_cli_missing``,
   126/127 ``container_command_not_found``. Then the one rule for ``ok`` (``_shows_error``):
   an output with a line that reads as an error is never ``ok``, whatever the exit status;
   it is ``unknown``, its text kept. Otherwise 0/None ``ok``, anything else ``unknown``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import remedies as R
from .nvidia_smi import parse_any

__all__ = ["Diagnosis", "diagnose"]


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    message: str
    fix: str = ""
    url: str = ""
    details: dict[str, Any] = field(default_factory=dict)


_HEAD = 16 * 1024  # what is classified: the head and the tail of a long output
_TAIL = 48 * 1024
_PARSE_MAX = 512 * 1024  # what an "ok" nvidia-smi output is parsed from (-q of many GPUs)
_OUTPUT_HEAD = 1024
_OUTPUT_TAIL = 3072
_LINE_MAX = 300
_LINE_CONTEXT = 1000  # characters of a matched line kept on each side of the match
_V = r"\d+(?:\.\d+)+"


def _alternatives(table: str) -> list[str]:
    """The lower-case alternatives of a table, one per line. A space stands for any run of
    white space: reporters and wrappers break lines anywhere."""
    lines = [line.strip() for line in table.strip().splitlines() if line.strip()]
    return [line.replace(" ", r"\s+") for line in lines]


def _rx(table: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in _alternatives(table)), re.M)


def _skip_group(pattern: str, i: int) -> int:
    """The index just after the group ``(...)`` or class ``[...]`` that opens at ``i``."""
    depth = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "[":
            i += 2 if pattern[i + 1 : i + 2] == "^" else 1
            i += 1  # a "]" right after "[" or "[^" is a member
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            i += 1
            if depth == 0:
                return i
            continue
        if c == "\\":
            i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


_QUANTIFIER = re.compile(r"(?:[?*+]|\{\d*(?:,\d*)?\})[?+]?")


def _anchors(pattern: str) -> tuple[str, ...]:
    """The literal runs (of 3 characters or more) that every match of ``pattern`` contains,
    longest first; none when unsure.

    Groups, classes and escapes such as ``\\s`` end a run; a character made optional by
    ``?``, ``*`` or ``{0,n}`` is dropped, one repeated by ``+`` or ``{n,m}`` ends its run."""
    runs, run, i = [], "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "|":
            return ()
        if c in "([":
            i, piece = _skip_group(pattern, i), ""
        elif c == "\\":
            piece = "" if pattern[i + 1 : i + 2].isalnum() else pattern[i + 1 : i + 2]
            i += 2
        else:
            piece = "" if c in ".^$" else c
            i += 1
        quantifier = _QUANTIFIER.match(pattern, i)
        q = quantifier.group(0) if quantifier else ""
        i = quantifier.end() if quantifier else i
        optional = q[:1] in ("?", "*") or q.startswith(("{0", "{,"))
        if piece and not optional:
            run += piece
        if not piece or q:
            runs.append(run)
            run = ""
    runs.append(run)
    return tuple(sorted({r for r in runs if len(r) >= 3}, key=len, reverse=True))


@dataclass(frozen=True)
class _Alternative:
    anchors: tuple[str, ...]
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class _Rule:
    cause: str
    speaker: str
    alternatives: tuple[_Alternative, ...]
    near: re.Pattern[str] | None = None
    """Must also occur on the matched line or the one before it."""


def _rule(cause: str, speaker: str, table: str, near: str = "") -> _Rule:
    alternatives = tuple(
        _Alternative(_anchors(a), re.compile(a, re.M)) for a in _alternatives(table)
    )
    return _Rule(cause, speaker, alternatives, _rx(near) if near else None)


_COMMAND = "<command>"  # routed by the command that was not found (see _route)

_CONTAINER_CONTEXT = re.compile(
    r"error response from daemon|oci runtime|runc|crun|container process|container init"
    r"|prestart hook|error running hook|shim task|containerd task"
)

_REGISTRY_CONTEXT = r"""
        /v2/
        registry
        unable to find image
        \bpull
        manifest
        failed to resolve (?:reference|source metadata)
        failed to do request
        failed to fetch
        failed to copy
        failed to authorize
        auth\.docker\.io
        error response from daemon: (?:get|head)\s
    """

# Ordered: the first rule that matches wins. Each group is one component speaking.
_RULES: tuple[_Rule, ...] = (
    # -- Docker Desktop's stand-in for docker in a WSL distro whose integration is off: it
    # prints a notice instead of running (there is no docker CLI in that distro)
    _rule("docker_cli_missing", "docker-desktop", r"""
        the command '[^'\n]{1,64}' could not be found in this wsl \d distro
        activate the wsl integration in docker desktop settings
        convert this distro to wsl 2 and activate
    """),
    # -- the docker CLI talking to its daemon
    _rule("daemon_permission_denied", "docker-cli", r"""
        permission denied while trying to connect to the (?:docker|podman)
        dial unix [^\s:]{0,99}?(?:docker|podman|containerd)[^\s:]{0,99}: connect: permission denied
    """),
    _rule("daemon_unreachable", "docker-cli", r"""
        cannot connect to the docker daemon
        is the docker daemon running
        failed to connect to the docker api
        error during connect
        docker daemon is not running
        dial unix [^\s:]{0,99}?(?:docker|podman|containerd)[^\s:]{0,99}: connect: no such file
        dial unix [^\s:]{0,99}?(?:docker|podman|containerd)[^\s:]{0,99}: connect: connection refused
        cannot connect to podman
        unable to connect to podman
        context "[^"\n]+":? (?:context )?(?:does not exist|is not found|not found)
        unable to resolve docker endpoint
        "[^"\n]+" service destination not found
        error: failed to connect: (?:dial (?:tcp|unix)|ssh:)
        dial-stdio\]? has exited with
        has exited with [^\n]{0,200}make sure the url is valid, and docker 18\.09
        failed to dial "[^"\n]+\.sock"
        open //\./pipe/(?:docker|podman)[\w-]*: the system cannot find
        request returned (?:\d+ )?internal server error for api route and version
        (?:get|head|post) "?https?://[^\s"]{1,200}/(?:v1\.\d+/|_ping)\S{0,200}?: dial (?:tcp|unix)
    """),
    _rule("container_name_conflict", "daemon", r"""
        the container name "[^"\n]+" is already in use
        name \S+ already in use, cannot rename container
        that name is already in use
        \b(?:container|snapshot) "[^"\n]+": already exists
    """),
    # -- the registry / pull path (image references are masked before this runs)
    _rule("image_not_found", "registry", r"""
        pull access denied
        repository does not exist
        manifest for \S+ not found
        manifest unknown
        no matching manifest for
        failed to resolve reference "[^"\n]{0,300}":[^\n]{0,300}\bnot found
        no such image
        image not known
        name unknown:
        requested access to the resource is denied
        unauthorized: authentication required
        invalid reference format
        short-name "[^"\n]*" did not resolve
        \bimage \S+ not found
        \brepository \S+ not found
    """),
    _rule("image_not_found", "registry", r"""
        \bunauthorized\b
        \bdenied:
    """, near=_REGISTRY_CONTEXT),
    _rule("registry_unreachable", "registry", r"""
        dial tcp
        no such host
        i/o timeout
        tls handshake timeout
        connection refused
        connection reset by peer
        client\.timeout exceeded
        request canceled
        network is unreachable
        no route to host
        temporary failure in name resolution
        server misbehaving
        x509:
        proxyconnect
        toomanyrequests
        too many requests
        pull rate limit
        service unavailable
        bad gateway
        context deadline exceeded
        unexpected eof
    """, near=_REGISTRY_CONTEXT),
    # -- the engine: runtime selection, device drivers, CDI, the NVIDIA hook binaries
    _rule("cdi_injection_failed", "daemon", r"""
        could not select device driver "cdi"
        unresolvable cdi devices
        (?:setting up|injecting|inject) cdi devices
        cdi device injection failed
        failed to inject devices
        failed to stat cdi host device
        \b[\w.-]+\.[a-z]+/[\w.-]+=[\w:.-]+ is not an absolute path
        failed to (?:refresh|create|initialize) cdi (?:registry|cache)
        unknown cdi device
        \bstat [\w.-]+\.[a-z]+/[\w.-]+=[\w:.-]+: no such file
        \b[\w.-]+\.[a-z]+/[\w.-]+=[\w:.-]+ is not a valid device
        invalid device mode: [\w.-]+\.[a-z]+/[\w.-]+=
        error mounting "?/\S{0,200}?lib\w{0,40}?(?:cuda|nvidia)[\w-]*\.so\.\d
        cannot stat `?/\S{0,200}?lib\w{0,40}?(?:cuda|nvidia)[\w-]*\.so\.\d
        error stat'ing file `?/\S{0,200}?lib\w{0,40}?(?:cuda|nvidia)[\w-]*\.so\.\d
    """),
    _rule("nvidia_runtime_unknown", "daemon", r"""
        unknown or invalid runtime name:? "?nvidia
        unknown runtime specified:? "?nvidia
        no runtime for "?nvidia
        no valid executable found for oci runtime "?nvidia
        oci runtime "?nvidia"?[^\n]{0,200}not found
        runtime "[^"\n]*nvidia[^"\n]*" binary not installed
        runtimeclass "?nvidia"? not found
    """),
    _rule("gpu_driver_not_configured", "daemon", r"""
        could not select device driver
        unknown flag: --gpus
        invoking the nvidia container runtime hook directly
    """),
    _rule("toolkit_hook_missing", "oci-hook", r"""
        couldn't find binary nvidia-container-(?:cli|runtime-hook|toolkit)
        exec: "?[^\s"]{0,200}?nvidia-container-[\w-]*"?: executable file not found
        exec: "?[^\s"]{0,200}?nvidia-container-[\w-]*"?: (?:no such file|stat )
        fork/exec \S{0,200}?nvidia-container-(?:runtime-hook|toolkit|cli|runtime): no such file
        nvidia-container-cli: error while loading shared libraries
        error executing hook `[^`\n]*nvidia[^`\n]*` \(exit code: 127\)
        ldcache error: open failed: \S*ldconfig
        ldcache error: process \S*ldconfig\S* failed
    """),
    # -- nvidia-container-cli (the hook) and the driver
    _rule("cgroup_device_setup_failed", "nvidia-container-cli", r"""
        cgroup subsystem devices not found
        failed to get device cgroup mount path
        bpf_prog_query\(bpf_cgroup_device\)
        unable to find any existing device filters attached to the cgroup
        failed to add device rules
        /sys/fs/cgroup/devices\S*: (?:no such file|permission denied|read-only)
    """),
    _rule("nvml_driver_library_mismatch", "nvml", r"""
        driver/library version mismatch
        api mismatch: the client has the version
    """),
    _rule("driver_not_loaded", "nvidia-driver", r"""
        couldn't communicate with the nvidia driver
        nvml error: driver not loaded
        failed to initialize nvml: driver not loaded
        error_driver_not_loaded
        load library failed: lib(?:nvidia-ml|cuda)\.so
        lib(?:nvidia-ml|cuda)\.so(?:\.1)?: cannot open shared object file
        couldn't find libnvidia-ml\.so
        could not load nvml library
        nvml shared library not found
        error_library_not_found
        initialization error: driver (?:rpc )?error
        gpu access blocked by the operating system
        (?:failed to initialize nvml|nvml error): insufficient permissions
        wsl environment detected but no adapters were found
        module nvidia not found
        found no nvidia driver on your system
        nvidia kernel module (?:is )?(?:missing|not loaded)
    """),
    _rule("cuda_requirement_unsatisfied", "nvidia-container-cli", r"""
        unsatisfied condition:
        cuda driver version is insufficient for cuda runtime version
        the nvidia driver on your system is too old
        forward compatibility was attempted on non supported hw
        system has unsupported display driver / cuda driver combination
        cuda_error_(?:insufficient_driver|compat_not_supported_on_device|system_driver_mismatch)
    """),
    # -- NVML inside a container that started
    _rule("nvml_unknown_error_cgroups", "nvml", r"failed to initialize nvml: unknown error"),
    _rule("no_devices", "nvidia-driver", r"""
        no devices were found
        no cuda-capable device is detected
        unable to determine the device handle for gpu
        gpu is lost
        device error: [^\n]{0,200}unknown device
        cuda_error_no_device
        insufficient nvidia\.com/gpu
        no devices found\. waiting indefinitely
    """),
    # -- a command that does not exist: group "cmd" names it
    _rule(_COMMAND, "oci-runtime", r'exec: "(?P<cmd>[^"\n]+)": executable file not found'),
    _rule(_COMMAND, "oci-runtime", r"executable file `(?P<cmd>[^`\n]+)` not found"),
    _rule(_COMMAND, "oci-runtime", r'exec: "(?P<cmd>[^"\n]+)": stat [^\n]{0,300}no such file'),
    _rule(_COMMAND, "shell", r"command not found: (?P<cmd>[\w.+/-]+)"),
    _rule(_COMMAND, "shell", r"(?<![\w.+/-])(?P<cmd>[a-z_./][\w.+/-]{0,100}): command not found"),
    _rule(_COMMAND, "shell",
          r"(?:^|\s)[\w/.-]{0,64}sh(?:: (?:line )?\d+)?: (?:\d+: )?(?P<cmd>[\w.+/-]+): not found"),
    _rule(_COMMAND, "shell", r"'(?P<cmd>[^'\n]+)' is not recognized as an internal"),
    _rule(_COMMAND, "shell", r"the term '(?P<cmd>[^'\n]+)' is not recognized"),
    _rule(_COMMAND, "shell", r"unknown command:? '?(?P<cmd>[\w.+/-]+)"),
    _rule(_COMMAND, "shell", r"which: no (?P<cmd>[\w.+-]+) in \("),
    _rule(_COMMAND, "shell", r"failed to run command '(?P<cmd>[^'\n]+)': no such file"),
    _rule(_COMMAND, "shell", r"\benv: '?(?P<cmd>[\w.+/-]+)'?: no such file"),
    _rule(_COMMAND, "python",
          r"filenotfounderror: \[errno 2\] no such file or directory: '(?P<cmd>[^'\n]+)'"),
    _rule("container_command_not_found", "oci-runtime",
          r"oci runtime attempted to invoke a command that was not found"),
)  # fmt: skip

_DOCKER_COMMANDS = frozenset({"docker", "podman"})
_HOOK_COMMANDS = frozenset(
    {
        "nvidia-container-cli",
        "nvidia-container-runtime-hook",
        "nvidia-container-toolkit",
        "nvidia-container-runtime",
    }
)
_TOOLKIT_COMMANDS = frozenset({"nvidia-ctk", "nvidia-docker", "nvidia-docker2"})

# -- facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    """A regular expression over lower-case text, run only where its anchor occurs."""

    pattern: re.Pattern[str]
    anchors: tuple[str, ...]

    @classmethod
    def of(cls, pattern: str) -> _Pattern:
        return cls(re.compile(pattern, re.M), _anchors(pattern))

    def finditer(self, low: str) -> Iterator[re.Match[str]]:
        present = all(anchor in low for anchor in self.anchors)
        return self.pattern.finditer(low) if present else iter(())

    def search(self, low: str) -> re.Match[str] | None:
        present = all(anchor in low for anchor in self.anchors)
        return self.pattern.search(low) if present else None


# Every version a text names; matched on the lower-cased text.
_FACTS: tuple[tuple[str, _Pattern], ...] = tuple(
    (key, _Pattern.of(pattern))
    for key, pattern in (
        ("driver_version", rf"driver\s+version\s*:\s*({_V})"),
        ("driver_version", rf"nvrm\s+version:\s*({_V})"),
        ("driver_version", rf"this\s+kernel\s+module\s+has\s+the\s+version\s+\"?({_V})"),
        ("driver_version", rf"kernel\s+module\s+({_V})"),
        ("cuda_version", rf"cuda\s+version\s*:\s*({_V})"),
        ("required_cuda", rf"unsatisfied\s+condition:\s*cuda\s*>=?\s*({_V})"),
        ("required_driver", r"unsatisfied\s+condition:\s*driver\s*>=?\s*(\d+(?:\.\d+)*)"),
        ("required_arch", rf"unsatisfied\s+condition:\s*arch\s*>=?\s*({_V})"),
        ("required_brand", r"unsatisfied\s+condition:\s*brand\s*==?\s*(\w+)"),
        ("nvml_library_version", rf"nvml\s+library\s+version:\s*({_V})"),
        ("nvml_library_version", rf"the\s+client\s+has\s+the\s+version\s+\"?({_V})"),
        ("library_version", r"/lib[\w-]+\.so\.(\d+\.\d+(?:\.\d+)*)"),
        ("nvidia_smi_version", rf"nvidia-smi\s+(?:version\s*:\s*)?({_V})"),
        ("nvidia_ctk_version", rf"nvidia\s+container\s+toolkit\s+cli\s+version\s+({_V})"),
        (
            "nvidia_container_cli_version",
            rf"^(?:cli-)?version:\s*({_V})\s*\n(?:lib-version:[^\n]*\n)?build\s+date:",
        ),
        ("docker_version", rf"docker\s+version\s+({_V})"),
        ("docker_version", rf"^client:[^\n]*\n(?:[^\n]*\n){{0,3}}?[ \t]*version:[ \t]*({_V})"),
        ("docker_server_version", rf"server\s+version:\s*({_V})"),
        ("docker_api_version", r"api\s+version:\s*(1\.\d+)"),
        ("docker_api_version", r"/v(1\.\d+)/"),
        ("required_docker_version", rf"docker\s+({_V})\s+or\s+later"),
        ("podman_version", rf"/v({_V})/libpod/"),
    )
)
# PyTorch: "The NVIDIA driver on your system is too old (found version 11040)".
_TORCH_CUDA = _Pattern.of(r"driver on your system is too old \(found version (\d{4,6})\)")

_IMAGE_CHARS = r"[\w][\w./:@+-]*"
_IMAGES: tuple[_Pattern, ...] = tuple(
    _Pattern.of(p)
    for p in (
        rf"unable to find image '({_IMAGE_CHARS})' locally",
        rf"pull access denied for ({_IMAGE_CHARS})",
        rf"manifest for ({_IMAGE_CHARS}) not found",
        rf"failed to resolve reference \"({_IMAGE_CHARS})\"",
        rf"failed to resolve source metadata for ({_IMAGE_CHARS}):",
        rf"failed to solve: ({_IMAGE_CHARS}): pull access denied",
        rf"no such image: ({_IMAGE_CHARS})",
        rf"status: (?:downloaded newer image|image is up to date) for ({_IMAGE_CHARS})",
        rf"trying to pull ({_IMAGE_CHARS})\.\.\.",
        rf"initializing source docker://({_IMAGE_CHARS}): ",
        rf"(?:^|\s)({_IMAGE_CHARS}): image not known",
        rf"\bimage \"?({_IMAGE_CHARS})\"?:? not found",
        rf"\brepository ({_IMAGE_CHARS}) not found",
    )
)
_PULLING_FROM = _Pattern.of(r"^([\w][\w.-]*): pulling from ([\w][\w./:-]*)")

_ENDPOINT = re.compile(r"(?:unix|tcp|ssh|npipe|fd)://[^\s\"',]+")
_REGISTRY_HOST = re.compile(
    r"https?://([\w.-]+(?::\d+)?)/|lookup ([\w.-]+\.[a-z]{2,})"
    r"|pinging container registry ([\w.-]+)",
    re.I,
)
_CDI_DEVICE = re.compile(r"\b([\w.-]+\.[a-z]+/[\w.-]+=[\w:.-]+)", re.I)
_PLATFORM = re.compile(r"no matching manifest for ([\w/.-]+)", re.I)

# -- text preparation -----------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_ESCAPED_QUOTE = re.compile(r'(?<!\\)\\+"')
_ESCAPED_NEWLINE = re.compile(r"(?<!\\)\\+[nr]")
_ESCAPED_TAB = re.compile(r"(?<!\\)\\+t")
_BLANKS = re.compile(r"[ \t\f\v\u00a0]{2,}|[\t\f\v\u00a0]")  # a single space stays
_SPACES = re.compile(r"  +")
_TYPOGRAPHIC_QUOTES = "“”‘’"
_TYPOGRAPHIC = str.maketrans(dict(zip(_TYPOGRAPHIC_QUOTES, "\"\"''", strict=True)))


_LINE_REACH = 4 * 1024  # how far the window's edges move to keep a line whole


def _edges(text: str) -> tuple[int, int]:
    """Where a long text's classified head ends and its tail begins: at a line's end, moved
    up to _LINE_REACH to get there (a longer line is cut)."""
    end = text.find("\n", _HEAD, _HEAD + _LINE_REACH)
    start = text.rfind("\n", len(text) - _TAIL - _LINE_REACH, len(text) - _TAIL) + 1
    return (end if end >= 0 else _HEAD), (start if start > 0 else len(text) - _TAIL)


def _window(text: str) -> str:
    """The head and the tail of a long text, whole lines where they can be."""
    if len(text) <= _HEAD + _TAIL:
        return text
    head_end, tail_start = _edges(text)
    return text[:head_end] + "\n" + text[tail_start:]


def _normalise(text: str) -> str:
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if any(quote in text for quote in _TYPOGRAPHIC_QUOTES):
        text = text.translate(_TYPOGRAPHIC)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\\" in text:
        text = _ESCAPED_QUOTE.sub('"', text)
        text = _ESCAPED_NEWLINE.sub("\n", text)
        text = _ESCAPED_TAB.sub(" ", text)
    if any(blank in text for blank in "\t\f\v\u00a0"):
        text = _BLANKS.sub(" ", text)
    elif "  " in text:
        text = _SPACES.sub(" ", text)  # the common case, twice as fast
    return text


def _lower(text: str) -> str:
    """Lower case with the same length, so that match positions index the original."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return text.encode("ascii", "replace").decode("ascii").lower()


_IMAGE_HINTS = ("image", "pull", "manifest", "reference", "repository", "docker://", "solve")


def _images(text: str, low: str) -> list[str]:
    """Image references, spelt as in ``text`` (``low`` is its lower-cased twin)."""
    found: list[str] = []
    if not any(hint in low for hint in _IMAGE_HINTS):
        return found
    for pattern in _IMAGES:
        for m in pattern.finditer(low):
            image = text[m.start(1) : m.end(1)].rstrip(".,:;'\"")
            if image and image not in found:
                found.append(image)
    for m in _PULLING_FROM.finditer(low):
        image = f"{text[m.start(2) : m.end(2)]}:{text[m.start(1) : m.end(1)]}"
        if image not in found:
            found.append(image)
    return found


def _mask(text: str, images: list[str]) -> str:
    """Blank out image references, as whole tokens and keeping the length (so that positions
    stay valid). Bare names (``docker``, ``registry``) stay: they are also plain words."""
    names = {
        i for image in images for i in (image, image.rsplit(":", 1)[0]) if "/" in i or ":" in i
    }
    for name in sorted(names, key=len, reverse=True):
        token = re.compile(rf"(?<![\w./:@-]){re.escape(name)}(?![\w./:@-])")
        text = token.sub(lambda m: "#" * len(m.group(0)), text)
    return text


def _facts(low: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for key, pattern in _FACTS:
        if key not in facts:
            m = pattern.search(low)
            if m:
                facts[key] = m.group(1)
    torch = _TORCH_CUDA.search(low)
    if torch and "cuda_version" not in facts:
        number = int(torch.group(1))
        facts["cuda_version"] = f"{number // 1000}.{number % 1000 // 10}"
    return facts


def _line_at(text: str, start: int, end: int) -> tuple[int, int]:
    begin = text.rfind("\n", 0, start) + 1
    stop = text.find("\n", end)
    return begin, len(text) if stop < 0 else stop


def _one_line(text: str, limit: int = _LINE_MAX) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _clip_output(text: str) -> str:
    if len(text) <= _OUTPUT_HEAD + _OUTPUT_TAIL:
        return text
    omitted = len(text) - _OUTPUT_HEAD - _OUTPUT_TAIL
    return f"{text[:_OUTPUT_HEAD]}\n[... {omitted} characters omitted ...]\n{text[-_OUTPUT_TAIL:]}"


# -- matching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    cause: str
    speaker: str
    start: int
    end: int
    command_start: int = 0
    command_end: int = 0


def _match(low: str) -> _Hit | None:
    present: dict[str, bool] = {}  # anchor -> occurs in low (anchors repeat across rules)
    for rule in _RULES:
        best: tuple[int, re.Match[str]] | None = None
        for alternative in rule.alternatives:
            if not _has_all(alternative.anchors, low, present):
                continue
            m = _first_valid(alternative.pattern, rule.near, low)
            if m is not None and (best is None or m.start() < best[0]):
                best = (m.start(), m)
        if best is None:
            continue
        m = best[1]
        if rule.cause != _COMMAND:
            return _Hit(rule.cause, rule.speaker, m.start(), m.end())
        cause = _route(m.group("cmd"), low, m.start())
        return _Hit(cause, rule.speaker, m.start(), m.end(), m.start("cmd"), m.end("cmd"))
    return None


def _has_all(anchors: tuple[str, ...], low: str, present: dict[str, bool]) -> bool:
    for anchor in anchors:
        if anchor not in present:
            present[anchor] = anchor in low
        if not present[anchor]:
            return False
    return True


def _first_valid(
    pattern: re.Pattern[str], near: re.Pattern[str] | None, low: str
) -> re.Match[str] | None:
    """The first match of ``pattern`` that has ``near`` on its line or the line before."""
    for m in pattern.finditer(low):
        if near is None:
            return m
        begin, stop = _line_at(low, m.start(), m.end())
        before = low.rfind("\n", 0, max(begin - 1, 0)) + 1 if begin else begin
        if near.search(low, before, stop):
            return m
    return None


def _route(command: str, low: str, position: int) -> str:
    """Which cause a missing command means: docker itself, the toolkit, or the container's."""
    name = command.strip("'\"`").rsplit("/", 1)[-1].removesuffix(".exe")
    begin, stop = _line_at(low, position, position)
    in_container = bool(_CONTAINER_CONTEXT.search(low, begin, stop))
    if name in _DOCKER_COMMANDS:
        return "container_command_not_found" if in_container else "docker_cli_missing"
    if name in _HOOK_COMMANDS:
        return "toolkit_hook_missing" if in_container else "toolkit_missing"
    if name in _TOOLKIT_COMMANDS:
        return "toolkit_missing"
    return "container_command_not_found"


# -- explanations ---------------------------------------------------------------------------


@dataclass
class _Context:
    text: str  # normalised, unmasked
    line: str  # the line that matched
    inner: str  # the innermost message on that line (what the deepest component said)
    details: dict[str, Any]
    returncode: int | None
    command: str = ""


# Where the innermost message starts: the wrappers (docker, runc, the hook) put it last.
_SPEAKERS = re.compile(
    r"nvidia-container-cli: |nvidia-smi |failed to initialize nvml|stderr: ",
    re.I,
)
_TRAILER = re.compile(r"""(?:[:\s]*unknown)?[\s."'\\]*$""", re.I)


def _inner(line: str, at: int) -> str:
    """The part of ``line`` from the last speaker marker before ``at`` (or the whole line)."""
    start = 0
    for m in _SPEAKERS.finditer(line, 0, max(at, 0) + 1):
        start = m.end() if m.group(0).lower() == "stderr: " else m.start()
    return _one_line(_TRAILER.sub("", line[start:]), 200)


def _versions(d: dict[str, Any]) -> str:
    parts = [f"driver {d['driver_version']}"] if d.get("driver_version") else []
    if d.get("cuda_version"):
        parts.append(f"CUDA {d['cuda_version']}")
    return f" ({', '.join(parts)})" if parts else ""


_STAND_IN_WSL = re.compile(r"in this wsl (\d) distro|convert this distro to wsl 2", re.I)


def _explain_cli_missing(c: _Context) -> tuple[str, str, str]:
    low = c.text.lower()
    if "wsl integration in docker desktop" not in low and not _STAND_IN_WSL.search(c.text):
        return ("Docker not found on PATH", *R.remedy("docker_cli_missing"))
    # Docker Desktop's stand-in: the docker CLI only exists in a WSL 2 distro that Docker
    # Desktop integrates. What to do depends on the distro's WSL version, which it names.
    wsl = _STAND_IN_WSL.search(c.text)
    version = "1" if wsl and (wsl.group(1) == "1" or wsl.group(1) is None) else "2"
    c.details.setdefault("platform", f"wsl{version}")
    c.details.setdefault("docker_desktop_stand_in", True)
    if version == "1":
        return (
            "docker here is Docker Desktop's stand-in, not the Docker CLI: this is a WSL 1 "
            "distro, which Docker Desktop does not integrate",
            "In PowerShell: wsl --set-version <distro> 2; then in Docker Desktop turn on "
            "Settings > Resources > WSL integration for the distro and open a new shell (or "
            "install Docker Engine inside the distro)",
            R.DESKTOP_WSL_URL,
        )
    return (
        "docker here is Docker Desktop's stand-in, not the Docker CLI: Docker Desktop's WSL "
        "integration is off for this distro (or Docker Desktop is not running)",
        "Start Docker Desktop and turn on Settings > Resources > WSL integration for this "
        "distro, then open a new shell (or install Docker Engine inside the distro)",
        R.DESKTOP_WSL_URL,
    )


_DIAL_REASONS = (
    ("connection refused", ": connection refused"),
    ("i/o timeout", ": connection timed out"),
    ("timed out", ": connection timed out"),
    ("no such host", ": host name not found"),
    ("no such file", ": no socket there"),
)


def _explain_unreachable(c: _Context) -> tuple[str, str, str]:
    fix, url = R.remedy("daemon_unreachable")
    endpoint = c.details.get("endpoint")
    where = f" at {endpoint}" if endpoint else ""
    low = c.line.lower()
    if "service destination not found" in low:
        return (
            f"The Podman connection does not exist: {c.inner}",
            "List the connections with `podman system connection list` and pick one "
            "(`podman system connection default NAME`), or unset CONTAINER_CONNECTION",
            R.PODMAN_CONNECTION_URL,
        )
    if "context" in low and ("does not exist" in low or "not found" in low):
        return (
            f"The current docker context does not exist: {c.inner}",
            "Select an existing context: `docker context ls`, then `docker context use default`",
            R.DOCKER_CONTEXT_URL,
        )
    if "resolve docker endpoint" in low:
        return (
            f"The Docker endpoint cannot be set up: {c.inner}",
            "Check DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (ca.pem, cert.pem and "
            "key.pem of a TLS daemon), or the endpoint of the current context",
            R.DOCKER_REMOTE_TLS_URL,
        )
    if "containerd" in low and "docker" not in low:
        return (
            f"Cannot connect to containerd{where}",
            "Start containerd (sudo systemctl start containerd) or point --address at its socket",
            R.CONTAINERD_URL,
        )
    reason = next((r for word, r in _DIAL_REASONS if word in low), "")
    if "podman" in c.text.lower() or low.startswith("error: failed to connect"):
        return (
            f"Cannot connect to the Podman service{where}{reason}",
            "Start it (systemctl --user start podman.socket, or podman machine start), or "
            "check the connection with `podman system connection list`",
            R.PODMAN_CONNECTION_URL,
        )
    if "ssh" in low or str(endpoint).startswith("ssh://"):
        return _explain_ssh(c, where)
    return f"Cannot connect to the Docker daemon{where}{reason}", fix, url


# What ssh said when `ssh HOST docker system dial-stdio` failed (the CLI puts it after stderr=).
_SSH_REASONS = (
    ('exec: "ssh"', "no ssh client on this machine", "Install an ssh client (openssh-client)"),
    (
        "host key verification failed",
        "ssh does not know the remote host's key",
        "Accept the host key once (`ssh HOST true`, or ssh-keyscan HOST >> ~/.ssh/known_hosts)",
    ),
    (
        "permission denied (",
        "ssh refused the login",
        "Log in with a key without a prompt (ssh-copy-id, ssh-agent)",
    ),
    (
        "could not resolve hostname",
        "the host name does not resolve",
        "Check the host name in DOCKER_HOST or the context",
    ),
    ("connection refused", "ssh: connection refused", "Check that sshd runs on the remote host"),
    ("connection timed out", "ssh: connection timed out", "Check the host and the firewall"),
    (
        "kex_exchange_identification",
        "the ssh connection was closed before the login",
        "Check the host, its sshd and any firewall between",
    ),
    (
        "connection reset",
        "the ssh connection was reset",
        "Check the host, its sshd and any firewall between",
    ),
)


def _explain_ssh(c: _Context, where: str) -> tuple[str, str, str]:
    low = c.text.lower()
    found = next((r for r in _SSH_REASONS if r[0] in low), None)
    reason = f": {found[1]}" if found else ""
    first = f"{found[2]}; then " if found else ""
    return (
        f"Cannot reach the Docker daemon over ssh{where}{reason}",
        f"{first}`ssh HOST docker system dial-stdio` must start without a prompt, and the "
        "remote Docker must be 18.09 or newer with this user allowed on its socket",
        R.DOCKER_REMOTE_SSH_URL,
    )


def _explain_permission(c: _Context) -> tuple[str, str, str]:
    endpoint = c.details.get("endpoint")
    where = f" {endpoint}" if endpoint else ""
    return (
        f"Permission denied on the Docker daemon socket{where}",
        *R.remedy("daemon_permission_denied"),
    )


def _explain_toolkit_missing(c: _Context) -> tuple[str, str, str]:
    what = f" ({c.command} not found)" if c.command else ""
    return (f"NVIDIA Container Toolkit not found{what}", *R.remedy("toolkit_missing"))


def _explain_hook_missing(c: _Context) -> tuple[str, str, str]:
    binary = c.command or next(
        (
            b
            for b in (
                "nvidia-container-runtime-hook",
                "nvidia-container-toolkit",
                "nvidia-container-cli",
                "nvidia-container-runtime",
            )
            if b in c.line
        ),
        "a toolkit binary",
    )
    if "error while loading shared libraries" in c.line:
        binary = "libnvidia-container"
    ldconfig = re.search(r"ldcache error: \w+(?: failed:)? (\S*ldconfig\S*)", c.line, re.I)
    if ldconfig:
        c.details.setdefault("binary", ldconfig.group(1))
        return (
            f"The NVIDIA hook cannot run {ldconfig.group(1)}: the toolkit's ldconfig path does "
            "not fit this host (a distribution other than the package's, or Docker from snap)",
            'Set ldconfig = "@/sbin/ldconfig" (the host\'s ldconfig) in '
            "/etc/nvidia-container-runtime/config.toml, or reinstall the toolkit packages "
            "built for this distribution",
            R.TOOLKIT_INSTALL_URL,
        )
    c.details.setdefault("binary", binary)
    return (
        f"The NVIDIA Container Toolkit is incomplete: {binary} is missing",
        *R.remedy("toolkit_hook_missing"),
    )


def _explain_gpu_driver(c: _Context) -> tuple[str, str, str]:
    if "hook directly" in c.line.lower():
        return (
            "The NVIDIA hook refuses --gpus in this mode (CSV/Jetson or CDI): the container must "
            "run with the nvidia runtime",
            "Run with --runtime=nvidia, or make it the default: sudo nvidia-ctk runtime "
            "configure --runtime=docker --set-as-default && sudo systemctl restart docker",
            R.TOOLKIT_CONFIGURE_URL,
        )
    if "unknown flag: --gpus" in c.line.lower():
        return (
            "This docker CLI does not know --gpus (Docker older than 19.03)",
            "Upgrade Docker Engine to 19.03 or newer, then install the NVIDIA Container Toolkit",
            R.DOCKER_INSTALL_URL,
        )
    return (
        'Docker cannot select a GPU device driver (could not select device driver "" with '
        "capabilities [[gpu]]): the NVIDIA runtime is not configured in the daemon",
        *R.remedy("gpu_driver_not_configured"),
    )


def _explain_runtime(c: _Context) -> tuple[str, str, str]:
    return (
        "Docker does not know the 'nvidia' runtime: the NVIDIA Container Toolkit is not "
        "registered with the daemon (or the daemon was not restarted)",
        *R.remedy("nvidia_runtime_unknown"),
    )


def _explain_cdi(c: _Context) -> tuple[str, str, str]:
    fix, url = R.remedy("cdi_injection_failed")
    device = _CDI_DEVICE.search(c.line)
    name = device.group(1).rstrip(":.") if device else ""  # "stat nvidia.com/gpu=all: ..."
    if name:
        c.details.setdefault("cdi_device", name)
    low = c.line.lower()
    if 'device driver "cdi"' in low:
        return (
            "The Docker daemon has no CDI support enabled for --device nvidia.com/gpu=...",
            'Enable CDI in the daemon ("features": {"cdi": true} in daemon.json, Docker 25+), '
            "generate the spec (sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml) "
            "and restart the daemon",
            url,
        )
    if ".so." in low and ("error mounting" in low or "cannot stat" in low):
        return (
            "The CDI spec is stale: it names NVIDIA libraries that no longer exist "
            "(driver upgraded after the spec was generated)",
            fix,
            url,
        )
    if (
        "is not a valid device" in low
        or "invalid device mode" in low
        or (name and f"stat {name.lower()}:" in low)
    ):
        return (
            "This Podman takes the CDI name for a device path: it has no CDI support (Podman "
            "4.1 or newer reads CDI specs)",
            "Upgrade Podman to 4.1 or newer (5.x), generate the spec (sudo nvidia-ctk cdi "
            "generate --output=/etc/cdi/nvidia.yaml) and run with --device nvidia.com/gpu=all",
            url,
        )
    what = f" for {name}" if name else ""
    podman = "podman" in c.text.lower() or low.startswith(
        ("error: setting up cdi devices", "error: error setting up cdi devices")
    )
    if podman and "unresolvable cdi devices" in low:
        fix = (
            "sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml, make it readable "
            "(sudo chmod a+r /etc/cdi/nvidia.yaml: rootless Podman reads it as the user) and "
            "check the name with `nvidia-ctk cdi list`; Podman reads /etc/cdi and /var/run/cdi "
            "(--cdi-spec-dir adds another)"
        )
    return f"CDI device injection failed{what}", fix, url


def _explain_cgroup(c: _Context) -> tuple[str, str, str]:
    reason = next(
        (
            r
            for r in (
                "cgroup subsystem devices not found",
                "failed to get device cgroup mount path",
                "bpf_prog_query(BPF_CGROUP_DEVICE) failed",
                "failed to add device rules",
            )
            if r.lower() in c.line.lower()
        ),
        "device cgroup setup failed",
    )
    return (
        f"The NVIDIA hook could not set up the container's device cgroup ({reason})",
        *R.remedy("cgroup_device_setup_failed"),
    )


def _explain_mismatch(c: _Context) -> tuple[str, str, str]:
    lib = c.details.get("nvml_library_version")
    module = c.details.get("driver_version")
    if lib and module:
        versions = f": NVML library {lib}, kernel module {module}"
    elif lib:
        versions = f": NVML library {lib} differs from the loaded kernel module"
    elif module:
        versions = f": the loaded kernel module is {module}"
    else:
        versions = ""
    return (
        f"NVIDIA driver/library version mismatch{versions} (driver updated without reloading "
        "its kernel module)",
        *R.remedy("nvml_driver_library_mismatch"),
    )


def _explain_not_loaded(c: _Context) -> tuple[str, str, str]:
    fix, url = R.remedy("driver_not_loaded")
    low = c.text.lower()
    if "insufficient permissions" in low:
        return (
            f"This user may not open the NVIDIA device files (/dev/nvidiactl, /dev/nvidia*): "
            f"{c.inner}",
            "ls -l /dev/nvidia*: they must be readable and writable by this user (the driver "
            "creates them 0666 unless NVreg_DeviceFileMode/NVreg_DeviceFileGID say otherwise); "
            "run as a member of their group, or restore their mode",
            url,
        )
    wsl = _WSL_SIGN.search(low.replace("non-wsl", "")) is not None
    if "blocked by the operating system" in low and not wsl:
        # NVML's word for a device it may not use: WSL2 without a GPU, or on Linux a
        # /dev/nvidiactl that is not the driver's (seen on a real host with it replaced).
        return (
            f"The operating system refused access to the GPU{_versions(c.details)}: {c.inner}",
            "On Linux: ls -l /dev/nvidia* (character devices of major 195, made by the driver; "
            "`sudo nvidia-modprobe -c 0 -u` recreates them); on WSL2: update the NVIDIA driver on "
            "Windows and WSL (`wsl --update`), then `wsl --shutdown`",
            R.WSL_CUDA_URL,
        )
    if "failed to process request" in low and not wsl:
        # The hook's NVML call through its driver service failed. Public reports show it on
        # Linux hosts (persistence mode off, libcuda missing, a broken driver install) as well
        # as under WSL: with no sign of WSL, the Linux steps.
        return (
            f"The NVIDIA hook could not query the driver{_versions(c.details)}: {c.inner}",
            "Check `nvidia-smi` on the host; enable persistence mode (sudo nvidia-smi -pm 1, "
            "or run nvidia-persistenced); `sudo nvidia-container-cli -k -d /dev/tty info` "
            "names the failing step (a missing libcuda.so.1 or libnvidia-ml.so.1 means "
            "reinstalling the driver)",
            R.TOOLKIT_TROUBLESHOOT_URL,
        )
    if wsl:
        c.details.setdefault("platform", "wsl2")
        fix = (
            "Update the NVIDIA driver on Windows (not inside WSL) and WSL itself (`wsl --update`), "
            "then `wsl --shutdown`"
        )
        url = R.WSL_CUDA_URL
    return (
        f"The NVIDIA driver is not loaded or not reachable{_versions(c.details)}: {c.inner}",
        fix,
        url,
    )


# Signs in the output that the host is WSL (libnvidia-container's "non-WSL" is taken out first).
_WSL_SIGN = re.compile(
    r"/usr/lib/wsl|wsl environment detected|microsoft-standard-wsl|\bwsl ?2\b|/dev/dxg"
    r"|libdxcore|skipping kernel modules load on wsl|\bwsl (?:distro|--)"
)


def _explain_cuda(c: _Context) -> tuple[str, str, str]:
    d = c.details
    need, have = d.get("required_cuda"), d.get("cuda_version")
    driver = f" {d['driver_version']}" if d.get("driver_version") else ""
    supports = f"supports only CUDA {have}" if have else "is too old for it"
    if need:
        from .cuda_table import min_driver_for_cuda

        minimum = min_driver_for_cuda(need)
        if minimum:
            d["min_driver"] = minimum
        target = (
            f"{minimum} or newer (CUDA {need})"
            if minimum
            else f"one that supports CUDA {need} or newer"
        )
        return (
            f"The image requires CUDA >= {need} but the host driver{driver} {supports}",
            f"Upgrade the host NVIDIA driver to {target}, or use "
            f"an image built for {'CUDA ' + have if have else 'an older CUDA'}",
            R.CUDA_COMPAT_URL,
        )
    if d.get("required_driver"):
        return (
            f"The image requires NVIDIA driver >= {d['required_driver']}; the host driver"
            f"{driver} is older",
            f"Upgrade the host NVIDIA driver to {d['required_driver']} or newer",
            R.CUDA_COMPAT_URL,
        )
    condition = re.search(r"unsatisfied condition: ?([^,\n]+)", c.line, re.I)
    if condition:
        return (
            f"The image's NVIDIA_REQUIRE_* condition is not met: {condition.group(1).strip()}",
            *R.remedy("cuda_requirement_unsatisfied"),
        )
    return (
        f"The host driver{driver} is too old for the CUDA version of the image"
        f"{': ' + c.inner if c.inner else ''}",
        *R.remedy("cuda_requirement_unsatisfied"),
    )


def _explain_nvml_unknown(c: _Context) -> tuple[str, str, str]:
    return (
        "NVML failed inside the container with 'Unknown Error': the container lost access to "
        "the GPU device nodes (typically after `systemctl daemon-reload` with the systemd "
        "cgroup driver)",
        *R.remedy("nvml_unknown_error_cgroups"),
    )


def _explain_no_devices(c: _Context) -> tuple[str, str, str]:
    return (
        f"No usable NVIDIA GPU{_versions(c.details)}: {c.inner}",
        *R.remedy("no_devices"),
    )


def _explain_image(c: _Context) -> tuple[str, str, str]:
    fix, url = R.remedy("image_not_found")
    image = c.details.get("image")
    name = f"Image {image}" if image else "The image"
    low = c.line.lower()
    platform = _PLATFORM.search(c.line)
    if platform:
        c.details.setdefault("platform", platform.group(1))
        return (
            f"{name} has no build for platform {platform.group(1)}",
            "Use a tag built for this platform, or pass --platform",
            url,
        )
    if "invalid reference format" in low:
        return f"Invalid image reference{' ' + image if image else ''}", fix, url
    if image:
        fix = (
            f"Check the image name and tag (`docker pull {image}`); run `docker login` for a "
            "private registry"
        )
    denied = any(w in low for w in ("denied", "unauthorized", "authorization"))
    if denied:
        return f"{name} not found or access denied (pull access denied)", fix, url
    return f"{name} not found in the registry", fix, url


def _explain_registry(c: _Context) -> tuple[str, str, str]:
    fix, url = R.remedy("registry_unreachable")
    host = _REGISTRY_HOST.search(c.line) or _REGISTRY_HOST.search(c.text)
    registry = next((g for g in host.groups() if g), None) if host else None
    if registry:
        c.details.setdefault("registry", registry)
    low = c.line.lower()
    reasons = (
        ("toomanyrequests", "pull rate limit reached"),
        ("too many requests", "pull rate limit reached"),
        ("rate limit", "pull rate limit reached"),
        ("no such host", "DNS lookup failed"),
        ("lookup ", "DNS lookup failed"),
        ("name resolution", "DNS lookup failed"),
        ("tls handshake timeout", "TLS handshake timed out"),
        ("x509", "TLS certificate not trusted"),
        ("proxyconnect", "proxy connection failed"),
        ("connection refused", "connection refused"),
        ("timeout", "connection timed out"),
        ("request canceled", "connection timed out"),
        ("deadline exceeded", "connection timed out"),
    )
    reason = next((r for word, r in reasons if word in low), "network error")
    if reason == "pull rate limit reached":
        fix = "Run `docker login` (authenticated pulls have a higher limit) or use a mirror"
    image = c.details.get("image")
    target = f" to pull {image}" if image else ""
    where = f" {registry}" if registry else ""
    return f"Cannot reach the registry{where}{target}: {reason}", fix, url


_CONFLICT_NAME = re.compile(
    r'container name "/?([^"\n]+)"|name (\S+) already in use|(?:container|snapshot) "([^"\n]+)"'
)
_CONFLICT_ID = re.compile(r"in use by (?:container )?\"?([0-9a-f]{12,64})\b")


def _explain_conflict(c: _Context) -> tuple[str, str, str]:
    fix, url = R.remedy("container_name_conflict")
    name = _CONFLICT_NAME.search(c.line)
    holder = _CONFLICT_ID.search(c.line)
    if holder:
        c.details.setdefault("container_id", holder.group(1))
    if name is None:
        return "A container of that name exists already", fix, url
    container = next(g for g in name.groups() if g)
    c.details.setdefault("container_name", container)
    low = c.text.lower()
    tool = "podman" if "podman" in low or "container storage" in low else "docker"
    if c.line.lower().startswith("ctr:"):
        remove = f"ctr containers rm {container}; ctr snapshots rm {container}"
    else:
        remove = f"{tool} rm -f {container}"
    held = f" (container {holder.group(1)[:12]})" if holder else ""
    return (
        f"The container name {container} is in use already{held}: a container left from an "
        "earlier run",
        f"{remove} (removes that container), or choose another name",
        url,
    )


def _explain_command(c: _Context) -> tuple[str, str, str]:
    fix, url = R.remedy("container_command_not_found")
    command = c.command or "the command"
    image = c.details.get("image")
    inside = f" in image {image}" if image else " in the container"
    if command.rsplit("/", 1)[-1] == "nvidia-smi":
        fix = (
            "Let the NVIDIA runtime inject nvidia-smi: run with --gpus all (Docker) or "
            "--device nvidia.com/gpu=all (Podman, CDI) and NVIDIA_DRIVER_CAPABILITIES "
            "including utility"
        )
    if c.returncode == 126 and not c.command:
        return f"The command could not be run{inside} (exit 126)", fix, url
    return f"Command {command} not found{inside}", fix, url


def _explain_unknown(c: _Context) -> tuple[str, str, str]:
    summary = _summary(c.text)
    if c.returncode == 125:
        head = "Docker could not create or start the container (exit 125)"
    elif c.returncode is not None:
        head = f"Unrecognised failure (exit {c.returncode})"
    else:
        head = "Unrecognised failure"
    return f"{head}: {summary}" if summary else head, *R.remedy("unknown")


_EXPLAIN: dict[str, Callable[[_Context], tuple[str, str, str]]] = {
    "docker_cli_missing": _explain_cli_missing,
    "daemon_unreachable": _explain_unreachable,
    "daemon_permission_denied": _explain_permission,
    "toolkit_missing": _explain_toolkit_missing,
    "toolkit_hook_missing": _explain_hook_missing,
    "gpu_driver_not_configured": _explain_gpu_driver,
    "nvidia_runtime_unknown": _explain_runtime,
    "cdi_injection_failed": _explain_cdi,
    "cgroup_device_setup_failed": _explain_cgroup,
    "nvml_driver_library_mismatch": _explain_mismatch,
    "driver_not_loaded": _explain_not_loaded,
    "cuda_requirement_unsatisfied": _explain_cuda,
    "nvml_unknown_error_cgroups": _explain_nvml_unknown,
    "no_devices": _explain_no_devices,
    "image_not_found": _explain_image,
    "registry_unreachable": _explain_registry,
    "container_command_not_found": _explain_command,
    "container_name_conflict": _explain_conflict,
    "unknown": _explain_unknown,
}

# -- the one rule for "ok" -----------------------------------------------------------------
# An output shows a failure when one of its lines reads as an error; such an output is never
# "ok", whatever the exit status. The words of an error (on lower-cased text):
_ERROR_WORDS = re.compile(  # grouped by first letter: scanned fast
    r"\be(?:rrors?\b|rro\[|xit(?:ed)? (?:with )?(?:status|code)\b)"
    r"|\bf(?:ail(?:s|ed|ure|ing)?|atal)\b|\bpanic:|\bc(?:ould ?n[o']t|annot|an't)\b|core dumped"
    r"|\bunable\b|\bunsatisfied\b"
    r"|\bunknown (?:command|flag|shorthand flag|option)\b"
    r"|\bno(?:t (?:found|permitted|recognized|installed|loaded)\b|n-zero exit| such\b)"
    r"|\bdenied\b|\brefused\b|\btimed out\b|i/o timeout|deadline exceeded|\binvalid\b|\bmismatch\b"
    r"|\bis not a valid\b|\binsufficient permissions\b"
    r"|\bis not (?:running\b|a (?:docker|podman) command)|traceback \(most recent call last\)"
    r"|segmentation fault|\breturned non-zero"
)
# Lines with such words that are no error: labelled warnings and log lines, table cells, the
# counters of `nvidia-smi -q` ("Correctable Error : 0", "ECC Errors"), Docker's notes on a
# pull, and the warning that NVIDIA documents as cosmetic.
_BENIGN_LINE = re.compile(  # matched at the start of a line
    r"\s*(?:warn(?:ing)?\b|(?:warn|info|debu|trac)\[|[iw]\d{4} )"
    r"|[^\n]*?\blevel=(?:warn(?:ing)?|info|debug|trace)\b"
    r"|\s*\|[^\n]*\|\s*$"
    r"|\s+[a-z][\w .()/-]*?\s(?:errors?|failures?)(?:\s[\w .()/-]*)?:\s*(?:[\d.]+|n/a|\[n/a\]"
    r"|none|yes|no|enabled|disabled|(?:not )?active|\[?not supported\]?)\s*$"
    r"|\s+[a-z][a-z ]*\berrors\s*$"
    r"|groups: cannot find name for group id \d+\s*$"
    r"|unable to find image '[^'\n]*' locally\s*$|[\w][\w.-]*: pulling from \S+\s*$"
)
_BENIGN_MAX = 500  # a longer line is never benign


# Every match of _ERROR_WORDS contains one of these: found with str.find, which outruns any
# regex scan, they pick the lines worth judging (a test keeps the two in step).
_ERROR_CLUES = (
    "erro", "exit", "fail", "fatal", "panic:", "could", "cannot", "can't", "core dumped",
    "unable", "unsatisfied", "unknown ", "not found", "not permitted", "not recognized",
    "not installed", "not loaded", "non-zero", "no such", "denied", "refused", "timed out",
    "i/o timeout", "deadline exceeded", "invalid", "mismatch", "is not running", "is not a ",
    "traceback", "segmentation fault", "insufficient permissions",
)  # fmt: skip


def _clue_lines(low: str) -> list[tuple[int, int]]:
    """The lines of ``low`` that hold a clue, in order, each once."""
    starts: set[int] = set()
    for clue in _ERROR_CLUES:
        at = low.find(clue)
        while at >= 0:
            starts.add(low.rfind("\n", 0, at) + 1)
            at = low.find(clue, at + len(clue))
    lines = []
    for begin in sorted(starts):
        end = low.find("\n", begin)
        lines.append((begin, len(low) if end < 0 else end))
    return lines


def _error_lines(low: str) -> Iterator[tuple[int, int]]:
    """Where the lines of ``low`` (lower-cased text) that read as an error are, in order."""
    for begin, end in _clue_lines(low):
        if not _ERROR_WORDS.search(low, begin, end):
            continue
        if end - begin > _BENIGN_MAX or not _BENIGN_LINE.match(low, begin, end):
            yield begin, end


def _shows_error(output: str, low: str) -> bool:
    """Whether any line reads as an error: in the classified window (``low``) or, for a long
    output, in the middle that the window leaves out."""
    if next(_error_lines(low), None) is not None:
        return True
    if len(output) <= _HEAD + _TAIL:
        return False
    # Between the window's edges, with the lines at the edges whole (one the window had to cut
    # is read here in full).
    head_end, tail_start = _edges(output)
    stop = output.find("\n", tail_start)
    middle = output[output.rfind("\n", 0, head_end) + 1 : len(output) if stop < 0 else stop]
    return next(_error_lines(_lower(_normalise(middle))), None) is not None


def _summary(text: str) -> str:
    """The line that says what failed: the last error line, else the last line."""
    for start in (max(len(text) - _QUERY_TAIL, 0), 0):  # the tail first: errors come last
        last = None
        for found in _error_lines(_lower(text[start:])):
            last = found
        if last is not None:
            return _one_line(text[start + last[0] : start + last[1]], 200)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _one_line(lines[-1] if lines else "", 200)


# -- the classifier -------------------------------------------------------------------------


def diagnose(output: str, returncode: int | None = None) -> Diagnosis:
    """Classify ``output`` (stdout and stderr together) into one cause of the vocabulary.

    Pure and total: any string (and ``bytes`` / ``None``, leniently) gives a
    :class:`Diagnosis`; ``details["output"]`` (``unknown`` only) is clipped to about 4 KB.
    """
    if isinstance(output, bytes | bytearray):
        output = bytes(output).decode("utf-8", "replace")
    elif not isinstance(output, str):
        output = "" if output is None else str(output)
    if not isinstance(returncode, int) or isinstance(returncode, bool):
        returncode = None

    text = _window(output)
    norm = _normalise(text)
    low = _lower(norm)
    images = _images(norm, low)
    masked = _mask(norm, images)
    low = _lower(masked)
    details = _facts(low)
    if images:
        details["image"] = images[0]
    hit = _match(low)

    line = inner = command = ""
    if hit is not None:
        cause = hit.cause
        begin, stop = _line_at(norm, hit.start, hit.end)
        begin, stop = max(begin, hit.start - _LINE_CONTEXT), min(stop, hit.end + _LINE_CONTEXT)
        line = norm[begin:stop]
        inner = _inner(line, hit.start - begin)
        line = line.strip()
        command = norm[hit.command_start : hit.command_end].strip("'\"`")
        details["component"] = hit.speaker
        details["evidence"] = _one_line(line)
    elif not output.strip() and returncode == 127:
        cause = "docker_cli_missing"
    elif returncode in (126, 127):
        cause = "container_command_not_found"
    elif returncode in (0, None) and not _shows_error(output, low):
        cause = "ok"
    else:
        cause = "unknown"

    endpoint = _ENDPOINT.search(line) if cause.startswith("daemon_") else None
    if endpoint:
        details["endpoint"] = endpoint.group(0).rstrip(".:;")

    if cause == "ok":
        return _ok(_smi_text(output, low), details)
    if cause == "unknown":
        details["output"] = _clip_output(output)
    context = _Context(norm, line, inner, details, returncode, command)
    message, fix, url = _EXPLAIN[cause](context)
    return Diagnosis(cause, _one_line(message, 400), fix, url, details)


_SMI_MARKS = ("nvsmi log", "attached gpus", "nvidia-smi", "nvrm version", "(uuid: gpu-")
_QUERY_TAIL = 4 * 1024  # a --query-gpu CSV (the probe's answer) is short and comes last


def _smi_text(output: str, low: str) -> str:
    """What an "ok" output's GPUs are read from: all of it when it shows a format of
    nvidia-smi, else the tail where a --query-gpu answer would be."""
    if any(mark in low for mark in _SMI_MARKS) or len(output) <= _QUERY_TAIL:
        return output[:_PARSE_MAX]
    tail = output[-_QUERY_TAIL:]
    return tail[tail.find("\n") + 1 :]


def _ok(text: str, details: dict[str, Any]) -> Diagnosis:
    info = parse_any(text)
    if info is not None:
        for key, value in (
            ("driver_version", info.driver_version),
            ("cuda_version", info.cuda_version),
            ("nvidia_smi_version", info.smi_version),
        ):
            if value:
                details[key] = value
        details["gpus"] = [g.summary() for g in info.gpus]
    parts = []
    if details.get("driver_version"):
        parts.append(f"driver {details['driver_version']}")
    if details.get("cuda_version"):
        parts.append(f"CUDA {details['cuda_version']}")
    if info is not None and info.gpus:
        parts.append(f"{len(info.gpus)} GPU(s)")
    message = "No failure" + (f": {', '.join(parts)}" if parts else " recognised")
    return Diagnosis("ok", message, "", "", details)
