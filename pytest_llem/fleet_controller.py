"""pytest-xdist's controller for a fleet (``--dist each`` over many hosts): a host fails alone.

xdist's own controller (`xdist.dsession.DSession`) starts its gateways one after the other,
each without a limit; an error while starting one ends the whole session, and a worker that
stops answering holds it for ever. For a fleet, `FleetController` (a DSession) instead:

- starts every host's worker at once (`host.gateways`: a process of llem's, under a guard
  on the host), each in a thread of its own, and takes it from there in the main thread;
- gives each host the checks as soon as it has collected them (`FleetScheduling`);
- watches every host: one that has said nothing (no event) for the host timeout is lost;
- records a host whose worker does not start, crashes, errs or goes silent with
  `Fleet.lose` (cause ``host_unreachable``, with what it said), ends its worker, and goes on
  with the others;
- ends every host's worker at the end and waits for it, so nothing of it outlives the run.

Everything that changes the session's state happens in the main thread, as events on
DSession's queue; the other threads start processes, read them, and watch the clock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from queue import Empty
from typing import TYPE_CHECKING, Any

import pytest
from xdist.dsession import DSession
from xdist.workermanage import NodeManager, WorkerController

from .fleet import CONNECT_TIMEOUT_S, last_line, silence, start_failure
from .host.gateways import (
    SAID_LINES,
    HostProcess,
    WorkerNotStarted,
    echo_to_stderr,
    start_gateway,
    worker_argv,
)

if TYPE_CHECKING:
    import execnet
    from execnet import XSpec

    from .fleet import Fleet, Gateway

# How long a host's worker may take to end once asked (its guard needs up to about 4 s).
TEARDOWN_S = 10.0
# A silent host that the main thread could not end (it was waiting on that very host) is
# killed this long after it was found silent, which frees the main thread.
_KILL_STUCK_S = 5.0
_TICK_S = 0.25


@dataclass(eq=False)
class _Host:
    """One host of the fleet as the controller follows it."""

    gateway: Gateway
    spec: XSpec
    heard: float  # when it last said something (time.monotonic)
    state: str = "starting"  # then "running" (its node is up), "done" or "lost"
    process: HostProcess | None = None
    link: execnet.Gateway | None = None
    node: Any = None  # its xdist WorkerController
    silent_since: float | None = None
    killed: bool = False
    closer: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.gateway.name

    def said(self, wait: float = 0.0) -> list[str]:
        return self.process.said(wait) if self.process is not None else []


class FleetScheduling:
    """Every check to every host, each host as soon as it has collected them (xdist's
    ``each`` waits for every host's collection); a host that goes away is dropped, never
    replaced."""

    def __init__(self) -> None:
        self.node2collection: dict[Any, list[str]] = {}
        self.node2pending: dict[Any, list[int]] = {}
        self._started: set[Any] = set()

    @property
    def nodes(self) -> list[Any]:
        return list(self.node2pending)

    @property
    def collection_is_completed(self) -> bool:
        return True  # (each host's own collection is all it waits for)

    @property
    def tests_finished(self) -> bool:
        return all(
            node in self._started and len(pending) < 2
            for node, pending in self.node2pending.items()
        )

    @property
    def has_pending(self) -> bool:
        return any(self.node2pending.values())

    def has_started(self, node: Any) -> bool:
        return node in self._started

    def add_node(self, node: Any) -> None:
        self.node2pending[node] = []

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        self.node2collection[node] = list(collection)

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self.node2pending[node].remove(item_index)

    def mark_test_pending(self, item: str) -> None:
        raise NotImplementedError

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        raise NotImplementedError

    def remove_node(self, node: Any) -> str | None:
        pending = self.node2pending.pop(node)
        collection = self.node2collection.pop(node, [])
        self._started.discard(node)
        return collection[pending[0]] if pending else None

    def schedule(self) -> None:
        for node, pending in self.node2pending.items():
            if node in self._started or node not in self.node2collection:
                continue
            pending[:] = range(len(self.node2collection[node]))
            node.send_runtest_all()
            node.shutdown()
            self._started.add(node)


class FleetController(DSession):  # type: ignore[misc]
    """pytest-xdist's controller for the hosts of ``fleet`` (see the module)."""

    def __init__(self, config: pytest.Config, fleet: Fleet) -> None:
        super().__init__(config)
        self._session: pytest.Session | None = None
        self.fleet = fleet
        self.timeout = fleet.host_timeout
        self.hosts: dict[str, _Host] = {}
        self._stop = threading.Event()
        self._closers: list[threading.Thread] = []

    # --- the start --------------------------------------------------------------------------

    def start(self, session: pytest.Session) -> None:
        """What DSession's `pytest_sessionstart` does, for a fleet: every host's worker
        starting at once, and the watch over them."""
        self._session = session
        if self.terminal:
            self.terminal.showfspath = False
        gateways = {g.name: g for g in self.fleet.to_start()}
        self.nodemanager = NodeManager(self.config, specs=[g.spec for g in gateways.values()])
        if self.nodemanager.specs:
            self.config.hook.pytest_xdist_setupnodes(
                config=self.config, specs=self.nodemanager.specs
            )
        now = time.monotonic()
        for spec in self.nodemanager.specs:
            host = self.hosts[spec.id] = _Host(gateways[spec.id], spec, heard=now)
            _thread(self._open, host, name=f"llem-fleet-open-{spec.id}")
        _thread(self._watch, name="llem-fleet-watch")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """(The plugin is registered during this hook and `start` is called then.)"""

    def _open(self, host: _Host) -> None:
        """In a thread of its own: the host's worker process and gateway, or why not."""
        group = self.nodemanager.group
        try:
            connect = min(CONNECT_TIMEOUT_S, self.timeout)
            argv = worker_argv(host.spec, connect_timeout=connect)
            if argv is None:  # a kind of gateway that execnet starts itself
                link = group.makegateway(host.spec)
            else:
                host.process = HostProcess(argv, echo=echo_to_stderr)
                link = start_gateway(group, host.spec, host.process)
        except Exception as exc:  # (reported, never raised: this thread is not the session's)
            self.queue.put(("llem_gateway_failed", {"name": host.name, "error": exc}))
        else:
            host.heard = time.monotonic()
            self.queue.put(("llem_gateway_up", {"name": host.name, "link": link}))

    def worker_llem_gateway_up(self, name: str, link: execnet.Gateway) -> None:
        host = self.hosts[name]
        host.link = link
        if host.state != "starting":  # lost meanwhile
            self._close(host)
            return
        try:
            self.config.hook.pytest_xdist_newgateway(gateway=link)
            self.nodemanager.rsync_roots(link)
            node = WorkerController(self.nodemanager, link, self.config, self._put)
            link.node = node  # type: ignore[attr-defined]  # (what keeps it alive, as in xdist)
            node.setup()
        except Exception as exc:
            said = host.said(2.0)
            self._lose(host, start_failure(host.gateway, str(exc), None, said), said)
            return
        host.node = node
        host.state = "running"
        self._active_nodes.add(node)

    def worker_llem_gateway_failed(self, name: str, error: Exception) -> None:
        host = self.hosts[name]
        if host.state != "starting":
            return
        said = host.said(2.0)  # (its last words may still be on their way)
        returncode = error.returncode if isinstance(error, WorkerNotStarted) else None
        self._lose(host, start_failure(host.gateway, str(error), returncode, said), said)

    def _put(self, event: tuple[str, dict[str, Any]]) -> None:
        """A worker's event (from execnet's receiver thread): the host has said something."""
        host = self._host_of(event[1].get("node"))
        if host is not None:
            host.heard = time.monotonic()
        self.queue.put(event)

    # --- the run ----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> FleetScheduling:
        return FleetScheduling()

    def loop_once(self) -> None:
        """One event (or none within a tick); then, with every host's checks handed out and
        run, the end."""
        try:
            callname, kwargs = self.queue.get(timeout=_TICK_S)
        except Empty:
            pass
        else:
            host = self._host_of(kwargs.get("node"))
            if host is None or host.state != "lost":  # (a lost host's last events are moot)
                self.log("calling method", f"worker_{callname}", kwargs)
                getattr(self, f"worker_{callname}")(**kwargs)
        if self._settled() and self.sched.tests_finished:
            self.triggershutdown()

    def _settled(self) -> bool:
        """Whether every host has its checks, or is done or lost."""
        return all(
            host.state in ("done", "lost")
            or (host.state == "running" and self.sched.has_started(host.node))
            for host in self.hosts.values()
        )

    def worker_workerfinished(self, node: WorkerController) -> None:
        host = self._host_of(node)
        if host is not None and node.workeroutput.get("exitstatus") == 2:
            # Interrupted over there (not here: that would have stopped this process): that
            # host's failure alone.
            self.config.hook.pytest_testnodedown(node=node, error="interrupted")
            self._lose(host, f"the pre-flight on {host.name} was interrupted", host.said())
            return
        if host is not None:
            host.state = "done"
        super().worker_workerfinished(node)

    def worker_errordown(self, node: WorkerController, error: object | None) -> None:
        """The connection to a worker ended before it finished: that host is lost."""
        self.config.hook.pytest_testnodedown(node=node, error=error)
        host = self._host_of(node)
        if host is None:  # (not a host of ours: xdist's way)
            super().worker_errordown(node, error)
            return
        said = host.said(2.0)
        last = said[-1] if said else last_line(error)
        self._lose(host, f"the connection to {host.name} was lost: {last}", said)

    def worker_internal_error(self, node: WorkerController, formatted_error: str) -> None:
        """An internal error of a worker: that host's failure, not the session's."""
        host = self._host_of(node)
        if host is None:
            super().worker_internal_error(node, formatted_error)
            return
        lines = [line for line in formatted_error.splitlines() if line.strip()]
        message = f"the pre-flight on {host.name} failed: {last_line(formatted_error)}"
        self._lose(host, message, lines[-SAID_LINES:])

    # --- silence ----------------------------------------------------------------------------

    def _watch(self) -> None:
        """In a thread of its own: finds the hosts that have been silent for too long."""
        while not self._stop.wait(_TICK_S):
            now = time.monotonic()
            for host in list(self.hosts.values()):
                if host.silent_since is None:
                    if host.state in ("starting", "running") and now - host.heard > self.timeout:
                        host.silent_since = now
                        self.queue.put(("llem_host_silent", {"name": host.name}))
                elif (
                    host.closer is None
                    and not host.killed
                    and host.process is not None
                    and now - host.silent_since > _KILL_STUCK_S
                ):
                    host.killed = True
                    host.process.kill()

    def worker_llem_host_silent(self, name: str) -> None:
        host = self.hosts[name]
        if host.state in ("starting", "running"):
            self._lose(host, "", host.said())

    # --- a host lost ------------------------------------------------------------------------

    def _lose(self, host: _Host, message: str, said: Sequence[str] = ()) -> None:
        """``host`` failed (``message``; silence, once found, is the reason that stands):
        recorded in the fleet's report, its node dropped, its worker ended; the others go
        on."""
        if host.state in ("lost", "done"):
            return
        fix = ""
        if host.silent_since is not None:
            message, fix = silence(host.name, self.timeout)
        checking = host.node is not None and self.sched is not None
        stage = "running" if checking and self.sched.has_started(host.node) else "starting"
        host.state = "lost"
        self.fleet.lose(host.name, message, said=said, fix=fix, stage=stage)
        self.report_line(f"llem: {message} (the other hosts go on)")
        node = host.node
        if node is not None:
            if self.sched is not None:
                with contextlib.suppress(KeyError):
                    self.sched.remove_node(node)
            self._active_nodes.discard(node)
        self._close(host)

    def _close(self, host: _Host) -> None:
        """End the host's worker, in a thread of its own (it may take a few seconds)."""
        if host.closer is not None:
            return
        process, link = host.process, host.link
        end: Callable[[], None]
        if process is not None:

            def end() -> None:
                process.close(link, within=TEARDOWN_S)

        elif link is not None:
            end = link.exit
        else:
            return
        host.closer = _thread(end, name=f"llem-fleet-close-{host.name}")
        self._closers.append(host.closer)

    # --- the end ----------------------------------------------------------------------------

    @pytest.hookimpl
    def pytest_sessionfinish(self) -> None:
        """Every host's worker ended, and waited for (each within `TEARDOWN_S`)."""
        self._stop.set()
        for host in self.hosts.values():
            self._close(host)
        for closer in self._closers:
            closer.join(TEARDOWN_S + 10)
        if self.nodemanager is not None:  # (execnet's own bookkeeping: all have ended)
            self.nodemanager.group.terminate(timeout=1.0)
        self._session = None

    def _host_of(self, node: Any) -> _Host | None:
        return self.hosts.get(getattr(getattr(node, "gateway", None), "id", None) or "")


def _thread(target: Callable[..., None], *args: Any, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True, name=name)
    thread.start()
    return thread
