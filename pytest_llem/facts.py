"""Gathers host, image and probe facts concurrently, once per session, on first need."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from .domain.records import CommandResult, HostFacts, ImageFacts, ImageInfo, ProbeFacts
from .host import docker, nvidia
from .host.proc import kill_all, result_of
from .settings import Settings

# Facts a command started before it validated its input (see `start_early`), waiting for the
# pre-flight that will use them. Process-wide, like the commands they run.
_EARLY: list[Facts] = []
_EARLY_LOCK = threading.Lock()


def start_early(settings: Settings) -> None:
    """Start gathering (and, where the facts allow, probing) for a pre-flight to come."""
    facts = new_facts(settings)
    facts.start_probes_early()
    with _EARLY_LOCK:
        _EARLY.append(facts)


def take_early(settings: Settings) -> Facts | None:
    """The facts `start_early` began for these settings, if any."""
    with _EARLY_LOCK:
        for facts in _EARLY:
            if facts.settings.same_facts(settings):
                _EARLY.remove(facts)
                return facts
    return None


def close_early() -> None:
    """End what `start_early` began and nobody took (its probe containers are removed)."""
    with _EARLY_LOCK:
        left = list(_EARLY)
        _EARLY.clear()
    for facts in left:
        facts.close()


class PreparedFacts:
    """Facts that `run_docker_preflight` started before pytest loaded, handed to the session."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts


def new_facts(settings: Settings) -> Facts:
    """Facts for ``settings``, with the probe cache wired in when the settings allow it."""
    facts = Facts(settings)
    if settings.cache_s > 0 and not settings.no_cache:
        from .host.probe_cache import ProbeCache

        cache = ProbeCache(settings.cache_s)
        facts.warmup = cache.identity
        facts.cache_lookup = cache.lookup
        facts.cache_store = cache.store
    return facts


class Facts:
    """Lazily started, memoised fact gathering shared by every check of a session."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="llem")
        self._lock = threading.Lock()
        self._host: Future[HostFacts] | None = None
        self._inspects: dict[str, Future[tuple[ImageInfo | None, CommandResult]]] = {}
        self._images: dict[str, Future[ImageFacts]] = {}
        self._probes: dict[str, Future[ProbeFacts]] = {}
        self._probes_started = False
        self._early = False
        self._caps: Future[list[str]] | None = None
        self._live: set[str] = set()  # probe containers that may still exist
        self.warmup: Callable[[], object] | None = None  # e.g. the cache's identity
        self.cache_lookup: Callable[[HostFacts, ImageFacts], ProbeFacts | None] | None = None
        self.cache_store: Callable[[HostFacts, ImageFacts, ProbeFacts], None] | None = None

    # --- host ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the read-only commands now (host facts, image inspects, cache identity).

        Nothing here starts a container or pulls an image: that waits for the checks.
        """
        with self._lock:
            if self._host is not None:
                return
            self._host = self._pool.submit(self._gather_host)
            timeout = self.settings.host_timeout_s
            self._inspects = {
                name: self._pool.submit(docker.image_inspect, name, timeout)
                for name in self.settings.images
            }
            if self.warmup is not None:
                self._pool.submit(self.warmup)

    def start_probes_early(self) -> None:
        """Start each GPU probe as soon as the facts show the checks would start it.

        For a session of the built-in checks alone (`llem`): once no tier-1 verdict fails and
        an image's cuda-compat passes, its probe is started while pytest is still loading.
        The checks then use the very same probe: the findings are the ones a late start gives.
        """
        self.start()
        with self._lock:
            if self._early:
                return
            self._early = True
        self._pool.submit(self._start_probes_early)

    def _start_probes_early(self) -> None:
        from .domain import verdicts

        host = self.host()
        tier1 = (verdicts.docker_cli, verdicts.docker_daemon, verdicts.nvidia_toolkit)
        if any(judge(host).outcome == "failed" for judge in tier1):
            return
        for name in self.settings.images:
            image = self.image(name)
            if image.info is None:
                continue
            verdict = verdicts.cuda_compat(image, host, lambda: None, self.compute_capability)
            if verdict.outcome != "passed":
                continue  # failed, or not judgeable yet: the checks decide
            with self._lock:
                self._start_probe(name)

    def compute_capability(self) -> str | None:
        """Compute capability of the first GPU (asked only for an `arch` condition)."""
        with self._lock:
            if self._caps is None:
                self._caps = self._pool.submit(
                    nvidia.compute_capabilities, self.settings.host_timeout_s
                )
            future = self._caps
        caps = result_of(future)
        return caps[0] if caps else None

    def host(self) -> HostFacts:
        self.start()
        assert self._host is not None
        return result_of(self._host)

    def _gather_host(self) -> HostFacts:
        timeout = self.settings.host_timeout_s
        endpoint = docker.daemon_endpoint(self.env)
        docker_path = docker.docker_path(self.env)
        version = self._pool.submit(docker.docker_version, timeout) if docker_path else None
        smi: CommandResult | None = None
        if not endpoint.remote:
            smi = nvidia.nvidia_smi_query(timeout)
        smi_info = None
        if smi is not None and smi.ok:
            from .domain.nvidia_smi import parse_q

            smi_info = parse_q(smi.stdout)
        return HostFacts(
            endpoint=endpoint,
            docker_path=docker_path,
            version=result_of(version) if version else None,
            toolkit=nvidia.toolkit_tools(self.env),
            smi=smi,
            smi_info=smi_info,
        )

    # --- images -----------------------------------------------------------------------

    def image(self, image: str) -> ImageFacts:
        """The image's facts; the first call completes every image at once (pulling if absent)."""
        self.start()
        with self._lock:
            if not self._images:
                for name in self.settings.images:
                    self._images[name] = self._pool.submit(self._gather_image, name)
            if image not in self._images:
                self._images[image] = self._pool.submit(self._gather_image, image)
            future = self._images[image]
        return result_of(future)

    def _gather_image(self, image: str) -> ImageFacts:
        timeout = self.settings.host_timeout_s
        early = self._inspects.get(image)
        info, inspect = result_of(early) if early else docker.image_inspect(image, timeout)
        if info is not None:
            return ImageFacts(image, info, inspect)
        pull = docker.pull(image, self.settings.pull_timeout_s)
        if pull.ok:
            info, inspect = docker.image_inspect(image, timeout)
        return ImageFacts(image, info, inspect, pull)

    # --- probes -----------------------------------------------------------------------

    def probe(self, image: str, eligible: Callable[[str], bool]) -> ProbeFacts | None:
        """The probe of ``image``; the first call starts every eligible image's probe at once."""
        if not self._probes_started:
            # eligible() may gather image facts itself: decide before taking the lock.
            chosen = [name for name in self.settings.images if eligible(name)]
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
        present = [self.image(name) for name in self.settings.images]
        candidates = sorted(
            (
                f
                for f in present
                if f.info is not None and (f.image != judged or not _demands_cuda(f.info.env))
            ),
            key=lambda f: _demands_cuda(f.info.env if f.info else {}),
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
        if self.cache_lookup and not self.settings.no_cache:
            cached = self.cache_lookup(host, facts)
            if cached is not None:
                return cached
        name = f"llem-probe-{os.getpid()}-{secrets.token_hex(4)}"
        with self._lock:
            self._live.add(name)
        result = docker.probe(image, name, self.settings.timeout_s)
        if result.timed_out:
            # The engine may still be inside the NVIDIA hook: removal must not be waited for.
            docker.remove_container(name)
        with self._lock:
            self._live.discard(name)
        gpus = parse_query_csv(result.stdout, docker.PROBE_FIELDS) if result.ok else []
        probe = ProbeFacts(image, name, result, gpus)
        if result.ok and gpus and self.cache_store and not self.settings.no_cache:
            self.cache_store(host, facts, probe)
        return probe

    # --- end --------------------------------------------------------------------------

    def close(self) -> None:
        """Remove every probe container still in flight and stop waiting for the rest."""
        with self._lock:
            live, self._live = set(self._live), set()
        for name in sorted(live):
            docker.remove_container(name)
        # Work nobody waits for any more (a pull after a tier-1 failure, say) must not keep
        # the interpreter alive at exit: kill its commands.
        kill_all()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _demands_cuda(env: Mapping[str, str]) -> bool:
    if env.get("NVIDIA_DISABLE_REQUIRE", "").lower() in ("1", "true", "t"):
        return False
    return any(key.startswith("NVIDIA_REQUIRE_") for key in env) or "CUDA_VERSION" in env
