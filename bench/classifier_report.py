"""How well diagnose() names the cause of the reference corpus (tests/data/reference/), and of
the held-back messages (tests/data/heldback/), reported apart: those were set aside before any
rule for their set-up was written, so they measure the rules on text that was not in view.

Every real message (*.jsonl) is classified twice: with the exit status it was recorded with,
and without one, as when it is pasted into a bug report. Every real healthy output (*.txt)
must read "ok" both ways. Prints accuracy per expected cause, the confusion pairs, and the
time diagnose() takes on 128 kB inputs.

Usage: python bench/classifier_report.py [--no-speed]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_llem.domain.diagnosis import diagnose

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference"
HELDBACK = REFERENCE.parent / "heldback"
VERBATIM = "# ---- verbatim output below ----\n"


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    returncode: int | None
    expected: str


@dataclass
class Report:
    total: Counter[str] = field(default_factory=Counter)
    right: Counter[str] = field(default_factory=Counter)
    confusions: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))

    def accuracy(self, cause: str) -> float:
        return self.right[cause] / self.total[cause]

    @property
    def overall(self) -> float:
        return sum(self.right.values()) / sum(self.total.values())


def messages(folder: Path) -> list[Case]:
    """Each real message of a folder's *.jsonl, as recorded and without its exit status."""
    cases: list[Case] = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            m = json.loads(line)
            text = "\n".join(part for part in (m["stdout"], m["stderr"]) if part)
            cases.append(Case(m["id"], text, m["returncode"], m["category"]))
            if m["returncode"] is not None:
                cases.append(Case(f"{m['id']} (no exit status)", text, None, m["category"]))
    return cases


def heldback(folder: Path = HELDBACK) -> list[Case]:
    """The held-back messages, never read while the rules were written."""
    return messages(folder)


def corpus(reference: Path = REFERENCE) -> list[Case]:
    """Each real message as recorded and without its exit status; each healthy output."""
    cases = messages(reference)
    for path in sorted([*reference.glob("*.txt"), *(reference.parent / "captured").glob("*.txt")]):
        head, text = path.read_text().split(VERBATIM, 1)
        expect = _EXPECT.search(head)
        cause = expect.group(1) if expect else "ok"  # a capture of a failure says what it is
        for returncode in (0, None) if cause == "ok" else (None,):
            cases.append(Case(f"{path.name} (exit {returncode})", text, returncode, cause))
    return cases


_EXPECT = re.compile(r"^# expect: (\w+)", re.M)


def classify(cases: list[Case]) -> Report:
    report = Report()
    for case in cases:
        got = diagnose(case.text, case.returncode).cause
        report.total[case.expected] += 1
        if got == case.expected:
            report.right[case.expected] += 1
        else:
            report.confusions[(case.expected, got)].append(case.id)
    return report


def speed(rounds: int = 7) -> dict[str, float]:
    """Median milliseconds of diagnose() on 128 kB inputs of a few kinds."""
    size = 128 * 1024
    smi_q = (REFERENCE.parent / "captured" / "h200-580.159.04_smi-q.txt").read_text()
    failure = (
        "docker: Error response from daemon: failed to create task for container: failed to "
        "create shim task: OCI runtime create failed: runc create failed: unable to start "
        "container process: error during container init: error running prestart hook #0: exit "
        "status 1, stdout: , stderr: nvidia-container-cli: initialization error: nvml error: "
        "driver/library version mismatch: unknown\n"
    )
    log = "step 1200 loss 0.4215 tokens/s 5210.7 power 412.3 W energy 18.2 kJ\n"
    pull = "3c645031de29: Downloading [=====>        ]  12.5MB/89.2MB\n"
    inputs = {
        "container log, failure last": (log * (size // len(log)))[: size - len(failure)] + failure,
        "nvidia-smi -q of many GPUs": (smi_q * (size // len(smi_q) + 1))[:size],
        "pull progress, then the probe's CSV": (pull * (size // len(pull)))[: size - 80]
        + "0, NVIDIA H200, GPU-00000000-1111-2222-3333-444444444444, 580.159.04\n",
        "a long log, no failure": (log * (size // len(log) + 1))[:size],
    }
    times: dict[str, float] = {}
    for name, text in inputs.items():
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            diagnose(text, None)
            samples.append((time.perf_counter() - started) * 1000)
        times[name] = statistics.median(samples)
    return times


def render(report: Report) -> str:
    lines = [f"{'cause':32} {'right':>5} / {'cases':<5} accuracy"]
    for cause in sorted(report.total):
        lines.append(
            f"{cause:32} {report.right[cause]:>5} / {report.total[cause]:<5} "
            f"{report.accuracy(cause):7.1%}"
        )
    total = sum(report.total.values())
    lines.append(f"{'all':32} {sum(report.right.values()):>5} / {total:<5} {report.overall:7.1%}")
    lines.append("")
    if not report.confusions:
        lines.append("confusion pairs: none")
    for (expected, got), ids in sorted(report.confusions.items()):
        lines.append(f"confusion {expected} -> {got} ({len(ids)}): {', '.join(ids)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    cases = corpus()
    print(f"reference corpus (in view while the rules were written): {len(cases)} cases")
    print(render(classify(cases)))
    held = heldback()
    print(
        f"\nheld back (set aside before their rules, unread while writing them): {len(held)} cases"
    )
    print(render(classify(held)))
    if "--no-speed" not in argv:
        print("\ndiagnose() on 128 kB inputs (median of 7, no exit status):")
        for name, ms in speed().items():
            print(f"  {name:40} {ms:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
