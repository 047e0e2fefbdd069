"""The attestation of one experiment's measurement window (DESIGN §10).

An experiment that runs on this host's GPUs (a local command, or a container of a local Docker
daemon) has its GPUs read before it starts, sampled while it runs and read after it ended
(`host.gpu_sampler`), and judged (`domain.attestation`): ``clean``, ``suspect`` with its
reasons, or ``unverified`` when their state cannot be read from here (a remote daemon, no
`nvidia-smi`). ``execution.attest: false`` turns it off; with ``execution.require_clean`` a
suspect experiment fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from ..domain import gpu_request
from ..domain.attestation import Attestation, Reason, judge, unverified
from ..host.gpu_sampler import ContainerOwner, Owner, Sampler, SessionOwner

if TYPE_CHECKING:
    from .config import Execution
    from .manifest import ExperimentRecord
    from .runner_kinds import Launch


def _owner(launch: Launch, name: str, env: Mapping[str, str]) -> Owner | None:
    """Who the experiment's processes are: a local process's session, or a container's
    (found through its kind's CLI, named as the kind)."""
    from .runner_kinds import KINDS

    if not KINDS[launch.runner].containers:
        return SessionOwner()
    return ContainerOwner(name, env, cli=launch.runner)


class Window:
    """One experiment's window: ``with`` it around the experiment (it reads the GPUs before,
    and samples them), its `on_start` given to the experiment; then `attestation()`."""

    def __init__(
        self, launch: Launch, interval_s: float, name: str, env: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if env is None else env
        self.interval_s = interval_s
        self.devices = gpu_request.devices_of(launch.request)
        self._reason: Reason | None = None  # why it is not attested
        self._sampler: Sampler | None = None
        owner = _owner(launch, name, env)
        if launch.remote and launch.endpoint is not None:
            self._reason = Reason(
                "host_driver_unavailable",
                f"its GPUs are those of the remote Docker daemon ({launch.endpoint.url}): "
                "their state cannot be read from this host",
            )
        elif owner is None:
            self._reason = Reason(
                "unknown",
                f"the GPUs of a {launch.runner} experiment are not attested (its processes "
                "cannot be told from others)",
            )
        else:
            self._sampler = Sampler(interval_s, owner, env)

    def __enter__(self) -> Window:
        if self._sampler is not None:
            self._reason = self._sampler.before()
            if self._reason is not None:
                self._sampler = None
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def on_start(self, pid: int) -> None:
        """The experiment's process has started (`host.workloads`' ``on_start``)."""
        if self._sampler is not None:
            self._sampler.started(pid)

    def attestation(self) -> Attestation:
        """The judgement, once the experiment has ended: the snapshot after it first."""
        if self._sampler is None:
            assert self._reason is not None
            return unverified(self._reason, self.interval_s)
        missing = self._sampler.after()
        return judge(self._sampler.taken(), self.devices, self.interval_s, unreadable=missing)


def open_window(
    launch: Launch, execution: Execution, name: str, env: Mapping[str, str] | None = None
) -> Window | None:
    """The window of an experiment; None when ``execution.attest`` is off."""
    if not execution.attest:
        return None
    return Window(launch, execution.attest_interval_s, name, env)


def record_attestation(
    record: ExperimentRecord, attestation: Attestation, *, require_clean: bool
) -> None:
    """Put the attestation in the record; a suspect experiment fails with ``require_clean``
    (unless it failed already: its own cause stays)."""
    from ..domain.remedies import remedy

    record.attestation = attestation.to_json()
    if require_clean and attestation.status == "suspect" and record.status == "ok":
        first = attestation.reasons[0]
        record.status, record.cause = "failed", first.cause
        record.message = f"suspect measurement (execution.require_clean): {attestation.summary()}"
        record.fix, record.url = remedy(first.cause)


def suspect_lines(records: Iterable[ExperimentRecord]) -> list[str]:
    """What `llem run` says at its end: one line per suspect experiment, its reasons."""
    lines = []
    for record in records:
        data = record.attestation
        if data is None or data.get("status") != "suspect":
            continue
        said = "; ".join(f"[{r['cause']}] {r['message']}" for r in data.get("reasons", []))
        failed = " (failed: execution.require_clean)" if record.status == "failed" else ""
        lines.append(f"llem: suspect measurement: {record.id}{failed}: {said}")
    return lines
