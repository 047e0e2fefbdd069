"""The first look at a study file: only images that will run, never a crash."""

from __future__ import annotations

from pathlib import Path

from pytest_llem.hint import StudyHint, read_hint


def test_images_of_used_backends_only(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(
        "runners: {vllm: 'docker:vllm/vllm-openai:v0.6.3', tensorrt: 'docker:unused/x:1'}\n"
        "docker: {probe_timeout_s: 12, images: {pytorch: 'pt/img:2'}}\n"
        "execution: {skip_preflight: false}\n"
        "experiments:\n  - {model: m, backend: vllm}\n  - {model: g, backend: pytorch}\n"
        "  - {model: h, backend: vllm, image: 'own/img:3'}\n"
    )
    hint = read_hint(str(study))
    assert hint.images == ("own/img:3", "vllm/vllm-openai:v0.6.3", "pt/img:2")
    assert (hint.skip_preflight, hint.probe_timeout_s) == (False, 12.0)


def test_skip_and_hostile_or_broken_input(tmp_path: Path) -> None:
    study = tmp_path / "s.yaml"
    study.write_text(
        "docker: {skip_preflight: true}\nrunners: {vllm: 'docker:$(touch /tmp/x)'}\n"
        "experiments: [{model: m, backend: vllm}]\n"
    )
    hint = read_hint(str(study))
    assert hint.skip_preflight and hint.images == ()
    study.write_text("experiments: [\n")
    assert read_hint(str(study)) == StudyHint()
    assert read_hint(str(tmp_path / "absent.yaml")) == StudyHint()
