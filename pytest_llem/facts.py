"""Facts: what the checks of one pre-flight session ask of the host, gathered once, concurrently.

The only work that may start before a study is validated is the read-only host queries
(`start_host`): `docker version`, `docker info`, `nvidia-smi -q`, the toolkit's `--version`.
Image inspects, pulls and probes start only once the settings are known (`adopt`), and only
when tier 1 allows them: either because the checks ask, or through `start_image_work`, which
starts exactly what the built-in checks would start, a little sooner.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .domain.gpu_request import ALL as ALL_GPUS
from .host import docker, nvidia
from .host.engines import EngineHost, engine_host
from .host.proc import HOST_COMMAND_TIMEOUT_S, Started, kill_all, result_of

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from .domain.gpu_access import GpuAccess
    from .domain.records import CommandResult, HostFacts, ImageFacts, ImageInfo, ProbeFacts
    from .host.probe_cache import ProbeCache
    from .progress import Progress
    from .settings import PreflightSettings

# (Nothing heavier than the host adapters loads before the first queries have started: the
# records, the settings and the thread pool follow while `docker version` runs.)


class Facts:
    """Lazily started, memoised fact gathering shared by every check of a session."""

    def __init__(
        self, settings: PreflightSettings | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self._settings = settings
        self.env = dict(os.environ if env is None else env)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self._lock = threading.Lock()
        self._docker: Future[HostFacts] | None = None
        self._host: Future[HostFacts] | None = None
        self._identity: Future[dict[str, str]] | None = None
        self._engine: Future[docker.EngineConfig | None] | None = None  # `docker info`
        self._access: Future[GpuAccess] | None = None
        self._images: dict[str, Future[ImageFacts]] = {}
        self._probes: dict[tuple[str, str], Future[ProbeFacts]] = {}  # by (image, request)
        self._unchecked: dict[str, Future[str | None]] = {}  # driver_without_requirements
        self._probes_started = False
        self._image_work = False
        self._caps: Future[list[str]] | None = None
        self._measured: Future[HostFacts] | None = None
        self._live: set[str] = set()  # probe containers that may still exist
        self._settled: Future[HostFacts] | None = None  # the host after `--wait`
        self._identity_after_wait: Future[dict[str, str]] | None = None
        self._closing = threading.Event()
        self._probe_begun = threading.Event()  # a probe container started, or none will
        self._cache: ProbeCache | None = None
        self.progress: Progress | None = None  # where long work shows signs of life
        # (host, image, GPU request) -> a remembered probe; (host, image, request, probe) -> None
        self.cache_lookup: Callable[[HostFacts, ImageFacts, str], ProbeFacts | None] | None = None
        self.cache_store: Callable[[HostFacts, ImageFacts, str, ProbeFacts], None] | None = None

    @property
    def settings(self) -> PreflightSettings:
        if self._settings is None:
            from .settings import PreflightSettings

            self._settings = PreflightSettings()
        return self._settings

    @settings.setter
    def settings(self, settings: PreflightSettings) -> None:
        self._settings = settings

    @property
    def _pool(self) -> ThreadPoolExecutor:
        """Threads that wait on commands: enough that no probe ever queues behind another
        (each image may hold one for its facts and one for its probe at once)."""
        with self._executor_lock:  # (taken alone: callers may hold self._lock)
            if self._executor is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(max_workers=48, thread_name_prefix="llem")
            return self._executor

    # --- before the settings are known: read-only host queries ---------------------------

    def start_host(self) -> None:
        """Start the read-only host queries now (once); nothing here changes the host.

        What decides the checks goes first: the daemon's version (all that tier 1's gate
        needs) and the host driver, started side by side in this thread; what only keys the
        probe cache (the daemon's id, the toolkit's version) follows once the daemon has
        answered.
        """
        with self._lock:
            if self._host is not None:
                return
            engine = self.engine
            version = engine.start_version(self.env)
            smi = nvidia.start_smi_query(self.env) if engine.runs_here(self.env) else None
            self._docker = self._pool.submit(self._gather_docker, HOST_COMMAND_TIMEOUT_S, version)
            self._host = self._pool.submit(
                self._gather_host, self._docker, HOST_COMMAND_TIMEOUT_S, smi
            )
            self._identity = self._pool.submit(self._gather_identity, self._docker)

    def adopt(self, settings: PreflightSettings) -> Facts:
        """These facts for ``settings`` (themselves, unless image work began for others, or
        the host queries began for another container engine)."""
        with self._lock:
            fresh = self._image_work or self._images or self._probes
            engine_changed = self._host is not None and settings.engine != self.settings.engine
        if (fresh and settings != self.settings) or engine_changed:
            self.close()
            facts = Facts(settings, self.env)
            facts.progress = self.progress
            facts.start_host()
            return facts
        self.settings = settings
        if settings.cache_s > 0 and not settings.no_cache:
            from .host.probe_cache import ProbeCache

            cache = ProbeCache(settings.cache_s, identify=self.identity)
            self._cache = cache
            self.cache_lookup, self.cache_store = cache.lookup, cache.store
        else:
            self._cache = None
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
        """The engine's and the toolkit's side of a remembered probe's key
        (`_gather_identity`)."""
        self.start_host()
        assert self._identity is not None
        if self.settings.wait_s > 0 and self.host().waited_s > 0:  # the daemon came up since
            with self._lock:
                if self._identity_after_wait is None:
                    assert self._settled is not None
                    self._identity_after_wait = self._pool.submit(
                        self._gather_identity, self._settled, True
                    )
                future = self._identity_after_wait
            return result_of(future)
        return result_of(self._identity)

    def _gather_docker(
        self, timeout: float = HOST_COMMAND_TIMEOUT_S, version: Started | None = None
    ) -> HostFacts:
        """The engine's facts; ``version`` is its `<cli> version` started already, if any."""
        return self.engine.gather(timeout, version, self.env)

    @property
    def engine(self) -> EngineHost:
        """The adapter of the session's container engine (`host.engines`)."""
        return engine_host(self.settings.engine)

    def _gather_host(
        self,
        docker_facts: Future[HostFacts],
        timeout: float = HOST_COMMAND_TIMEOUT_S,
        started: Started | None = None,
    ) -> HostFacts:
        """The host's facts; ``started`` is an `nvidia-smi -q` started already, if any."""
        smi: CommandResult | None = None
        if started is not None:
            smi = started.finish(timeout)
        elif self.engine.runs_here(self.env):
            smi = nvidia.nvidia_smi_query(timeout, self.env)
        return self._with_smi(result_of(docker_facts), smi)

    def _gather_again(self, timeout: float) -> HostFacts:
        """Every host query once more, within ``timeout`` (an attempt of `--wait`)."""
        return self._gather_host(self._pool.submit(self._gather_docker, timeout), timeout)

    def measured_host(self) -> HostFacts:
        """`host()`, with this machine's `nvidia-smi -q` asked for if it was not (a remote
        daemon) and the settings say only local experiments run; asked once."""
        host = self.host()
        settings = self.settings
        if host.smi is not None or not (settings.measurement_only or settings.local_runs):
            return host
        with self._lock:
            if self._measured is None:
                self._measured = self._pool.submit(self._with_local_smi, host)
            future = self._measured
        return result_of(future)

    def _with_local_smi(self, host: HostFacts) -> HostFacts:
        return self._with_smi(host, nvidia.nvidia_smi_query(HOST_COMMAND_TIMEOUT_S, self.env))

    def _with_smi(self, host: HostFacts, smi: CommandResult | None) -> HostFacts:
        """``host`` with the `nvidia-smi -q` it was judged by, its GPUs in host indices (in a
        Slurm job whose nvidia-smi numbers them from 0: `allocation.job_view`)."""
        import dataclasses

        if smi is None or not smi.ok:
            return dataclasses.replace(host, smi=smi, smi_info=None, job_view=None)
        from .domain.allocation import allocation_of, in_host_indices, job_view
        from .domain.nvidia_smi import parse_q

        info = parse_q(smi.stdout)
        # (from the environment too: the host queries may start before the settings are known)
        allocation = self.settings.allocation or allocation_of(self.env)
        view = job_view(info.gpus, allocation)
        info = dataclasses.replace(info, gpus=list(in_host_indices(info.gpus, view)))
        return dataclasses.replace(host, smi=smi, smi_info=info, job_view=view)

    def _gather_identity(
        self, host: Future[HostFacts], asked_again: bool = False
    ) -> dict[str, str]:
        """What keys a remembered probe on the engine's and the toolkit's side: the engine's
        ID, runtimes, default runtime and CDI setup (one `docker info`; Podman's version and
        its CDI specs), the toolkit's version and config file. ``asked_again``: the engine is
        asked anew (it came up during `--wait`)."""
        facts = result_of(host)

        def config() -> docker.EngineConfig | None:
            if asked_again:
                return docker.engine_config(HOST_COMMAND_TIMEOUT_S, self.env)
            return self.engine_config()

        return {
            **engine_host(facts.engine).identity(facts, self.env, config),
            "toolkit_version": nvidia.toolkit_version(
                facts.toolkit, HOST_COMMAND_TIMEOUT_S, self.env
            ),
            "toolkit_config": nvidia.toolkit_config_digest(),
        }

    def engine_config(self) -> docker.EngineConfig | None:
        """What one `docker info` says of the engine (asked once; None when it cannot tell)."""
        with self._lock:
            if self._engine is None:
                self._engine = self._pool.submit(
                    docker.engine_config, HOST_COMMAND_TIMEOUT_S, self.env
                )
            future = self._engine
        return result_of(future)

    # --- the path GPU requests take ---------------------------------------------------------

    def gpu_access(self) -> GpuAccess:
        """How the session's GPU requests reach the GPUs (`--gpus` or CDI), with the engine's
        CDI specs when they are this machine's; decided once."""
        with self._lock:
            if self._access is None:
                self._access = self._pool.submit(self._gather_access)
            future = self._access
        return result_of(future)

    def _gather_access(self) -> GpuAccess:
        from .host.gpu_path import gpu_access

        settings = self.settings
        host = self.docker_facts()
        if settings.wait_s > 0 and (host.version is None or not host.version.ok):
            host = self.host()  # an engine still coming up: after `--wait`

        def engine_config() -> docker.EngineConfig | None:
            if settings.wait_s > 0 and host.waited_s > 0:  # it came up since: ask anew
                return docker.engine_config(HOST_COMMAND_TIMEOUT_S, self.env)
            return self.engine_config()

        labels = dict.fromkeys(label for _, label in settings.launch_requests)
        return gpu_access(settings.gpu_request, labels, host, engine_config)

    def with_access(self, host: HostFacts) -> HostFacts:
        """``host`` with the path its GPU requests take (`gpu_access`)."""
        import dataclasses

        return dataclasses.replace(host, gpu_access=self.gpu_access())

    def label(self, request: str) -> str:
        """The GPU request ``request`` (``all``, ``device=1``) as the session makes it: through
        the NVIDIA hook, or as CDI devices (`domain.gpu_request`)."""
        from .domain.gpu_request import via

        return via(request, self.gpu_access().path)

    def check_kinds(self, waiting: bool = True) -> frozenset[str]:
        """The kinds whose checks this session runs: the settings' runner kinds, and ``cdi``
        when the engine chose CDI for them (``docker.gpu_request: auto``).

        Without ``waiting`` (collection, on every xdist worker), a `--wait` is not waited for:
        an engine that has not answered yet takes no CDI spec check (its GPU probe still
        proves the path it takes)."""
        from .domain.check_ids import CDI

        settings = self.settings
        kinds = settings.runner_kinds
        if settings.measurement_only or CDI in kinds or settings.skipped_by:
            return kinds
        if not waiting and settings.wait_s > 0:
            early = self.docker_facts()
            if early.version is None or not early.version.ok:
                return kinds
        return kinds | {CDI} if self.gpu_access().path == CDI else kinds

    @property
    def cli(self) -> str:
        """The CLI of the session's container engine: docker or podman."""
        return self.settings.engine

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
        probes = 0
        try:
            probes = self._start_image_work_now()
        finally:
            if not probes:  # no probe will start: nothing to wait for
                self._probe_begun.set()

    def _start_image_work_now(self) -> int:
        """The images gathered, and the probes started, that the checks would start; how
        many probes that is."""
        from .domain import verdicts
        from .domain.check_ids import CDI, gating_ids, is_skipped

        settings = self.settings
        skip = settings.skip
        if "all" in skip or settings.measurement_only or settings.skipped_by:
            return 0
        kinds = self.check_kinds()
        # Tier 1's verdicts need no more than the daemon's answer (after `--wait`, the host's;
        # for a CDI spec, the host driver too).
        wait_for_host = settings.wait_s > 0 or CDI in kinds
        gate = self.with_access(self.host() if wait_for_host else self.docker_facts())
        for check_id in gating_ids(kinds):
            if (
                not is_skipped(skip, check_id)
                and verdicts.judge(check_id)(gate).outcome == "failed"
            ):
                return 0
        names = self._wanted_images()
        self._start_images()  # while the host driver is still being asked
        host = self.host()
        probes = 0
        for name in names:
            image = self.image(name)
            if image.info is None:
                continue
            # A remote daemon's probe is what judges the image's requirement; otherwise only
            # an image that passes is probed now (failed, or not judgeable yet: the checks decide).
            if not (
                verdicts.judged_by_probe(host) or _passes(image, host, self.compute_capability)
            ):
                continue
            for request in self._requests_of(name):
                with self._lock:
                    self._start_probe(name, request)
                probes += 1
        return probes

    def _requests_of(self, image: str) -> list[str]:
        """The GPU requests of ``image`` whose gpu-in-container check is not skipped."""
        from .domain.check_ids import BY_ID, is_skipped, param_ids

        requests, skip = self.settings.launch_requests, self.settings.skip
        ids = param_ids(BY_ID["gpu-in-container"], (), requests)
        return [
            label
            for (name, label), cid in zip(requests, ids, strict=True)
            if name == image and not is_skipped(skip, cid)
        ]

    def _first_request(self, image: str) -> str:
        """The request a probe of ``image`` makes when any one will do (all GPUs if none)."""
        return (self._requests_of(image) or [ALL_GPUS])[0]

    def await_probe_start(self, limit_s: float) -> None:
        """Wait, at most ``limit_s``, until the image work has started its first probe
        container or found it needs none; only when no remembered probe could stand in.

        For `llem` before it imports pytest: on a machine of few cores that import (a
        quarter of a second of CPU) would otherwise delay the probe, the pre-flight's
        longest step, by about as much; once the probe runs, the import costs nothing.
        """
        with self._lock:
            began = self._image_work
        if not began or (self._cache is not None and self._cache.remembers_any()):
            return
        self._probe_begun.wait(limit_s)

    def _wanted_images(self) -> list[str]:
        """The images some check will ask about (not every check of theirs is skipped)."""
        from .domain.check_ids import PER_IMAGE_IDS, is_skipped

        skip = self.settings.skip
        return [
            name
            for name in self.settings.images_to_check
            if not all(is_skipped(skip, f"{base}[{name}]") for base in PER_IMAGE_IDS)
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
        from .domain.records import ImageFacts

        cli = self.cli
        info, inspect = docker.image_inspect(image, HOST_COMMAND_TIMEOUT_S, self.env, cli)
        if info is not None or inspect.too_large:  # present, if unreadable: a pull cannot help
            return ImageFacts(image, info, inspect)
        limit = self.settings.pull_timeout_s
        task = self.progress.pull(self._check_of(image), image, limit) if self.progress else None
        pull = docker.pull(image, limit, self.env, task.feed if task else None, cli)
        if task is not None:
            task.finish(pull.ok, pull.timed_out)
        if pull.ok:
            info, inspect = docker.image_inspect(image, HOST_COMMAND_TIMEOUT_S, self.env, cli)
        return ImageFacts(image, info, inspect, pull)

    def _check_of(self, image: str) -> str:
        """The first check that needs ``image`` (what its pull is for)."""
        from .domain.check_ids import PER_IMAGE_IDS, is_skipped

        ids = [f"{base}[{image}]" for base in PER_IMAGE_IDS]
        return next((cid for cid in ids if not is_skipped(self.settings.skip, cid)), ids[0])

    def probe(self, image: str, request: str, eligible: Callable[[str], bool]) -> ProbeFacts | None:
        """The probe of ``image`` making GPU request ``request``; the first call starts every
        eligible image's probes at once."""
        if not self._probes_started:
            # eligible() may gather image facts itself: decide before taking the lock.
            chosen = [name for name in self.settings.images_to_check if eligible(name)]
            with self._lock:
                if not self._probes_started:
                    self._probes_started = True
                    for name in chosen:
                        for wanted in self._requests_of(name):
                            self._start_probe(name, wanted)
        with self._lock:
            future = self._probes.get((image, request))
        if future is None and eligible(image):  # (a request no check asked for before)
            with self._lock:
                future = self._start_probe(image, request)
        return result_of(future) if future else None

    def _start_probe(self, image: str, request: str) -> Future[ProbeFacts]:
        """Start (once) the probe of ``image`` with GPU request ``request``; call with the
        lock held."""
        key = (image, request)
        if key not in self._probes:
            self._probes[key] = self._pool.submit(self._run_probe, image, request)
        return self._probes[key]

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
                future = self._start_probe(facts.image, self._first_request(facts.image))
            probe = result_of(future)
            if probe.result.ok and probe.gpus and probe.gpus[0].get("driver_version"):
                return probe.gpus[0]["driver_version"]
        return None

    def _run_probe(self, image: str, request: str) -> ProbeFacts:
        try:
            return self._probe_now(image, request)
        finally:  # (a remembered answer, or a failure before the container started)
            self._probe_begun.set()

    def _probe_now(self, image: str, request: str) -> ProbeFacts:
        from .domain.nvidia_smi import parse_query_csv
        from .domain.records import ProbeFacts

        facts = self.image(image)
        host = self.host()
        label = self.label(request)  # the request as made: --gpus, or CDI devices
        if self.cache_lookup is not None:
            cached = self.cache_lookup(host, facts, label)
            if cached is not None:
                return cached
        check = f"gpu-in-container[{image}]"
        name, result = self._probe_container(image, check, label)
        gpus = parse_query_csv(result.stdout, docker.PROBE_FIELDS) if result.ok else []
        probe = ProbeFacts(image, name, result, gpus, request=label)
        if result.ok and gpus and self.cache_store is not None:
            self.cache_store(host, facts, label, probe)
        return probe

    def _probe_container(
        self,
        image: str,
        check: str,
        request: str,
        fields: tuple[str, ...] = docker.PROBE_FIELDS,
        check_requirements: bool = True,
    ) -> tuple[str, CommandResult]:
        """Run a probe container of ``image`` (for ``check``) with the GPU request ``request``
        as made (`label`) within the probe's limit: its name and result; one that runs past
        the limit is removed."""
        import secrets

        name = f"llem-probe-{os.getpid()}-{secrets.token_hex(4)}"
        with self._lock:
            self._live.add(name)
        limit = self.settings.timeout_s
        task = self.progress.probe(check, limit) if self.progress else None
        started = docker.start_probe(
            image, name, request, self.env, fields, check_requirements, self.cli
        )
        self._probe_begun.set()
        result = started.finish(limit)
        if task is not None:
            task.end()
        if result.timed_out:
            # The engine may still be inside the NVIDIA hook: removal must not be waited for.
            docker.remove_container(name, self.env, cli=self.cli)
        with self._lock:
            self._live.discard(name)
        return name, result

    def driver_without_requirements(self, image: str) -> str | None:
        """The driver version that a container of ``image`` sees with the NVIDIA hook's
        requirement check turned off (NVIDIA_DISABLE_REQUIRE=1): the driver of the daemon's
        host, once the hook refused the image's probe for its requirement. Asked once."""
        with self._lock:
            future = self._unchecked.get(image)
            if future is None:
                future = self._pool.submit(self._read_driver_without_requirements, image)
                self._unchecked[image] = future
        return result_of(future)

    def _read_driver_without_requirements(self, image: str) -> str | None:
        from .domain.nvidia_smi import parse_query_csv

        fields = ("driver_version",)
        request = self.label(self._first_request(image))
        _, result = self._probe_container(
            image, f"cuda-compat[{image}]", request, fields, check_requirements=False
        )
        rows = parse_query_csv(result.stdout, fields) if result.ok else []
        return next((row["driver_version"] for row in rows if row.get("driver_version")), None)

    # --- end --------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every probe container still in flight and stop waiting for the rest."""
        self._closing.set()
        if self.progress is not None:
            self.progress.close()
        with self._lock:
            live, self._live = set(self._live), set()
        for name in sorted(live):
            docker.remove_container(name, self.env, cli=self.cli)
        # Work nobody waits for any more (a pull after a tier-1 failure, say) must not keep
        # the interpreter alive at exit: kill its commands.
        kill_all()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _passes(image: ImageFacts, host: HostFacts, capability: Callable[[], str | None]) -> bool:
    from .domain import verdicts

    return verdicts.cuda_compat(image, host, lambda: None, capability).outcome == "passed"


def _demands_cuda(info: ImageInfo) -> bool:
    env = info.env
    if env.get("NVIDIA_DISABLE_REQUIRE", "").lower() in ("1", "true", "t"):
        return False
    return any(key.startswith("NVIDIA_REQUIRE_") for key in env) or "CUDA_VERSION" in env
