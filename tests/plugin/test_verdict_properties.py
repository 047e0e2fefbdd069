"""The verdict, the summary line and the exit status agree, whatever pytest's options did
to the session (DESIGN §10): driven through pytest with combinations of the options that
select, stop or skip checks, on a host with no docker and no nvidia-smi (tier 1 fails)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llem.domain.check_ids import BUILTIN_IDS
from pytest_llem.domain.report import STATUSES

pytestmark = pytest.mark.usefixtures("bare_host")

BUILTINS = ",".join(BUILTIN_IDS)
DOCKER = "docker-cli,docker-daemon,nvidia-toolkit,cuda-compat,gpu-in-container"

USER_CHECKS = {
    "ok": """
import pytest

@pytest.mark.preflight(tier=1, id="user-ok")
def test_user_ok():
    pass

@pytest.mark.preflight(tier=2, id="user-later")
def test_user_later():
    pass
""",
    "failing": """
import pytest_llem
from pytest_llem.checking import check

@check(tier=1, id="user-broken")
def test_user_broken():
    pytest_llem.fail("the model cache is missing", fix="mount it")
""",
    "dup-builtin": """
import pytest

@pytest.mark.preflight(tier=1, id="docker-cli")
def test_user_takes_a_builtin_id():
    pass
""",
    "dup-user": """
import pytest

@pytest.mark.preflight(tier=1, id="user-twice")
def test_user_one():
    pass

@pytest.mark.preflight(tier=3, id="user-twice")
def test_user_two():
    pass
""",
}


SELECTIONS = [
    (), (), ("-k", "not cli"), ("-k", "gpu_idle or mig or user"), ("-k", "nothing_at_all"),
    ("--deselect", "host_checks.py::check_docker_cli"),
]  # fmt: skip
SKIPS = [
    (), (), ("--llem-skip", "all"), ("--llem-skip", DOCKER), ("--llem-skip", BUILTINS),
    ("--llem-skip", "docker-cli,nvidia-toolkit"),
]  # fmt: skip


@dataclass(frozen=True)
class Flags:
    mode: tuple[str, ...]  # a session that runs nothing
    select: tuple[str, ...]  # pytest's own selection
    skip: tuple[str, ...]  # --llem-skip
    stop: tuple[str, ...]  # options that would stop at the first failure
    user: str | None  # a directory of the person's own checks
    xdist: bool

    def args(self, json_path: Path) -> list[str]:
        args = ["--llem-preflight", *self.mode, *self.select, *self.skip, *self.stop]
        if self.user is not None:
            args.append(self.user)
        if self.xdist:
            args += ["-n", "2"]
        return [*args, "--llem-json", str(json_path)]


flags = st.builds(
    Flags,
    mode=st.sampled_from([(), (), (), ("--co",), ("--setup-only",), ("--setup-plan",)]),
    select=st.sampled_from(SELECTIONS),
    skip=st.sampled_from(SKIPS),
    stop=st.sampled_from([(), ("-x",), ("--maxfail", "1"), ("--sw",)]),
    user=st.sampled_from([None, None, "ok", "failing", "dup-builtin", "dup-user"]),
    xdist=st.integers(0, 5).map(lambda n: n == 0),  # about one run in six: it costs a second
)


def expected(f: Flags) -> str | None:
    """The verdict these options must give on this host, where that is plain (else None)."""
    if f.user in ("dup-builtin", "dup-user"):
        return "usage error"
    if f.skip == ("--llem-skip", "all"):
        return "skipped"
    nothing_else = f.user is None and f.skip == ("--llem-skip", BUILTINS)
    if f.mode or f.select == ("-k", "nothing_at_all"):
        return "skipped" if nothing_else else "incomplete"
    if f.select == () and f.skip in ((), ("--llem-skip", DOCKER)) and f.user == "failing":
        return "failed"
    if f.select == () and f.skip == ():
        return "failed"  # docker-cli and nvidia-toolkit
    return None


@settings(
    max_examples=36,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(f=flags)
def test_json_summary_and_exit_status_agree(pytester: pytest.Pytester, f: Flags) -> None:
    for name, text in USER_CHECKS.items():
        folder = pytester.path / name
        if not folder.exists():
            folder.mkdir()
            (folder / f"test_{name.replace('-', '_')}.py").write_text(text)
    json_path = pytester.path / "r.json"
    json_path.unlink(missing_ok=True)
    result = pytester.runpytest(*f.args(json_path))
    out = result.stdout.str()
    want = expected(f)
    if result.ret == pytest.ExitCode.USAGE_ERROR:
        assert want in (None, "usage error"), (f, out)
        assert not json_path.exists(), f  # nothing that could be read as a result
        assert "Docker pre-flight" not in out
        return
    assert want != "usage error", (f, out, result.stderr.str())
    status = json.loads(json_path.read_text())["status"]
    assert status in STATUSES
    assert want in (None, status), (f, status, out)
    summary = {
        "passed": "Docker pre-flight passed",
        "failed": "Docker pre-flight failed: ",
        "incomplete": "Docker pre-flight incomplete: ",
        "skipped": "Docker pre-flight skipped: ",
    }
    said = [word for word, line in summary.items() if line in out]
    if status == "failed":  # what did not run is named as well
        assert said in (["failed"], ["failed", "incomplete"]), (f, out)
    else:
        assert said == [status], (f, out)
    assert (status == "passed") == (result.ret == 0 and "Docker pre-flight passed" in out)
    if status in ("passed", "skipped"):
        assert result.ret == 0, (f, out)
    else:
        assert result.ret == 1, (f, out)
