"""The NVIDIA_REQUIRE_* evaluator, table-driven, with the values real CUDA images carry."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pytest_llem.domain.requirements import (
    RequirementVerdict,
    evaluate_requirements,
    image_cuda_facts,
)

# NVIDIA_REQUIRE_CUDA of the official nvidia/cuda base images, verbatim from their Dockerfiles
# (https://gitlab.com/nvidia/container-images/cuda, dist/<version>/<os>/base/Dockerfile):
# 11.8.0 and 12.1.1 ubuntu22.04 (amd64 and arm64 stages), 12.4.1 ubuntu22.04, 12.8.1 ubuntu24.04.
CUDA_11_8_AMD64 = (
    "cuda>=11.8 brand=tesla,driver>=450,driver<451 brand=tesla,driver>=470,driver<471 "
    "brand=unknown,driver>=470,driver<471 brand=nvidia,driver>=470,driver<471 "
    "brand=nvidiartx,driver>=470,driver<471 brand=geforce,driver>=470,driver<471 "
    "brand=geforcertx,driver>=470,driver<471 brand=quadro,driver>=470,driver<471 "
    "brand=quadrortx,driver>=470,driver<471 brand=titan,driver>=470,driver<471 "
    "brand=titanrtx,driver>=470,driver<471"
)
CUDA_11_8_ARM64 = "cuda>=11.8"
CUDA_12_1_AMD64 = (
    "cuda>=12.1 brand=tesla,driver>=450,driver<451 brand=tesla,driver>=470,driver<471 "
    "brand=unknown,driver>=470,driver<471 brand=nvidia,driver>=470,driver<471 "
    "brand=nvidiartx,driver>=470,driver<471 brand=geforce,driver>=470,driver<471 "
    "brand=geforcertx,driver>=470,driver<471 brand=quadro,driver>=470,driver<471 "
    "brand=quadrortx,driver>=470,driver<471 brand=titan,driver>=470,driver<471 "
    "brand=titanrtx,driver>=470,driver<471 brand=tesla,driver>=525,driver<526 "
    "brand=unknown,driver>=525,driver<526 brand=nvidia,driver>=525,driver<526 "
    "brand=nvidiartx,driver>=525,driver<526 brand=geforce,driver>=525,driver<526 "
    "brand=geforcertx,driver>=525,driver<526 brand=quadro,driver>=525,driver<526 "
    "brand=quadrortx,driver>=525,driver<526 brand=titan,driver>=525,driver<526 "
    "brand=titanrtx,driver>=525,driver<526"
)
CUDA_12_1_ARM64 = "cuda>=12.1"
CUDA_12_4_1 = (
    "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471 "
    "brand=nvidia,driver>=470,driver<471 brand=nvidiartx,driver>=470,driver<471 "
    "brand=geforce,driver>=470,driver<471 brand=geforcertx,driver>=470,driver<471 "
    "brand=quadro,driver>=470,driver<471 brand=quadrortx,driver>=470,driver<471 "
    "brand=titan,driver>=470,driver<471 brand=titanrtx,driver>=470,driver<471 "
    "brand=tesla,driver>=525,driver<526 brand=unknown,driver>=525,driver<526 "
    "brand=nvidia,driver>=525,driver<526 brand=nvidiartx,driver>=525,driver<526 "
    "brand=geforce,driver>=525,driver<526 brand=geforcertx,driver>=525,driver<526 "
    "brand=quadro,driver>=525,driver<526 brand=quadrortx,driver>=525,driver<526 "
    "brand=titan,driver>=525,driver<526 brand=titanrtx,driver>=525,driver<526 "
    "brand=tesla,driver>=535,driver<536 brand=unknown,driver>=535,driver<536 "
    "brand=nvidia,driver>=535,driver<536 brand=nvidiartx,driver>=535,driver<536 "
    "brand=geforce,driver>=535,driver<536 brand=geforcertx,driver>=535,driver<536 "
    "brand=quadro,driver>=535,driver<536 brand=quadrortx,driver>=535,driver<536 "
    "brand=titan,driver>=535,driver<536 brand=titanrtx,driver>=535,driver<536"
)
CUDA_12_8_1 = (
    "cuda>=12.8 brand=unknown,driver>=470,driver<471 brand=grid,driver>=470,driver<471 "
    "brand=tesla,driver>=470,driver<471 brand=nvidia,driver>=470,driver<471 "
    "brand=quadro,driver>=470,driver<471 brand=quadrortx,driver>=470,driver<471 "
    "brand=nvidiartx,driver>=470,driver<471 brand=vapps,driver>=470,driver<471 "
    "brand=vpc,driver>=470,driver<471 brand=vcs,driver>=470,driver<471 "
    "brand=vws,driver>=470,driver<471 brand=cloudgaming,driver>=470,driver<471 "
    "brand=unknown,driver>=535,driver<536 brand=grid,driver>=535,driver<536 "
    "brand=tesla,driver>=535,driver<536 brand=nvidia,driver>=535,driver<536 "
    "brand=quadro,driver>=535,driver<536 brand=quadrortx,driver>=535,driver<536 "
    "brand=nvidiartx,driver>=535,driver<536 brand=vapps,driver>=535,driver<536 "
    "brand=vpc,driver>=535,driver<536 brand=vcs,driver>=535,driver<536 "
    "brand=vws,driver>=535,driver<536 brand=cloudgaming,driver>=535,driver<536 "
    "brand=unknown,driver>=550,driver<551 brand=grid,driver>=550,driver<551 "
    "brand=tesla,driver>=550,driver<551 brand=nvidia,driver>=550,driver<551 "
    "brand=quadro,driver>=550,driver<551 brand=quadrortx,driver>=550,driver<551 "
    "brand=nvidiartx,driver>=550,driver<551 brand=vapps,driver>=550,driver<551 "
    "brand=vpc,driver>=550,driver<551 brand=vcs,driver>=550,driver<551 "
    "brand=vws,driver>=550,driver<551 brand=cloudgaming,driver>=550,driver<551 "
    "brand=unknown,driver>=560,driver<561 brand=grid,driver>=560,driver<561 "
    "brand=tesla,driver>=560,driver<561 brand=nvidia,driver>=560,driver<561 "
    "brand=quadro,driver>=560,driver<561 brand=quadrortx,driver>=560,driver<561 "
    "brand=nvidiartx,driver>=560,driver<561 brand=vapps,driver>=560,driver<561 "
    "brand=vpc,driver>=560,driver<561 brand=vcs,driver>=560,driver<561 "
    "brand=vws,driver>=560,driver<561 brand=cloudgaming,driver>=560,driver<561 "
    "brand=unknown,driver>=565,driver<566 brand=grid,driver>=565,driver<566 "
    "brand=tesla,driver>=565,driver<566 brand=nvidia,driver>=565,driver<566 "
    "brand=quadro,driver>=565,driver<566 brand=quadrortx,driver>=565,driver<566 "
    "brand=nvidiartx,driver>=565,driver<566 brand=vapps,driver>=565,driver<566 "
    "brand=vpc,driver>=565,driver<566 brand=vcs,driver>=565,driver<566 "
    "brand=vws,driver>=565,driver<566 brand=cloudgaming,driver>=565,driver<566"
)
# A short exemption list: data-centre GPUs on the R470 and R535 branches.
TESLA_EXEMPT_12_4 = (
    "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=tesla,driver>=535,driver<536"
)


def _image(require: str, cuda_version: str | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/local/nvidia/bin:/usr/bin", "NVIDIA_REQUIRE_CUDA": require}
    if cuda_version:
        env["CUDA_VERSION"] = cuda_version
    return env


def _host(
    driver: str | None, cuda: str | None = None, brand: str | None = None, arch: str | None = None
) -> dict[str, Any]:
    return {"driver_version": driver, "cuda_version": cuda, "brand": brand, "arch": arch}


IMG_11_8 = _image(CUDA_11_8_AMD64, "11.8.0")
IMG_11_8_ARM = _image(CUDA_11_8_ARM64, "11.8.0")
IMG_12_1 = _image(CUDA_12_1_AMD64, "12.1.1")
IMG_12_1_ARM = _image(CUDA_12_1_ARM64, "12.1.1")
IMG_12_4 = _image(CUDA_12_4_1, "12.4.1")
IMG_12_8 = _image(CUDA_12_8_1, "12.8.1")

TESLA_450 = _host("450.80.02", "11.0", "tesla")
GEFORCE_450 = _host("450.80.02", "11.0", "geforce")
GEFORCE_470 = _host("470.82.01", "11.4", "geforce")
TESLA_470 = _host("470.82.01", "11.4", "tesla")
TESLA_520 = _host("520.61.05", "11.8", "tesla")
GEFORCE_525 = _host("525.85.12", "12.0", "geforce")
QUADRO_525 = _host("525.85.12", "12.0", "quadro")
TESLA_530 = _host("530.30.02", "12.1", "tesla")
TESLA_535 = _host("535.104.05", "12.2", "Tesla")  # nvidia-smi prints "Tesla"
GEFORCE_535 = _host("535.104.05", "12.2", "GeForce")
TESLA_545 = _host("545.23.08", "12.3", "tesla")
GEFORCE_545 = _host("545.23.08", "12.3", "geforce")
TESLA_550 = _host("550.54.15", "12.4", "tesla")
GEFORCE_550 = _host("550.54.15", "12.4", "geforce")
GRID_565 = _host("565.57.01", "12.7", "grid")
GEFORCE_570 = _host("570.124.06", "12.8", "geforce")

NONE: tuple[str, ...] = ()
UNMET_11_8, UNMET_12_1 = ("cuda>=11.8",), ("cuda>=12.1",)
UNMET_12_4, UNMET_12_8 = ("cuda>=12.4",), ("cuda>=12.8",)

# (image, host, satisfied, failed, min_driver)
REAL_IMAGES = [
    pytest.param(IMG_12_4, TESLA_550, True, NONE, "550.54.14", id="12.4.1-tesla-550"),
    pytest.param(IMG_12_4, TESLA_535, True, NONE, "550.54.14", id="12.4.1-tesla-535-exempt"),
    pytest.param(IMG_12_4, GEFORCE_535, True, NONE, "550.54.14", id="12.4.1-geforce-535-exempt"),
    pytest.param(IMG_12_4, QUADRO_525, True, NONE, "550.54.14", id="12.4.1-quadro-525-exempt"),
    pytest.param(IMG_12_4, TESLA_530, False, UNMET_12_4, "550.54.14", id="12.4.1-tesla-530"),
    pytest.param(IMG_12_4, TESLA_545, False, UNMET_12_4, "550.54.14", id="12.4.1-tesla-545"),
    pytest.param(IMG_12_4, GEFORCE_545, False, UNMET_12_4, "550.54.14", id="12.4.1-geforce-545"),
    pytest.param(IMG_12_8, GEFORCE_570, True, NONE, "570.26", id="12.8.1-geforce-570"),
    pytest.param(IMG_12_8, TESLA_550, True, NONE, "570.26", id="12.8.1-tesla-550-exempt"),
    pytest.param(IMG_12_8, GRID_565, True, NONE, "570.26", id="12.8.1-grid-565-exempt"),
    pytest.param(IMG_12_8, GEFORCE_550, False, UNMET_12_8, "570.26", id="12.8.1-geforce-550"),
    pytest.param(IMG_12_8, GEFORCE_535, False, UNMET_12_8, "570.26", id="12.8.1-geforce-535"),
    pytest.param(IMG_12_8, TESLA_545, False, UNMET_12_8, "570.26", id="12.8.1-tesla-545"),
    pytest.param(IMG_11_8, TESLA_450, True, NONE, "520.61.05", id="11.8-tesla-450-exempt"),
    pytest.param(IMG_11_8, GEFORCE_450, False, UNMET_11_8, "520.61.05", id="11.8-geforce-450"),
    pytest.param(IMG_11_8, GEFORCE_470, True, NONE, "520.61.05", id="11.8-geforce-470-exempt"),
    pytest.param(IMG_11_8, TESLA_550, True, NONE, "520.61.05", id="11.8-tesla-550"),
    pytest.param(IMG_11_8_ARM, TESLA_470, False, UNMET_11_8, "520.61.05", id="11.8-arm64-470"),
    pytest.param(IMG_12_1, GEFORCE_525, True, NONE, "530.30.02", id="12.1.1-geforce-525-exempt"),
    pytest.param(IMG_12_1, GEFORCE_535, True, NONE, "530.30.02", id="12.1.1-geforce-535"),
    pytest.param(IMG_12_1, TESLA_520, False, UNMET_12_1, "530.30.02", id="12.1.1-tesla-520"),
    pytest.param(IMG_12_1_ARM, GEFORCE_525, False, UNMET_12_1, "530.30.02", id="12.1.1-arm64-525"),
]  # fmt: skip

# On TESLA_EXEMPT_12_4: (host, satisfied, failed)
BRAND_EXEMPTIONS = [
    pytest.param(TESLA_535, True, NONE, id="tesla-535-exempt"),
    pytest.param(GEFORCE_535, False, UNMET_12_4, id="geforce-535-not-exempt"),
    pytest.param(TESLA_545, False, UNMET_12_4, id="tesla-545-not-an-exempt-branch"),
    pytest.param(_host("470.82.01", "11.4", "TESLA"), True, NONE, id="tesla-470-any-case"),
    pytest.param(_host("471.0", "11.4", "tesla"), False, UNMET_12_4, id="tesla-471"),
    pytest.param(_host("536.0", "12.2", "tesla"), False, UNMET_12_4, id="tesla-536"),
    pytest.param(_host("534.99", "12.2", "tesla"), False, UNMET_12_4, id="tesla-534"),
    pytest.param(TESLA_550, True, NONE, id="tesla-550-by-cuda"),
    pytest.param(_host("550.54.15", "12.4"), True, NONE, id="brand-unknown-cuda-enough"),
    pytest.param(_host("535.104.05", "12.2"), False, UNMET_12_4, id="brand-unknown-535"),
]  # fmt: skip


def _evaluate(env: dict[str, str], host: dict[str, Any]) -> RequirementVerdict:
    return evaluate_requirements(env, **host)


@pytest.mark.parametrize(("env", "host", "satisfied", "failed", "min_driver"), REAL_IMAGES)
def test_real_cuda_images(
    env: dict[str, str],
    host: dict[str, Any],
    satisfied: bool,
    failed: tuple[str, ...],
    min_driver: str,
) -> None:
    verdict = _evaluate(env, host)
    assert (verdict.satisfied, verdict.failed) == (satisfied, failed)
    assert verdict.min_driver == min_driver
    assert verdict.constrained
    assert verdict.errors == ()


@pytest.mark.parametrize(("host", "satisfied", "failed"), BRAND_EXEMPTIONS)
def test_brand_exemptions(host: dict[str, Any], satisfied: bool, failed: tuple[str, ...]) -> None:
    verdict = _evaluate(_image(TESLA_EXEMPT_12_4), host)
    assert (verdict.satisfied, verdict.failed) == (satisfied, failed)
    assert verdict.required_cuda == "12.4"
    assert verdict.min_driver == "550.54.14"


def test_exemption_is_explained_in_notes() -> None:
    verdict = _evaluate(_image(TESLA_EXEMPT_12_4), TESLA_535)
    assert any(
        "cuda>=12.4 is unmet" in n and "brand=tesla,driver>=535,driver<536" in n
        for n in verdict.notes
    )


def test_unknown_brand_is_unmet_with_a_note() -> None:
    verdict = _evaluate(_image(TESLA_EXEMPT_12_4), _host("535.104.05", "12.2"))
    assert not verdict.satisfied
    assert any("GPU brand unknown" in n and "brand=tesla" in n for n in verdict.notes)


# (requirement, driver, CUDA reported by nvidia-smi or None, minimum driver, CUDA judged)
@pytest.mark.parametrize(
    ("require", "driver", "cuda", "min_driver", "judged"),
    [
        pytest.param("cuda>=12.4", "545.23.08", "12.3", "550.54.14", "12.3", id="12.4-on-545"),
        pytest.param("cuda>=12.4", "545.23.08", None, "550.54.14", "12.3", id="12.4-545-derived"),
        pytest.param("cuda>=12.8", "550.54.15", "12.4", "570.26", "12.4", id="12.8-on-550"),
        pytest.param("cuda>=12.8", "550.54.15", None, "570.26", "12.4", id="12.8-550-derived"),
        pytest.param("cuda>=13.0", "570.124.06", "12.8", "580.65.06", "12.8", id="13.0-on-570"),
        pytest.param("cuda>=12.7", "560.35.03", "12.6", None, "12.6", id="12.7-not-in-table"),
    ],
)  # fmt: skip
def test_too_old_driver_names_the_minimum(
    require: str, driver: str, cuda: str | None, min_driver: str | None, judged: str
) -> None:
    verdict = evaluate_requirements(_image(require), driver_version=driver, cuda_version=cuda)
    assert not verdict.satisfied
    assert verdict.failed == (require,)
    assert verdict.min_driver == min_driver
    assert verdict.required_cuda == require.removeprefix("cuda>=")
    assert verdict.cuda_version == judged


@pytest.mark.parametrize(
    ("driver", "satisfied", "cuda_version"),
    [
        pytest.param("550.54.14", True, "12.4", id="550.54.14-is-12.4"),
        pytest.param("550.54.15", True, "12.4", id="550.54.15-is-12.4"),
        pytest.param("545.23.08", False, "12.3", id="545-is-12.3"),
        pytest.param("600.10", True, "13.1", id="newer-than-table"),
        pytest.param("300.1", False, None, id="older-than-table"),
    ],
)
def test_cuda_derived_from_driver(driver: str, satisfied: bool, cuda_version: str | None) -> None:
    verdict = evaluate_requirements(_image("cuda>=12.4"), driver_version=driver)
    assert verdict.satisfied is satisfied
    assert verdict.cuda_version == cuda_version
    assert any(driver in n for n in verdict.notes)


def test_reported_cuda_version_wins_over_the_table() -> None:
    # nvidia-smi's CUDA Version is what the hook compares; the table is only a fallback.
    verdict = evaluate_requirements(
        _image("cuda>=12.7"), driver_version="565.57.01", cuda_version="12.7"
    )
    assert verdict.satisfied
    assert verdict.cuda_version == "12.7"
    assert not any("derived" in n for n in verdict.notes)


@pytest.mark.parametrize(
    ("host", "note"),
    [
        pytest.param(_host(None), "CUDA version unknown", id="no-driver"),
        pytest.param(_host("N/A"), "not a version", id="driver-not-a-version"),
        pytest.param(_host("", ""), "CUDA version unknown", id="empty-strings"),
    ],
)
def test_unknown_driver_fails_with_a_note(host: dict[str, Any], note: str) -> None:
    verdict = _evaluate(_image("cuda>=12.0"), host)
    assert not verdict.satisfied
    assert verdict.failed == ("cuda>=12.0",)
    assert verdict.cuda_version is None
    assert any(note in n for n in verdict.notes)


@pytest.mark.parametrize(
    ("value", "disabled"),
    [
        pytest.param("1", True, id="1"),
        pytest.param("true", True, id="true"),
        pytest.param("TRUE", True, id="TRUE"),
        pytest.param("True", True, id="True"),
        pytest.param("t", True, id="t"),
        pytest.param("0", False, id="0"),
        pytest.param("false", False, id="false"),
        pytest.param("", False, id="empty"),
        pytest.param("yes", False, id="yes-is-not-a-go-bool"),
    ],
)
def test_nvidia_disable_require(value: str, disabled: bool) -> None:
    env = {**_image(CUDA_12_8_1, "12.8.1"), "NVIDIA_DISABLE_REQUIRE": value}
    verdict = _evaluate(env, GEFORCE_535)
    assert verdict.satisfied is disabled
    assert verdict.constrained is not disabled
    assert verdict.failed == (() if disabled else ("cuda>=12.8",))
    assert verdict.required_cuda == "12.8"  # still reported, for details
    assert any("NVIDIA_DISABLE_REQUIRE" in n for n in verdict.notes) is (disabled or value == "yes")


def _req(**conditions: str) -> dict[str, str]:
    return {f"NVIDIA_REQUIRE_{name}": value for name, value in conditions.items()}


# On a GeForce, driver 550.54.15, CUDA 12.4, compute capability 8.6: (env, satisfied, failed)
@pytest.mark.parametrize(
    ("env", "satisfied", "failed"),
    [
        pytest.param(_req(CUDA="cuda>=12.0", ARCH="arch>=8.0"), True, NONE, id="all-hold"),
        pytest.param(_req(CUDA="cuda>=12.0", ARCH="arch>=9.0"),
                     False, ("arch>=9.0",), id="one-fails"),
        pytest.param(_req(CUDA="cuda>=12.8", DRIVER="driver>=560"),
                     False, ("cuda>=12.8", "driver>=560"), id="both-fail"),
        pytest.param(_req(A="driver>=500", B="driver<600", C="cuda>=11"),
                     True, NONE, id="three-hold"),
        pytest.param(_req(CUDA="cuda>=12.0", BRAND="brand=tesla brand=nvidia"),
                     False, ("brand=tesla",), id="brand-fails"),
        pytest.param(_req(CUDA="cuda>=12.0", JETPACK="csv-mounts=all"),
                     True, NONE, id="jetpack-mounts-skipped"),
        pytest.param(_req(CUDA="cuda>=12.0", EXTRA="   "), True, NONE, id="blank-variable"),
        pytest.param({"nvidia_require_cuda": "cuda>=99", "X_NVIDIA_REQUIRE_A": "cuda>=99"},
                     True, NONE, id="exact-prefix-only"),
    ],
)  # fmt: skip
def test_several_variables_all_must_hold(
    env: dict[str, str], satisfied: bool, failed: tuple[str, ...]
) -> None:
    verdict = _evaluate(env, _host("550.54.15", "12.4", "geforce", arch="8.6"))
    assert (verdict.satisfied, verdict.failed, verdict.errors) == (satisfied, failed, ())


@pytest.mark.parametrize(
    ("require", "arch", "satisfied"),
    [
        pytest.param("arch>=8.0", "8.0", True, id="ge-equal"),
        pytest.param("arch>=8.0", "8.6", True, id="ge-above"),
        pytest.param("arch>=8.0", "7.5", False, id="ge-below"),
        pytest.param("arch>=8.0", "10.0", True, id="ge-two-digit-major"),
        pytest.param("arch=8.6", "8.6", True, id="eq"),
        pytest.param("arch==8.6", "8.9", False, id="eqeq-differs"),
        pytest.param("arch!=7.0", "7.0", False, id="ne-equal"),
        pytest.param("arch!=7.0", "8.0", True, id="ne-differs"),
        pytest.param("arch<9.0", "8.9", True, id="lt"),
        pytest.param("arch>8.0", "8.0", False, id="gt-equal"),
        pytest.param("arch<=7.5", "7.5", True, id="le-equal"),
        pytest.param("arch>=8.0,arch<9.0", "8.9", True, id="range-inside"),
        pytest.param("arch>=8.0,arch<9.0", "9.0", False, id="range-outside"),
        pytest.param("arch=7.0 arch=8.0 arch=9.0", "8.0", True, id="one-of"),
        pytest.param("arch>=8.0", None, False, id="arch-unknown"),
    ],
)
def test_arch_conditions(require: str, arch: str | None, satisfied: bool) -> None:
    env = {"NVIDIA_REQUIRE_ARCH": require}
    verdict = evaluate_requirements(env, driver_version="550.54.15", arch=arch)
    assert verdict.satisfied is satisfied
    if satisfied:
        assert verdict.failed == ()
    else:
        assert len(verdict.failed) == 1
        assert verdict.failed[0] in require.split(" ")[0].split(",")
    if arch is None:
        assert any("GPU architecture unknown" in n for n in verdict.notes)


@pytest.mark.parametrize(
    ("require", "driver", "satisfied"),
    [
        pytest.param("driver>=535,driver<536", "535.0", True, id="branch-floor"),
        pytest.param("driver>=535,driver<536", "535.288.01", True, id="branch-inside"),
        pytest.param("driver>=535,driver<536", "536.0", False, id="branch-ceiling"),
        pytest.param("driver=550.54.15", "550.54.15", True, id="eq"),
        pytest.param("driver==550.54.15", "550.54.14", False, id="eqeq"),
        pytest.param("driver>550.9", "550.54.15", True, id="numeric-parts"),
        pytest.param("driver<=550.54", "550.54.15", False, id="longer-is-greater"),
        pytest.param("driver!=550", "550.0.0", False, id="trailing-zeros-equal"),
        pytest.param("brand=tesla", "550.54.15", True, id="brand-eq"),
        pytest.param("brand!=tesla", "550.54.15", False, id="brand-ne"),
        pytest.param("brand==TESLA", "550.54.15", True, id="brand-any-case"),
        pytest.param("brand=geforce", "550.54.15", False, id="brand-other"),
        pytest.param("CUDA>=12.0", "550.54.15", True, id="key-any-case"),
    ],
)
def test_operators(require: str, driver: str, satisfied: bool) -> None:
    verdict = evaluate_requirements(
        {"NVIDIA_REQUIRE_X": require}, driver_version=driver, brand="Tesla"
    )
    assert verdict.satisfied is satisfied
    assert verdict.errors == ()


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        pytest.param("cuda>>12", "unknown operator '>>'", id="double-gt"),
        pytest.param("cuda=>12", "unknown operator '=>'", id="reversed-ge"),
        pytest.param("cuda!12", "unknown operator '!'", id="bang"),
        pytest.param("foo", "no comparison operator", id="bare-word"),
        pytest.param("cuda", "no comparison operator", id="bare-key"),
        pytest.param("cuda>=", "no value", id="no-value"),
        pytest.param(">=12.0", "no key", id="no-key"),
        pytest.param("foo>=1", "unknown key 'foo'", id="unknown-key"),
        pytest.param("cuda>=12.x", "not a version", id="bad-version"),
        pytest.param("cuda>=12.", "not a version", id="trailing-dot"),
        pytest.param("driver>=535<536", "not a version", id="two-operators"),
        pytest.param("brand>=tesla", "= or != only", id="brand-ordering"),
        pytest.param("brand=te$la", "not a brand name", id="bad-brand"),
    ],
)
def test_malformed_conditions_are_reported_not_raised(condition: str, reason: str) -> None:
    verdict = evaluate_requirements({"NVIDIA_REQUIRE_CUDA": condition}, driver_version="550.54.15")
    assert not verdict.satisfied
    assert verdict.failed == ()
    assert len(verdict.errors) == 1
    assert "NVIDIA_REQUIRE_CUDA" in verdict.errors[0]
    assert repr(condition) in verdict.errors[0]
    assert reason in verdict.errors[0]


@pytest.mark.parametrize(
    ("require", "satisfied", "failed"),
    [
        pytest.param("cuda>=12.0 foo", True, (), id="after-a-holding-alternative"),
        pytest.param("cuda>=13.0,foo", False, ("cuda>=13.0",), id="after-an-unmet-condition"),
        pytest.param("cuda>=13.0 foo cuda>=12.0", False, (), id="reached-is-an-error"),
    ],
)
def test_malformed_condition_decides_only_when_reached(
    require: str, satisfied: bool, failed: tuple[str, ...]
) -> None:
    # nvidia-container-cli stops at the first alternative that holds and at the first unmet
    # condition of an alternative; only a malformed condition it reaches is an error.
    verdict = evaluate_requirements(
        {"NVIDIA_REQUIRE_CUDA": require}, driver_version="550.54.15", cuda_version="12.4"
    )
    assert (verdict.satisfied, verdict.failed) == (satisfied, failed)
    assert verdict.errors == (
        "NVIDIA_REQUIRE_CUDA: malformed condition 'foo' (no comparison operator)",
    )


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="empty-env"),
        pytest.param(
            {"PATH": "/usr/bin", "NVIDIA_VISIBLE_DEVICES": "all"}, id="pytorch-runtime-like"
        ),
        pytest.param({"NVIDIA_REQUIRE_CUDA": ""}, id="empty-require"),
        pytest.param({"NVIDIA_REQUIRE_CUDA": " , ,"}, id="only-separators"),
        pytest.param({"NVIDIA_DISABLE_REQUIRE": "false"}, id="disable-false-nothing-else"),
    ],
)
def test_no_constraint_passes_with_a_note(env: dict[str, str]) -> None:
    verdict = evaluate_requirements(env, driver_version=None)
    assert verdict.satisfied
    assert not verdict.constrained
    assert verdict.failed == verdict.errors == ()
    assert verdict.required_cuda is verdict.min_driver is None
    assert any("nothing to check" in n for n in verdict.notes)


def _cuda_image(version: str, **require: str) -> dict[str, str]:
    return {"CUDA_VERSION": version, **_req(**require)}


# Legacy images (CUDA_VERSION, no NVIDIA_REQUIRE_CUDA) are held to cuda>=MAJOR.MINOR, with no
# exemptions. (env, driver, brand, satisfied, failed, required_cuda)
@pytest.mark.parametrize(
    ("env", "driver", "brand", "satisfied", "failed", "required"),
    [
        pytest.param(_cuda_image("12.4.1"), "550.54.15", None,
                     True, NONE, "12.4", id="legacy-holds"),
        pytest.param(_cuda_image("12.4.1"), "535.104.05", "tesla",
                     False, UNMET_12_4, "12.4", id="legacy-no-exemption"),
        pytest.param(_cuda_image("12.8.1", CUDA=""), "550.54.15", None,
                     False, UNMET_12_8, "12.8", id="empty-require"),
        pytest.param(_cuda_image("v11.8"), "520.61.05", None, True, NONE, "11.8", id="v-prefix"),
        pytest.param(_cuda_image("12"), "525.60.13", None, True, NONE, "12.0", id="major-only"),
        pytest.param(_cuda_image("12.4.1", CUDA=TESLA_EXEMPT_12_4), "535.104.05", "tesla",
                     True, NONE, "12.4", id="require-wins"),
        pytest.param(_cuda_image("12.6.0", CUDA="driver>=500"), "550.54.15", None,
                     True, NONE, "12.6", id="required-from-cuda-version"),
    ],
)  # fmt: skip
def test_cuda_version_only_images(
    env: dict[str, str],
    driver: str,
    brand: str | None,
    satisfied: bool,
    failed: tuple[str, ...],
    required: str,
) -> None:
    verdict = evaluate_requirements(env, driver_version=driver, brand=brand)
    assert (verdict.satisfied, verdict.failed, verdict.required_cuda) == (
        satisfied,
        failed,
        required,
    )
    assert verdict.constrained


def test_unreadable_cuda_version_is_an_error() -> None:
    verdict = evaluate_requirements({"CUDA_VERSION": "twelve"}, driver_version="550.54.15")
    assert not verdict.satisfied
    assert verdict.constrained
    assert verdict.required_cuda is None
    assert "CUDA_VERSION='twelve'" in verdict.errors[0]


@pytest.mark.parametrize(
    ("require", "required"),
    [
        pytest.param("cuda>=12.4 brand=tesla,driver>=535,driver<536", "12.4", id="first-condition"),
        pytest.param("brand=tesla,cuda>=11.8", "11.8", id="inside-an-alternative"),
        pytest.param("cuda=12.2", "12.2", id="equality"),
        pytest.param("cuda<13.0", None, id="upper-bound-only"),
        pytest.param("cuda>>12 cuda>=12.1", "12.1", id="skips-malformed"),
    ],
)
def test_required_cuda(require: str, required: str | None) -> None:
    verdict = evaluate_requirements({"NVIDIA_REQUIRE_CUDA": require}, driver_version="590.44.01")
    assert verdict.required_cuda == required


@pytest.mark.parametrize(
    "require",
    [
        pytest.param("  cuda>=12.0   brand=tesla,driver>=535  ", id="extra-spaces"),
        pytest.param("cuda>=12.0,", id="trailing-comma"),
        pytest.param("cuda>=12.0\tbrand=tesla", id="tab"),
        pytest.param(",,cuda>=12.0,,driver>=500", id="empty-conditions"),
    ],
)
def test_separators_are_tolerated(require: str) -> None:
    verdict = evaluate_requirements({"NVIDIA_REQUIRE_CUDA": require}, driver_version="550.54.15")
    assert verdict.satisfied
    assert verdict.errors == ()


def test_verdict_is_frozen() -> None:
    verdict = evaluate_requirements({}, driver_version="550.54.15")
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.satisfied = False  # type: ignore[misc]


def test_image_cuda_facts() -> None:
    env = {
        "PATH": "/usr/bin",
        "CUDA_VERSION": "12.4.1",
        "NVIDIA_REQUIRE_CUDA": CUDA_12_4_1,
        "NVIDIA_REQUIRE_ARCH": "arch>=8.0",
        "NVIDIA_DISABLE_REQUIRE": "false",
        "NVIDIA_VISIBLE_DEVICES": "all",
    }
    assert image_cuda_facts(env) == {
        "CUDA_VERSION": "12.4.1",
        "NVIDIA_DISABLE_REQUIRE": "false",
        "NVIDIA_REQUIRE_ARCH": "arch>=8.0",
        "NVIDIA_REQUIRE_CUDA": CUDA_12_4_1,
    }
    assert image_cuda_facts({"PATH": "/usr/bin"}) == {}
