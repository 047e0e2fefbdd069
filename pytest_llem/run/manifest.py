"""RUN_DIR/manifest.json: what each experiment of a run did (DESIGN §6)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

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


@dataclass
class Manifest:
    study: str
    run_dir: Path | None = None
    experiments: list[ExperimentRecord] = field(default_factory=list)

    @property
    def failed(self) -> list[ExperimentRecord]:
        return [e for e in self.experiments if e.status != "ok"]

    @property
    def interrupted(self) -> bool:
        return any(e.status == "interrupted" for e in self.experiments)

    @property
    def path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / MANIFEST

    def to_json(self) -> dict[str, Any]:
        return {"study": self.study, "experiments": [asdict(e) for e in self.experiments]}

    def write(self) -> Path:
        """Replace RUN_DIR/manifest.json atomically: a reader never sees half a file."""
        if self.run_dir is None:
            raise ValueError("a manifest without a run directory cannot be written")
        path = self.run_dir / MANIFEST
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=".manifest.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(self.to_json(), out, indent=2, default=str)
                out.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
