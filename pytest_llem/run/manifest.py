"""RUN_DIR/manifest.json: what each experiment of a run did (DESIGN §6)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import LLEMError
from ..host.jsonfile import write_json

if TYPE_CHECKING:
    from ..domain.report import Report

Status = Literal["ok", "failed", "interrupted"]

MANIFEST = "manifest.json"


@dataclass
class ExperimentRecord:
    id: str
    backend: str
    model: str
    runner: str  # "local" | "docker"
    image: str | None
    status: Status
    exit_status: int | None = None
    duration_s: float = 0.0
    result: Any = None
    cause: str | None = None
    message: str | None = None
    fix: str | None = None
    url: str | None = None
    log: str | None = None  # the output file, relative to RUN_DIR
    # A local experiment's processes still running after it ended, which llem killed:
    # [{"pid": 123, "command": "sleep 600"}]; empty when it left none.
    leftovers_killed: list[dict[str, Any]] = field(default_factory=list)
    # Set when its container could not be removed (it may still be there): what went wrong.
    cleanup: str | None = None
    # A Slurm job's (`llem run --slurm`): its id, its node, and its node's pre-flight.
    slurm_job_id: str | None = None
    node: str | None = None
    preflight: dict[str, Any] | None = None
    # Whether its GPUs were undisturbed while it ran (`run.attest`); None when not attested.
    attestation: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Its manifest entry; the Slurm keys only for a Slurm job's."""
        data = asdict(self)
        for key in SLURM_KEYS:
            if data[key] is None:
                del data[key]
        return data


SLURM_KEYS = ("slurm_job_id", "node", "preflight")


@dataclass
class Manifest:
    study: str
    run_dir: Path | None = None
    experiments: list[ExperimentRecord] = field(default_factory=list)
    preflight: Report | None = None  # None when no pre-flight was due
    plan: list[str] = field(default_factory=list)  # what a dry run would run
    skipped_checks: dict[str, str] = field(default_factory=dict)  # id -> where it was asked

    @property
    def failed(self) -> list[ExperimentRecord]:
        return [e for e in self.experiments if e.status != "ok"]

    @property
    def left_behind(self) -> list[ExperimentRecord]:
        """The experiments whose container may still be there (`cleanup`)."""
        return [e for e in self.experiments if e.cleanup is not None]

    @property
    def path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / MANIFEST

    def to_json(self) -> dict[str, Any]:
        skipped = [{"id": cid, "source": source} for cid, source in self.skipped_checks.items()]
        if self.preflight is not None and self.preflight.skipped_by and not skipped:
            skipped = [{"id": "all", "source": self.preflight.skipped_by}]
        return {
            "study": self.study,
            "host": host_block(self.preflight),
            "skipped_checks": skipped,
            "experiments": [e.to_json() for e in self.experiments],
        }

    def write(self) -> Path:
        """Replace RUN_DIR/manifest.json atomically: a reader never sees half a file."""
        if self.run_dir is None:
            raise ValueError("a manifest without a run directory cannot be written")
        path = self.run_dir / MANIFEST
        try:
            write_json(path, self.to_json())
        except OSError as exc:  # e.g. a container left a directory under that name
            what = "something that is not a file is in its place" if path.is_dir() else ""
            raise LLEMError(
                f"cannot write the manifest {path}: {what or exc.strerror or exc}"
            ) from None
        return path


def host_block(report: Report | None) -> dict[str, Any] | None:
    """What the pre-flight saw of the host: driver, CUDA, each GPU (name, UUID, architecture,
    persistence and MIG mode, power limit and its default, temperature, clocks policy) and
    the findings of every
    measurement check (gpu-idle ... power-limit, gpu-health); None when no pre-flight ran."""
    if report is None or report.skipped_by:
        return None
    from ..domain.check_ids import MEASUREMENT_IDS

    measured = [c for c in report.checks if c.id in MEASUREMENT_IDS]
    states: dict[int, dict[str, Any]] = {}
    for check in measured:
        for gpu in check.details.get("gpus", []):
            states.setdefault(gpu["index"], gpu)
    host = report.host
    slurm = {"slurm": host["slurm"]} if "slurm" in host else {}  # run inside a Slurm job
    return {
        # The report's host block already falls back to what the measurement checks read.
        "driver_version": host.get("driver_version", ""),
        "cuda_version": host.get("cuda_version", ""),
        "gpus": [
            {
                k: gpu.get(k)
                for k in (
                    "index",
                    "name",
                    "uuid",
                    "architecture",
                    "persistence_mode",
                    "mig_mode",
                    "power_limit",
                    "default_power_limit",
                    "temperature",
                    "clocks",
                )
            }
            for _, gpu in sorted(states.items())
        ]
        or list(host.get("gpus", [])),
        "measurement": [
            {
                "id": c.id,
                "outcome": c.outcome,
                "cause": c.finding.cause if c.finding else None,
                "message": c.finding.message if c.finding else c.reason,
            }
            for c in measured
        ],
        **slurm,
    }
