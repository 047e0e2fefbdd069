"""Facts: what the checks of one pre-flight session ask of the host, gathered once, concurrently.

The only work that may start before a study is validated is the read-only host queries
(`start_host`): `docker version`, `docker info`, `nvidia-smi -q`, the toolkit's `--version`.
Image inspects, pulls and probes start only once the settings are known (`adopt`), and only
when tier 1 allows them: either because the checks ask, or through `start_image_work`, which
starts exactly what the built-in checks would start, a little sooner.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from .domain.records import CommandResult, HostFacts, ImageFacts, ImageInfo, ProbeFacts
from .host import docker, nvidia
from .host.proc import kill_all, result_of
from .settings import HOST_COMMAND_TIMEOUT_S, PreflightSettings

if TYPE_CHECKING:
    from .progress import Progress

TIER1_IDS = ("docker-cli", "docker-daemon", "nvidia-toolkit")


class Facts:
    """Lazily started, memoised fact gathering shared by every check of a session."""

    def __init__(
        self, settings: PreflightSettings | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings or PreflightSettings()
        self.env = dict(os.environ if env is None else env)
        # Threads that wait on commands: enough that no probe ever queues behind another
        # (each image may hold one for its facts and one for its probe at once).
        self._pool = ThreadPoolExecutor(max_workers=48, thread_name_prefix="llem")
        self._lock = threading.Lock()
        self._docker: Future[HostFacts] | None = None
        self._host: Future[HostFacts] | None = None
        self._identity: Future[dict[str, str]] | None = None
        self._images: dict[str, Future[ImageFacts]] = {}
        self._probes: dict[str, Future[ProbeFacts]] = {}
        self._probes_started = False
        self._image_work = False
        self._caps: Future[list[str]] | None = None
        self._measured: Future[HostFacts] | None = None
        self._live: set[str] = set()  # probe containers that may still exist
        self._settled: Future[HostFacts] | None = None  # the host after `--wait`
        self._identity_after_wait: Future[dict[str, str]] | None = None
        self._closing = threading.Event()
        self.progress: Progress | None = None  # where long work shows signs of life
        self.cache_lookup: Callable[[HostFacts, ImageFacts], ProbeFacts | None] | None = None
        self.cache_store: Callable[[HostFacts, ImageFacts, ProbeFacts], None] | None = None

    # --- before the settings are known: read-only host queries ---------------------------

    def start_host(self) -> None:
        """Start the read-only host queries now (once); nothing here changes the host.

        What decides the checks goes first: the daemon's version (all that tier 1's gate
        needs) and the host driver, side by side; what only keys the probe cache (the
        daemon's id, the toolkit's version) follows once the daemon has answered.
        """
        with self._lock:
            if self._host is not None:
                return
            self._docker = self._pool.submit(self._gather_docker)
            self._host = self._pool.submit(self._gather_host, self._docker)
            self._identity = self._pool.submit(self._gather_identity, self._docker)

    def adopt(self, settings: PreflightSettings) -> Facts:
        """These facts for ``settings`` (themselves, unless image work began for others)."""
        with self._lock:
            fresh = self._image_work or self._images or self._probes
        if fresh and settings != self.settings:
            self.close()
            facts = Facts(settings, self.env)
            facts.progress = self.progress
            facts.start_host()
            return facts
        self.settings = settings
        if settings.cache_s > 0 and not settings.no_cache:
            from .host.probe_cache import ProbeCache

            cache = ProbeCache(settings.cache_s, identify=self.identity)
            self.cache_lookup, self.cache_store = cache.lookup, cache.store
        else:
            self.cache_lookup = self.cache_store = None
        return self

    def host(self) -> HostFacts:
        """The host's facts; with `--wait`, once tier 1 has nothing left to wait for."""
        self.start_host()
        assert self._host is not None
        if self.settings.wait_s <= 0:
            return result_of(self._host)
        with self._lock:
            if self._settled is None:
                self._settled = self._pool.submit(self._settle, self._host)
            future = self._settled
        return result_of(future)

    def _settle(self, first: Future[HostFacts]) -> HostFacts:
        from .waiting import settle

        progress = self.progress
        return settle(
            result_of(first),
            self._gather_again,
            self.settings.wait_s,
            progress.say if progress else lambda line: None,
            skip=self.settings.skip,
            stop=self._closing,
        )

    def docker_facts(self) -> HostFacts:
        """The host facts that tier 1's gate needs, without waiting for the host driver
        (``smi`` is None in them)."""
        self.start_host()
        assert self._docker is not None
        return result_of(self._docker)

    def identity(self) -> dict[str, str]:
        """Daemon id, toolkit version and the hash of the toolkit's config file."""
        self.start_host()
        assert self._identity is not None
        if self.settings.wait_s > 0 and self.host().waited_s > 0:  # the daemon came up since
            with self._lock:
                if self._identity_after_wait is None:
                    assert self._settled is not None
                    self._identity_after_wait = self._pool.submit(
                        self._gather_identity, self._settled
                    )
                future = self._identity_after_wait
            return result_of(future)
        return result_of(self._identity)

    def _gather_docker(self, timeout: float = HOST_COMMAND_TIMEOUT_S) -> HostFacts:
        endpoint = docker.daemon_endpoint(self.env)
        docker_path = docker.docker_path(self.env)
        version = docker.docker_version(timeout, self.env) if docker_path else None
        return HostFacts(
            endpoint=endpoint,
            docker_path=docker_path,
            version=version,
            toolkit=nvidia.toolkit_tools(self.env),
            smi=None,
            smi_info=None,
        )

    def _gather_host(
        self, docker_facts: Future[HostFacts], timeout: float = HOST_COMMAND_TIMEOUT_S
    ) -> HostFacts:
        smi: CommandResult | None = None
        if not docker.daemon_endpoint(self.env).remote:
            smi = nvidia.nvidia_smi_query(timeout, self.env)
        smi_info = None
        if smi is not None and smi.ok:
            from .domain.nvidia_smi import parse_q

            smi_info = parse_q(smi.stdout)
        return dataclasses.replace(result_of(docker_facts), smi=smi, smi_info=smi_info)

    def _gather_again(self, timeout: float) -> HostFacts:
        """Every host query once more, within ``timeout`` (an attempt of `--wait`)."""
        return self._gather_host(self._pool.submit(self._gather_docker, timeout), timeout)

    def measured_host(self) -> HostFacts:
        """`host()`, with this machine's `nvidia-smi -q` asked for if it was not (a remote
        daemon) and the settings say only local experiments run; asked once."""
        host = self.host()
        if host.smi is not None or not self.settings.measurement_only:
            return host
        with self._lock:
            if self._measured is None:
                self._measured = self._pool.submit(self._with_local_smi, host)
            future = self._measured
        return result_of(future)

    def _with_local_smi(self, host: HostFacts) -> HostFacts:
        import dataclasses

        from .domain.nvidia_smi import parse_q

        smi = nvidia.nvidia_smi_query(HOST_COMMAND_TIMEOUT_S, self.env)
        info = parse_q(smi.stdout) if smi.ok else None
        return dataclasses.replace(host, smi=smi, smi_info=info)

    def _gather_identity(self, host: Future[HostFacts]) -> dict[str, str]:
        facts = result_of(host)
        daemon_id = ""
        if facts.docker_path and facts.version is not None and facts.version.ok:
            daemon_id = docker.daemon_id(HOST_COMMAND_TIMEOUT_S, self.env)
        return {
            "daemon_id": daemon_id,
            "toolkit_version": nvidia.toolkit_version(
                facts.toolkit, HOST_COMMAND_TIMEOUT_S, self.env
            ),
            "toolkit_config": nvidia.toolkit_config_digest(),
        }

    def compute_capability(self) -> str | None:
        """Compute capability of the first GPU (asked only for an `arch` condition)."""
        with self._lock:
            if self._caps is None:
                self._caps = self._pool.submit(
                    nvidia.compute_capabilities, HOST_COMMAND_TIMEOUT_S, self.env
                )
            future = self._caps
        caps = result_of(future)
        return caps[0] if caps else None

    # --- once the settings are known --------------------------------------------------------

    def start_image_work(self) -> None:
        """Start what the built-in checks will start, as soon as the facts show they will.

        Only for a session of the built-in checks alone (`llem`), once the settings are
        validated: when no tier-1 check would fail, the images are gathered (pulled if
        absent, as the checks would), and each image whose cuda-compat passes gets its probe.
        The checks then use this very work: the findings are the ones a late start gives.
        """
        self.start_host()
        with self._lock:
            if self._image_work:
                return
            self._image_work = True
        self._pool.submit(self._image_work_when_tier1_passes)

    def _image_work_when_tier1_passes(self) -> None:
        from .domain import verdicts

        skip = self.settings.skip
        if "all" in skip or self.settings.measurement_only:
            return
        # Tier 1's verdicts need no more than the daemon's answer (after `--wait`, the host's).
        gate = self.host() if self.settings.wait_s > 0 else self.docker_facts()
        judges = (verdicts.docker_cli, verdicts.docker_daemon, verdicts.nvidia_toolkit)
        for check_id, judge in zip(TIER1_IDS, judges, strict=True):
            if check_id not in skip and judge(gate).outcome == "failed":
                return
        names = self._wanted_images()
        self._start_images()  # while the host driver is still being asked
        host = self.host()
        for name in names:
            image = self.image(name)
            if image.info is None or _skipped(skip, "gpu-in-container", name):
                continue
            verdict = verdicts.cuda_compat(image, host, lambda: None, self.compute_capability)
            if verdict.outcome == "passed":  # failed, or not judgeable yet: the checks decide
                with self._lock:
                    self._start_probe(name)

    def _wanted_images(self) -> list[str]:
        """The images some check will ask about (not every check of theirs is skipped)."""
        skip = self.settings.skip
        return [
            name
            for name in self.settings.images_to_check
            if not all(_skipped(skip, base, name) for base in ("cuda-compat", "gpu-in-container"))
        ]

    def _start_images(self) -> None:
        """Start gathering every wanted image's facts at once (pulling the absent ones)."""
        with self._lock:
            for name in self._wanted_images():
                if name not in self._images:
                    self._images[name] = self._pool.submit(self._gather_image, name)

    def image(self, image: str) -> ImageFacts:
        """The image's facts; the first call starts every image's at once (pulling if absent)."""
        self._start_images()
        with self._lock:
            if image not in self._images:
                self._images[image] = self._pool.submit(self._gather_image, image)
            future = self._images[image]
        return result_of(future)

    def _gather_image(self, image: str) -> ImageFacts:
        info, inspect = docker.image_inspect(image, HOST_COMMAND_TIMEOUT_S, self.env)
        if info is not None:
            return ImageFacts(image, info, inspect)
        limit = self.settings.pull_timeout_s
        task = self.progress.pull(self._check_of(image), image, limit) if self.progress else None
        pull = docker.pull(image, limit, self.env, task.feed if task else None)
        if task is not None:
            task.finish(pull.ok, pull.timed_out)
        if pull.ok:
            info, inspect = docker.image_inspect(image, HOST_COMMAND_TIMEOUT_S, self.env)
        return ImageFacts(image, info, inspect, pull)

    def _check_of(self, image: str) -> str:
        """The first check that needs ``image`` (what its pull is for)."""
        skip = self.settings.skip
        return next(
            (
                f"{b}[{image}]"
                for b in ("cuda-compat", "gpu-in-container")
                if not _skipped(skip, b, image)
            ),
            f"cuda-compat[{image}]",
        )

    def probe(self, image: str, eligible: Callable[[str], bool]) -> ProbeFacts | None:
        """The probe of ``image``; the first call starts every eligible image's probe at once."""
        if not self._probes_started:
            # eligible() may gather image facts itself: decide before taking the lock.
            chosen = [name for name in self.settings.images_to_check if eligible(name)]
            with self._lock:
                if not self._probes_started:
                    self._probes_started = True
                    for name in chosen:
                        self._start_probe(name)
        with self._lock:
            future = self._probes.get(image)
        return result_of(future) if future else None

    def _start_probe(self, image: str) -> Future[ProbeFacts]:
        """Start (once) the probe of ``image``; call with the lock held."""
        if image not in self._probes:
            self._probes[image] = self._pool.submit(self._run_probe, image)
        return self._probes[image]

    def probe_driver(self, judged: str) -> str | None:
        """The driver version a probe saw (for a daemon whose host driver is unknown).

        Images without a CUDA requirement are probed first: their probe cannot fail on one.
        ``judged`` is probed here only when it has no requirement itself: otherwise that
        requirement is what is being decided, and no container of it may start before.
        """
        present = [self.image(name) for name in self.settings.images_to_check]
        candidates = sorted(
            (
                f
                for f in present
                if f.info is not None and (f.image != judged or not _demands_cuda(f.info))
            ),
            key=lambda f: _demands_cuda(f.info) if f.info else False,
        )
        for facts in candidates:
            with self._lock:
                future = self._start_probe(facts.image)
            probe = result_of(future)
            if probe.result.ok and probe.gpus and probe.gpus[0].get("driver_version"):
                return probe.gpus[0]["driver_version"]
        return None

    def _run_probe(self, image: str) -> ProbeFacts:
        from .domain.nvidia_smi import parse_query_csv

        facts = self.image(image)
        host = self.host()
        if self.cache_lookup is not None:
            cached = self.cache_lookup(host, facts)
            if cached is not None:
                return cached
        import secrets

        name = f"llem-probe-{os.getpid()}-{secrets.token_hex(4)}"
        with self._lock:
            self._live.add(name)
        limit = self.settings.timeout_s
        check = f"gpu-in-container[{image}]"
        task = self.progress.probe(check, limit) if self.progress else None
        result = docker.probe(image, name, limit, self.env)
        if task is not None:
            task.end()
        if result.timed_out:
            # The engine may still be inside the NVIDIA hook: removal must not be waited for.
            docker.remove_container(name, self.env)
        with self._lock:
            self._live.discard(name)
        gpus = parse_query_csv(result.stdout, docker.PROBE_FIELDS) if result.ok else []
        probe = ProbeFacts(image, name, result, gpus)
        if result.ok and gpus and self.cache_store is not None:
            self.cache_store(host, facts, probe)
        return probe

    # --- end --------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every probe container still in flight and stop waiting for the rest."""
        self._closing.set()
        if self.progress is not None:
            self.progress.close()
        with self._lock:
            live, self._live = set(self._live), set()
        for name in sorted(live):
            docker.remove_container(name, self.env)
        # Work nobody waits for any more (a pull after a tier-1 failure, say) must not keep
        # the interpreter alive at exit: kill its commands.
        kill_all()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _skipped(skip: frozenset[str], base: str, image: str) -> bool:
    return bool({"all", base, f"{base}[{image}]"} & skip)


def _demands_cuda(info: ImageInfo) -> bool:
    env = info.env
    if env.get("NVIDIA_DISABLE_REQUIRE", "").lower() in ("1", "true", "t"):
        return False
    return any(key.startswith("NVIDIA_REQUIRE_") for key in env) or "CUDA_VERSION" in env
