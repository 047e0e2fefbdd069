"""One profile and one host adapter per container engine; the settings and the runner kinds
name the same engines."""

from __future__ import annotations

from pytest_llem.domain.check_ids import BY_ID
from pytest_llem.domain.engines import ENGINES, profile
from pytest_llem.host.engines import HOSTS, engine_host
from pytest_llem.run.runner_kinds import KINDS
from pytest_llem.settings import setting_fields


def test_every_engine_has_a_profile_an_adapter_a_setting_and_a_container_runner() -> None:
    engine = next(f for f in setting_fields() if f.name == "engine")
    assert tuple(ENGINES) == tuple(HOSTS) == tuple(engine.metadata["choices"])
    assert set(ENGINES) == {name for name, kind in KINDS.items() if kind.containers}
    for name in ENGINES:
        assert engine_host(name).name == profile(name).name == name


def test_the_check_that_proves_an_engine_answers_is_required_by_its_runner_kind() -> None:
    for name, engine in ENGINES.items():
        assert name in BY_ID[engine.reached_by].runners


def test_podman_is_cdi_only_and_names_its_version_as_a_client() -> None:
    assert profile("podman").cdi_only and not profile("docker").cdi_only
    assert (profile("docker").version_part, profile("podman").version_part) == ("Server", "Client")
