"""Pure judgements: what the gathered host and image facts mean for each built-in check."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .records import HostFacts, ImageFacts, ProbeFacts
from .remedies import DOCKER_CONTEXT_URL, remedy
from .report import CheckResult, Finding
from .text import ascii_int

if TYPE_CHECKING:
    from .diagnosis import Diagnosis

DOCKER_INSTALL = ("Install Docker Engine", "https://docs.docker.com/engine/install/")
DOCKER_ENV_URL = "https://docs.docker.com/reference/cli/docker/#environment-variables"


Verdict = CheckResult  # a check's result before its id and tier are filled in


def passed(reason: str = "", **details: Any) -> Verdict:
    return Verdict(outcome="passed", reason=reason, details=details)


def not_run(reason: str) -> Verdict:
    return Verdict(outcome="not-run", reason=reason)


def skipped(reason: str) -> Verdict:
    return Verdict(outcome="skipped", reason=reason)


def failed(cause: str, message: str, *, fix: str = "", url: str = "", **details: Any) -> Verdict:
    finding = Finding.of(cause, message, fix, url, details)
    return Verdict(outcome="failed", finding=finding, details=details)


def warned(cause: str, message: str, *, fix: str = "", url: str = "", **details: Any) -> Verdict:
    finding = Finding.of(cause, message, fix, url, details, "warning")
    return Verdict(outcome="warning", finding=finding, details=details)


def _from_diagnosis(d: Diagnosis, message: str, **details: Any) -> Verdict:
    return failed(d.cause, message, fix=d.fix, url=d.url, **{**d.details, **details})


def diagnose(output: str, returncode: int | None) -> Diagnosis:
    """The classifier, imported only when some output needs explaining."""
    from .diagnosis import diagnose as classify

    return classify(output, returncode)


def _as_diagnosis(cause: str, output: str) -> Diagnosis:
    from .diagnosis import Diagnosis

    return Diagnosis(cause, "", *remedy(cause), details={"output": output})


def judge(check_id: str) -> Callable[[HostFacts], Verdict]:
    """The host-only verdict a check's declaration names (the tier-1 checks: their verdict
    needs nothing but the host facts)."""
    import importlib

    from .check_ids import BY_ID

    module, _, name = BY_ID[check_id].verdict.partition(":")
    found: Callable[[HostFacts], Verdict] = getattr(
        importlib.import_module(f"{__package__}.{module}"), name
    )
    return found


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# --- tier 1 ------------------------------------------------------------------------------


def _noting_wait(
    check_id: str,
) -> Callable[[Callable[[HostFacts], Verdict]], Callable[[HostFacts], Verdict]]:
    """The finding of a check that `--wait` waited for until its time was up says so."""

    def noting(judge: Callable[[HostFacts], Verdict]) -> Callable[[HostFacts], Verdict]:
        @functools.wraps(judge)
        def judged(host: HostFacts) -> Verdict:
            verdict = judge(host)
            if check_id in host.waited_for and verdict.finding is not None:
                waited = round(host.waited_s, 1)
                verdict.finding.message += f" (after waiting {host.waited_s:.0f} s)"
                verdict.finding.details["waited_s"] = waited
                verdict.details["waited_s"] = waited
            return verdict

        return judged

    return noting


def docker_cli(host: HostFacts) -> Verdict:
    if host.docker_path is None:
        return failed(
            "docker_cli_missing",
            "Docker not found on PATH",
            fix=DOCKER_INSTALL[0],
            url=DOCKER_INSTALL[1],
        )
    return passed(path=host.docker_path)


@_noting_wait("docker-daemon")
def docker_daemon(host: HostFacts) -> Verdict:
    if host.docker_path is None or host.version is None:
        return not_run("needs docker-cli")
    where: dict[str, Any] = {"endpoint": host.endpoint.url, "remote_daemon": host.endpoint.remote}
    result = host.version
    if result.timed_out:
        return failed(
            "daemon_unreachable",
            f"Docker daemon at {host.endpoint.url} did not answer `{result.command}` "
            f"within {result.duration_s:.0f}s",
            **where,
        )
    if result.ok and host.server_version:
        return passed(server_version=host.server_version, **where)
    if host.endpoint.error:  # the CLI refused the address before it tried to connect
        return _refused_endpoint(host, where)
    if result.too_large:  # an answer, unreadable: not a daemon out of reach
        message = f"Docker daemon at {host.endpoint.url}: {first_line(result.stderr)}"
        return failed("unknown", message, **where)
    d = diagnose(result.output, result.returncode)
    if d.cause in ("ok", "unknown"):
        d = _as_diagnosis("daemon_unreachable", result.output)
    line = first_line(result.stderr) or first_line(result.output) or "no answer"
    label = {"daemon_permission_denied": "Permission denied on the Docker daemon socket"}.get(
        d.cause, "Cannot reach the Docker daemon"
    )
    said = _after_address(line, host.endpoint.url)
    message = f"{label} at {host.endpoint.url}" + (f": {said}" if said else "")
    return _from_diagnosis(d, message, **where)


def _after_address(line: str, url: str) -> str:
    """What the CLI said beyond the daemon's address, which the message already names:
    "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?"
    gives "Is the docker daemon running?"."""
    head, found, tail = line.partition(f" at {url}")
    if not found or "docker daemon" not in head.lower():
        return line
    return tail.lstrip(".:").strip()


def _refused_endpoint(host: HostFacts, where: dict[str, Any]) -> Verdict:
    endpoint = host.endpoint
    if endpoint.context is None:
        message = (
            f"{endpoint.source}={endpoint.url!r} is not a daemon address the docker CLI "
            f"accepts: {endpoint.error}"
        )
        fix = (
            f"Set {endpoint.source} to unix:///PATH, tcp://HOST:PORT (HOST:PORT alone means "
            "tcp), ssh://[USER@]HOST or fd://, or unset it"
        )
        url = DOCKER_ENV_URL
    else:
        message = (
            f'the docker context "{endpoint.context}" ({endpoint.source}) cannot be used: '
            f"{endpoint.error}"
        )
        fix = (
            "Select an existing context (`docker context ls`, then `docker context use NAME`), "
            "or correct its host (`docker context update NAME --docker host=...`)"
        )
        url = DOCKER_CONTEXT_URL
    return failed(
        "daemon_unreachable", message, fix=fix, url=url, endpoint_error=endpoint.error, **where
    )


def nvidia_toolkit(host: HostFacts) -> Verdict:
    if host.endpoint.remote:
        return skipped(
            f"remote daemon ({host.endpoint.url}): the toolkit on that host is "
            "proved by the GPU probe"
        )
    found = {k: v for k, v in host.toolkit.items() if k != "nvidia-container-runtime-hook"}
    if not found:
        return failed(
            "toolkit_missing",
            "NVIDIA Container Toolkit not found",
            fix="Install the NVIDIA Container Toolkit",
            url="https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/"
            "install-guide.html",
        )
    return passed(tools=dict(found))


@_noting_wait("host-driver")
def host_driver(host: HostFacts) -> Verdict:
    if host.endpoint.remote:
        return skipped(f"remote daemon ({host.endpoint.url}): this machine's driver is irrelevant")
    smi = host.smi
    if smi is None or smi.missing:
        return warned(
            "host_driver_unavailable",
            "nvidia-smi not found on this host: the host driver version is unknown",
        )
    if smi.timed_out:
        return warned(
            "host_driver_unavailable",
            f"`{smi.command}` did not answer within {smi.duration_s:.0f}s",
        )
    info = host.smi_info
    if not smi.ok or info is None or not info.driver_version:
        d = diagnose(smi.output, smi.returncode)
        cause = d.cause if d.cause not in ("ok", "unknown") else "host_driver_unavailable"
        message = (
            d.message
            if d.cause == cause
            else (f"nvidia-smi failed: {first_line(smi.output) or f'exit status {smi.returncode}'}")
        )
        fix, url = (d.fix, d.url) if d.cause == cause else remedy(cause)
        return warned(cause, message, fix=fix, url=url, **d.details)
    return passed(**host.driver_details())


# --- tier 2 ------------------------------------------------------------------------------


def judged_by_probe(host: HostFacts) -> bool:
    """Whether cuda-compat takes the probe of the image itself as its evidence: a remote
    daemon, whose host's driver this machine cannot ask (the NVIDIA hook there enforces the
    image's NVIDIA_REQUIRE_* when the probe starts)."""
    return host.endpoint.remote and not (host.smi_info and host.smi_info.driver_version)


def cuda_compat(
    image: ImageFacts,
    host: HostFacts,
    probed_driver: Callable[[], str | None],
    compute_capability: Callable[[], str | None] = lambda: None,
    *,
    probe: Callable[[], ProbeFacts | None] = lambda: None,
    driver_without_requirements: Callable[[], str | None] = lambda: None,
) -> Verdict:
    """Judge the image's requirements: with a known host driver, before any container of it
    starts; on a remote daemon, by the probe of the image itself (`judged_by_probe`).

    ``probed_driver`` is asked only when a local host's driver is unknown, ``compute_capability``
    only when the image has an `arch` condition; ``probe`` only on a remote daemon, and
    ``driver_without_requirements`` only when the NVIDIA hook there refused that probe.
    """
    from .requirements import evaluate_requirements

    if image.info is None:
        return not_run(f"image {image.image} is not available (see gpu-in-container)")
    if judged_by_probe(host):
        return _compat_by_probe(image, host, probe(), driver_without_requirements)
    driver = host.smi_info.driver_version if host.smi_info else None
    cuda = host.smi_info.cuda_version if host.smi_info else None
    source = "host nvidia-smi"
    if not driver:
        driver, cuda, source = probed_driver(), None, SEEN_INSIDE
    brand = host.brand()
    arch = compute_capability() if _has_arch_condition(image.info.env) else None
    if not driver:
        return warned(
            "host_driver_unavailable",
            f"could not judge the CUDA requirement of {image.image}: the driver version is "
            "unknown (no host nvidia-smi and no probe saw it)",
            image=image.image,
        )
    v = evaluate_requirements(
        image.info.env, driver_version=driver, cuda_version=cuda, brand=brand, arch=arch
    )
    details: dict[str, Any] = {
        "image": image.image,
        "driver_version": driver,
        "cuda_version": v.cuda_version,
        "required_cuda": v.required_cuda,
        "min_driver": v.min_driver,
        "driver_source": source,
    }
    if v.satisfied:
        note = "; ".join(v.notes) if not v.constrained else ""
        return passed(note, **details)
    unsatisfied = ", ".join(v.failed) or "a requirement"
    required = v.required_cuda or "?"
    if any(cond.startswith("cuda") for cond in v.failed) or not v.failed:
        message = (
            f"{image.image} requires CUDA {required} ({unsatisfied}); the host driver "
            f"{driver} supports CUDA {v.cuda_version or '?'}"
        )
    else:  # a driver, brand or arch condition: name what the host has instead
        message = (
            f"{image.image} requires {unsatisfied}; the host has driver {driver}"
            f" (CUDA {v.cuda_version or '?'}), GPU brand {brand or 'unknown'}, compute "
            f"capability {arch or 'unknown'}"
        )
    if v.min_driver and any(cond.startswith("cuda") for cond in v.failed):
        fix = (
            f"Upgrade the NVIDIA driver to {v.min_driver} or newer (CUDA {required}), "
            f"or use an image built for CUDA {v.cuda_version or 'an older release'} or older"
        )
    elif any(cond.startswith(("arch", "brand")) for cond in v.failed):
        fix = f"Run {image.image} on a GPU that meets {unsatisfied}, or use another image"
    else:
        fix = "Upgrade the NVIDIA driver, or use an image built for an older CUDA"
    if v.errors:
        details["errors"] = list(v.errors)
    return failed(
        "cuda_requirement_unsatisfied",
        message,
        fix=fix,
        url="https://docs.nvidia.com/deploy/cuda-compatibility/",
        **details,
    )


SEEN_INSIDE = "driver seen inside a container"


def _compat_by_probe(
    image: ImageFacts,
    host: HostFacts,
    probe: ProbeFacts | None,
    driver_without_requirements: Callable[[], str | None],
) -> Verdict:
    """cuda-compat on a remote daemon: the NVIDIA hook there checks the image's requirement
    when a container of it starts, so the image's own probe decides. A probe that started and
    listed GPUs proves the requirement; one that the hook refused for it disproves it (the
    driver is then read by a container of the image with the check turned off)."""
    assert image.info is not None
    where = host.endpoint.url
    check = f"gpu-in-container[{image.image}]"
    if probe is None:
        return warned(
            "host_driver_unavailable",
            f"could not judge the CUDA requirement of {image.image}: no GPU probe of it ran on "
            f"the remote daemon ({where}), whose NVIDIA hook checks it",
            fix=f"Let {check} run: its probe is what checks the requirement on that daemon",
            image=image.image,
        )
    result = probe.result
    driver = probe.gpus[0].get("driver_version", "") if probe.gpus else ""
    if result.ok and probe.gpus:
        return passed(
            f"the NVIDIA hook of the remote daemon ({where}) started the image's GPU probe",
            **_probe_details(image, driver or None),
        )
    d = None if result.timed_out or result.ok else diagnose(result.output, result.returncode)
    if d is None or d.cause != "cuda_requirement_unsatisfied":
        return not_run(
            f"the GPU probe of {image.image} on the remote daemon ({where}) did not show "
            f"whether its requirement holds: see {check}"
        )
    driver = driver_without_requirements() or ""
    details = _probe_details(image, driver or None)
    condition = _unsatisfied_condition(result.output)
    required = details["required_cuda"] or d.details.get("required_cuda")
    cuda = details["cuda_version"]
    has = (
        f"the remote daemon's driver {driver} supports CUDA {cuda or '?'}"
        if driver
        else "the remote daemon's driver version could not be read"
    )
    if required and (not condition or condition.startswith("cuda")):
        message = f"{image.image} requires CUDA {required}"
        message += f" ({condition}); {has}" if condition else f"; {has}"
    else:
        message = f"{image.image} requires {condition or 'what its NVIDIA_REQUIRE_* say'}; {has}"
    message += f" (the NVIDIA hook of {where} refused its GPU probe)"
    minimum = details["min_driver"] or d.details.get("min_driver")
    if required and minimum and (not condition or condition.startswith("cuda")):
        fix = (
            f"Upgrade the NVIDIA driver of the daemon's host to {minimum} or newer (CUDA "
            f"{required}), or use an image built for CUDA {cuda or 'an older release'} or older"
        )
    else:
        fix = (
            "Run the image on a daemon whose host meets its NVIDIA_REQUIRE_*, or use another image"
        )
    return failed(
        "cuda_requirement_unsatisfied",
        message,
        fix=fix,
        url="https://docs.nvidia.com/deploy/cuda-compatibility/",
        **details,
        unsatisfied=condition,
        endpoint=where,
    )


def _probe_details(image: ImageFacts, driver: str | None) -> dict[str, Any]:
    """The versions a judgement by the probe names: the driver a container saw, the CUDA it
    supports (NVIDIA's table), the image's required CUDA and the driver that needs."""
    from .requirements import evaluate_requirements

    assert image.info is not None
    v = evaluate_requirements(image.info.env, driver_version=driver)
    return {
        "image": image.image,
        "driver_version": driver or "",
        "cuda_version": v.cuda_version if driver else None,
        "required_cuda": v.required_cuda,
        "min_driver": v.min_driver,
        "driver_source": SEEN_INSIDE,
    }


def _unsatisfied_condition(output: str) -> str:
    """The condition that nvidia-container-cli names in "unsatisfied condition: cuda>=12.8,
    please update your driver ..." ("" when the output names none)."""
    _, found, rest = output.partition("unsatisfied condition:")
    words = rest.split(",", 1)[0].split()
    return words[0].strip("`'\"") if found and words else ""


def _has_arch_condition(env: dict[str, str]) -> bool:
    return any(k.startswith("NVIDIA_REQUIRE_") and "arch" in v for k, v in env.items())


def gpu_in_container(
    image: ImageFacts,
    probe: ProbeFacts | None,
    host: HostFacts,
    compat_failed: bool,
    timeout_s: float,
    request: str = "all",
) -> Verdict:
    """The probe made the experiment's GPU request ``request`` and saw exactly the GPUs that
    request names: every host GPU for ``all``, the named ones for ``device=...`` (by UUID when
    the host's are known, else by count)."""
    from .gpu_request import devices_of, shown

    asked = shown(request)
    which = "" if request == "all" else f" ({asked})"  # (all GPUs: what a probe asks unless told)
    if image.info is None:
        pull = image.pull or image.inspect
        if pull.too_large:
            return failed(
                "unknown",
                f"cannot read {image.image}: {first_line(pull.stderr)}",
                fix="Use an image whose metadata (labels, environment) is smaller",
                image=image.image,
            )
        if pull.timed_out:
            return failed(
                "probe_timeout",
                f"pulling {image.image} did not finish within {pull.duration_s:.0f}s",
                image=image.image,
            )
        d = diagnose(pull.output, pull.returncode or 1)
        if d.cause in ("ok", "unknown"):
            d = _as_diagnosis("image_not_found", pull.output)
        return _from_diagnosis(
            d,
            f"cannot pull {image.image}: {first_line(pull.stderr) or first_line(pull.output)}",
            image=image.image,
        )
    if compat_failed:
        return not_run(f"cuda-compat[{image.image}] failed: the probe would repeat it")
    host_gpus = _host_gpus(host)
    devices = devices_of(request)
    if devices is not None and host_gpus is not None:
        lacking = sorted(set(devices) - set(host_gpus))
        if lacking:  # no container could get them: none is started for it
            return _gpus_not_on_host(lacking, host_gpus, image=image.image, gpu_request=asked)
    if probe is None:
        return not_run("no probe was started")
    result = probe.result
    where = {"image": image.image, "gpu_request": asked}
    if result.timed_out:
        return failed(
            "probe_timeout",
            f"GPU probe of {image.image} did not finish within {timeout_s:g}s "
            f"(container {probe.name} is being removed)",
            container=probe.name,
            command=result.command,
            **where,
        )
    if not result.ok:
        d = diagnose(result.output, result.returncode)
        if d.cause == "ok":
            d = diagnose(result.output, result.returncode or 1)
        return _from_diagnosis(
            d,
            f"GPU probe of {image.image}{which} failed: {d.message}",
            exit_status=result.returncode,
            **where,
        )
    gpus: list[dict[str, Any]] = [
        {**g, "index": index} if (index := ascii_int(g.get("index"))) is not None else dict(g)
        for g in probe.gpus
    ]
    details: dict[str, Any] = {**where, "gpus": gpus, "cached": probe.cached}
    if gpus:
        details["driver_version"] = gpus[0].get("driver_version", "")
    if not gpus:
        return failed("no_devices", f"no GPU visible inside {image.image}{which}", **details)
    wrong = _not_as_asked(gpus, host_gpus, devices)
    if wrong:
        return failed("gpu_count_mismatch", f"{wrong} inside {image.image}{which}", **details)
    names = ", ".join(sorted({g.get("name", "?") for g in gpus}))
    return passed(f"{len(gpus)} GPU(s): {names}", **details)


def _host_gpus(host: HostFacts) -> dict[int, str] | None:
    """The host's GPUs (index -> UUID, "" when not printed); None when unknown (a remote
    daemon, no host nvidia-smi)."""
    if host.smi_info is None or not host.smi_info.gpus:
        return None
    return {gpu.index: gpu.uuid for gpu in host.smi_info.gpus}


def _gpus_not_on_host(lacking: list[int], host_gpus: dict[int, str], **details: Any) -> Verdict:
    have = ", ".join(str(i) for i in sorted(host_gpus)) or "none"
    which = ", ".join(str(i) for i in lacking)
    return failed(
        "no_devices",
        f"GPU {which} is not on this host (it has GPU {have})",
        fix="Name GPUs that `nvidia-smi -L` lists in the study's `gpus:` (or --gpus)",
        url="https://docs.nvidia.com/deploy/nvidia-smi/index.html",
        gpus_not_on_host=lacking,
        host_gpus=sorted(host_gpus),
        **details,
    )


def _not_as_asked(
    seen: list[dict[str, Any]], host_gpus: dict[int, str] | None, devices: tuple[int, ...] | None
) -> str:
    """What is wrong with the GPUs a probe saw (empty when they are the ones asked for)."""
    if host_gpus is None:  # a remote daemon: only a device list says how many to expect
        if devices is not None and len(seen) != len(devices):
            return f"{len(seen)} GPU(s) visible where {len(devices)} were asked for"
        return ""
    wanted = sorted(host_gpus) if devices is None else list(devices)
    if len(seen) != len(wanted):
        if devices is None:
            return f"{len(seen)} of the host's {len(wanted)} GPU(s) visible"
        return f"{len(seen)} GPU(s) visible where {len(wanted)} were asked for"
    expected = {host_gpus[i] for i in wanted if host_gpus.get(i)}
    uuids = {str(g.get("uuid") or "") for g in seen}
    if len(expected) == len(wanted) and all(uuids) and uuids != expected:
        names = ", ".join(sorted(uuids - expected))
        return (
            f"other GPUs than asked for visible ({names} instead of GPU "
            + ", ".join(str(i) for i in wanted)
            + ")"
        )
    return ""
