"""`--wait` without a host: what tier 1 waits for, the back-off, the end of a wait."""

from __future__ import annotations

import dataclasses
import itertools
import threading

import pytest

from pytest_llem.domain import verdicts
from pytest_llem.domain.nvidia_smi import GpuInfo, SmiInfo
from pytest_llem.domain.records import CommandResult, Endpoint, HostFacts
from pytest_llem.settings import PreflightSettings, SettingError
from pytest_llem.waiting import delays, pending, settle

VERSION_OK = CommandResult(("docker", "version"), 0, '{"Server":{"Version":"27.3.1"}}')
DOWN = CommandResult(
    ("docker", "version"),
    1,
    '{"Client":{"Version":"28.2.2"}}',
    "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?",
)
HUNG = CommandResult(("docker", "version"), None, duration_s=10, timed_out=True)
DENIED = dataclasses.replace(
    DOWN,
    stderr="permission denied while trying to connect to the Docker daemon socket at "
    "unix:///x.sock: dial unix /x.sock: connect: permission denied",
)
SMI_OK = CommandResult(("nvidia-smi", "-q"), 0, "...")
NOT_LOADED = CommandResult(
    ("nvidia-smi", "-q"),
    9,
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
    "that the latest NVIDIA driver is installed and running.",
)
NVML_UNINITIALISED = "Failed to initialize NVML: Uninitialized"
TOOLKIT = {"nvidia-ctk": "/usr/bin/nvidia-ctk"}


def host(
    version: CommandResult | None = VERSION_OK,
    smi: CommandResult | None = SMI_OK,
    toolkit: dict[str, str] | None = None,
    docker: str | None = "/usr/bin/docker",
) -> HostFacts:
    info = SmiInfo("550.54.15", "12.4", [GpuInfo(0, "H100", "GPU-0")]) if smi is SMI_OK else None
    return HostFacts(
        Endpoint("unix:///x.sock"),
        docker,
        version if docker else None,
        TOOLKIT if toolkit is None else toolkit,
        smi,
        info,
    )


def test_the_back_off_doubles_from_half_a_second_to_five() -> None:
    assert list(itertools.islice(delays(), 7)) == [0.5, 1, 2, 4, 5, 5, 5]


@pytest.mark.parametrize(
    ("facts", "waiting"),
    [
        (host(), []),
        (host(DOWN), [("docker-daemon", "unreachable")]),
        (host(HUNG), [("docker-daemon", "not answering")]),
        (host(smi=NOT_LOADED), [("host-driver", "driver not loaded")]),
        (
            host(DOWN, NOT_LOADED),
            [("docker-daemon", "unreachable"), ("host-driver", "driver not loaded")],
        ),
        (
            host(smi=dataclasses.replace(NOT_LOADED, stdout=NVML_UNINITIALISED)),
            [("host-driver", "NVML not initialised")],
        ),
        (host(smi=dataclasses.replace(NOT_LOADED, timed_out=True, returncode=None)),
         [("host-driver", "nvidia-smi not answering")]),
        # What cannot clear by itself ends the wait, whatever else could.
        (host(DOWN, toolkit={}), []),
        (host(docker=None), []),
        (host(DENIED), []),
        (host(DENIED, NOT_LOADED), []),
        # A warning that will not clear does not block a wait for something else, nor start one.
        (host(smi=None), []),
        (host(DOWN, smi=None), [("docker-daemon", "unreachable")]),
        (host(smi=dataclasses.replace(NOT_LOADED, stdout="Failed to initialize NVML: "
                                      "Driver/library version mismatch")), []),
        # Real answers of nvidia-smi 580 with the driver loaded: no wait clears them.
        (host(smi=dataclasses.replace(NOT_LOADED, returncode=4, stdout="Failed to initialize "
                                      "NVML: Insufficient Permissions")), []),
        (host(smi=dataclasses.replace(NOT_LOADED, returncode=17, stdout="Failed to initialize "
                                      "NVML: GPU access blocked by the operating system")), []),
    ],
)  # fmt: skip
def test_what_tier_1_waits_for(facts: HostFacts, waiting: list[tuple[str, str]]) -> None:
    assert pending(facts) == waiting


def test_a_skipped_check_is_not_waited_for() -> None:
    assert pending(host(DOWN), frozenset({"docker-daemon"})) == []
    assert pending(host(DOWN), frozenset({"all"})) == []
    assert pending(host(DOWN, NOT_LOADED), frozenset({"host-driver"})) == [
        ("docker-daemon", "unreachable")
    ]


class FakeTime:
    """A clock that only moves when the wait sleeps, or a host query takes time."""

    def __init__(self, query_s: float = 0.1) -> None:
        self.now = 100.0
        self.query_s = query_s
        self.sleeps: list[float] = []
        self.timeouts: list[float] = []

    def clock(self) -> float:
        return self.now

    def stop(self) -> threading.Event:
        time = self

        class Sleeper(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                assert timeout is not None
                time.sleeps.append(round(timeout, 3))
                time.now += timeout
                return False

        return Sleeper()

    def gatherer(self, answers: list[HostFacts]) -> object:
        def gather(timeout: float) -> HostFacts:
            self.timeouts.append(timeout)
            self.now += self.query_s
            return answers.pop(0)

        return gather


def run_settle(
    first: HostFacts, answers: list[HostFacts], wait_s: float
) -> tuple[HostFacts, list[str], FakeTime]:
    fake = FakeTime()
    said: list[str] = []
    settled = settle(first, fake.gatherer(answers), wait_s, said.append,  # type: ignore[arg-type]
                     stop=fake.stop(), clock=fake.clock)  # fmt: skip
    return settled, said, fake


def test_a_wait_ends_when_tier_1_passes() -> None:
    healthy = host()
    settled, said, fake = run_settle(host(DOWN), [host(DOWN), host(DOWN), healthy], 60)
    assert fake.sleeps == [0.5, 1, 2]
    assert said == [
        "waiting for docker-daemon (unreachable): 0 s of 60 s",
        "waiting for docker-daemon (unreachable): 1 s of 60 s",
        "waiting for docker-daemon (unreachable): 2 s of 60 s",
        "waited 4 s for docker-daemon",
    ]
    assert settled == dataclasses.replace(healthy, waited_s=pytest.approx(3.8))
    assert verdicts.docker_daemon(settled).outcome == "passed"


def test_when_the_time_is_up_the_finding_says_how_long_it_waited() -> None:
    settled, said, fake = run_settle(host(DOWN, smi=None), [host(DOWN, smi=None)] * 20, 10)
    assert fake.sleeps == [0.5, 1, 2, 4, pytest.approx(2.1)]  # the last one cut to the limit
    assert len(said) == 5 and said[-1] == "waiting for docker-daemon (unreachable): 8 s of 10 s"
    assert settled.waited_s == pytest.approx(10.1)
    assert settled.waited_for == ("docker-daemon",)
    # The warning of a check that was not waited for says nothing of the wait.
    warning = verdicts.host_driver(settled).finding
    assert warning is not None and "waiting" not in warning.message
    verdict = verdicts.docker_daemon(settled)
    assert verdict.finding is not None
    assert verdict.finding.message.endswith(" (after waiting 10 s)")
    assert verdict.finding.details["waited_s"] == 10.1
    # Each query gets the time left, and near the end still a fair limit.
    assert fake.timeouts[0] == 9.5 and fake.timeouts[-1] == 2


def test_a_failure_that_cannot_clear_ends_the_wait() -> None:
    denied = host(DENIED)
    settled, said, fake = run_settle(host(DOWN), [host(DOWN), denied], 60)
    assert len(fake.sleeps) == 2
    assert said[-1] == "waited 2 s for docker-daemon"
    assert verdicts.docker_daemon(settled).finding.cause == "daemon_permission_denied"  # type: ignore[union-attr]


def test_nothing_to_wait_for_costs_nothing() -> None:
    for first, wait_s in ((host(), 60.0), (host(DOWN), 0.0), (host(DOWN, toolkit={}), 60.0)):
        settled, said, fake = run_settle(first, [], wait_s)
        assert (settled, said, fake.sleeps) == (first, [], [])
        assert settled.waited_s == 0
        finding = verdicts.docker_daemon(settled).finding
        assert finding is None or "waiting" not in finding.message


def test_a_closing_session_ends_the_wait() -> None:
    closing = threading.Event()
    closing.set()
    said: list[str] = []
    first = host(DOWN)
    assert settle(first, lambda timeout: first, 60, said.append, stop=closing) is first
    assert len(said) == 1


def test_wait_is_a_setting_of_its_own() -> None:
    settings = PreflightSettings.from_options({"llem_wait": "45"})
    assert settings.wait_s == 45
    assert PreflightSettings.from_options({"llem_wait": "0"}).wait_s == 0
    with pytest.raises(SettingError, match=r"^--wait: should be greater than or equal to 0"):
        PreflightSettings.from_options({"llem_wait": "-1"}, named_by="cli")
