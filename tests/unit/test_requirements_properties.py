"""Properties of the evaluator and of version comparison, over generated inputs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_llem.domain.cuda_table import compare_versions, cuda_for_driver, min_driver_for_cuda
from pytest_llem.domain.requirements import (
    RequirementVerdict,
    evaluate_requirements,
    image_cuda_facts,
)

# No example database, so the working tree stays clean.
quiet = settings(database=None, deadline=None)

numbers = st.integers(min_value=0, max_value=999).map(str)
versions = st.lists(numbers, min_size=1, max_size=4).map(".".join)
version_ish = st.one_of(
    versions,
    st.text(alphabet="0123456789.", max_size=12),
    st.text(alphabet="0123456789.vrcN/A -+x", max_size=12),
    st.text(max_size=12),
)
# Conditions in the DSL's vocabulary, well- and ill-formed alike.
conditions = st.builds(
    "{}{}{}".format,
    st.sampled_from(["cuda", "driver", "arch", "brand", "CUDA", "foo", ""]),
    st.sampled_from([">=", "<=", "=", "==", "!=", "<", ">", ">>", "=>", "!", ""]),
    st.one_of(versions, st.sampled_from(["tesla", "geforce", "", "12.x", "te$la"])),
)
alternatives = st.lists(conditions, max_size=4).map(",".join)
dsl_values = st.lists(alternatives, max_size=5).map(" ".join)
values = st.one_of(dsl_values, st.text(max_size=40))
names = st.one_of(
    st.sampled_from(
        ["NVIDIA_REQUIRE_CUDA", "NVIDIA_REQUIRE_ARCH", "NVIDIA_REQUIRE_JETPACK", "CUDA_VERSION"]
    ),
    st.sampled_from(["NVIDIA_DISABLE_REQUIRE", "PATH"]),
    st.text(max_size=20).map("NVIDIA_REQUIRE_{}".format),
    st.text(max_size=20),
)
envs = st.dictionaries(names, values, max_size=5)
facts = st.one_of(st.none(), version_ish)


@quiet
@given(env=envs, driver=facts, cuda=facts, brand=st.one_of(st.none(), st.text()), arch=facts)
def test_evaluate_never_raises(
    env: dict[str, str], driver: str | None, cuda: str | None, brand: str | None, arch: str | None
) -> None:
    verdict = evaluate_requirements(
        env, driver_version=driver, cuda_version=cuda, brand=brand, arch=arch
    )
    assert isinstance(verdict, RequirementVerdict)
    if verdict.satisfied:
        assert verdict.failed == ()
    if not verdict.constrained:
        assert verdict.satisfied
    if verdict.failed:
        assert not verdict.satisfied
    if verdict.required_cuda is None:
        assert verdict.min_driver is None
    assert set(image_cuda_facts(env)) <= set(env)


@quiet
@given(env=envs, driver=facts)
def test_disable_require_always_passes(env: dict[str, str], driver: str | None) -> None:
    verdict = evaluate_requirements(
        {**env, "NVIDIA_DISABLE_REQUIRE": "true"}, driver_version=driver
    )
    assert verdict.satisfied
    assert not verdict.constrained


@quiet
@given(a=version_ish, b=version_ish)
def test_compare_versions_is_antisymmetric(a: str, b: str) -> None:
    assert compare_versions(a, b) in (-1, 0, 1)
    assert compare_versions(a, b) == -compare_versions(b, a)
    assert compare_versions(a, a) == 0


@quiet
@given(a=version_ish, b=version_ish, c=version_ish)
def test_compare_versions_is_transitive(a: str, b: str, c: str) -> None:
    ordered = sorted([a, b, c], key=lambda v: [compare_versions(v, w) for w in (a, b, c)])
    x, y, z = ordered
    if compare_versions(x, y) <= 0 and compare_versions(y, z) <= 0:
        assert compare_versions(x, z) <= 0


@quiet
@given(a=versions, b=versions)
def test_compare_versions_matches_zero_padded_tuples(a: str, b: str) -> None:
    left, right = [int(p) for p in a.split(".")], [int(p) for p in b.split(".")]
    width = max(len(left), len(right))
    left += [0] * (width - len(left))
    right += [0] * (width - len(right))
    assert compare_versions(a, b) == (left > right) - (left < right)


@quiet
@given(driver=versions, floor=versions)
def test_driver_condition_agrees_with_compare_versions(driver: str, floor: str) -> None:
    verdict = evaluate_requirements({"NVIDIA_REQUIRE_X": f"driver>={floor}"}, driver_version=driver)
    assert verdict.satisfied is (compare_versions(driver, floor) >= 0)
    assert verdict.failed == (() if verdict.satisfied else (f"driver>={floor}",))


@quiet
@given(driver=versions)
def test_cuda_for_driver_is_consistent_with_min_driver(driver: str) -> None:
    cuda = cuda_for_driver(driver)
    if cuda is not None:
        minimum = min_driver_for_cuda(cuda)
        assert minimum is not None
        assert compare_versions(driver, minimum) >= 0


@quiet
@given(cuda=version_ish, driver=version_ish)
def test_table_lookups_never_raise(cuda: str, driver: str) -> None:
    min_driver_for_cuda(cuda)
    cuda_for_driver(driver)
