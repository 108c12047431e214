"""The `proctor` command as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import subprocess

from tests.support.crd_schema import REPO
from tests.support.tools import tool


def _proctor(*args: str, cwd=REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("proctor"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_help_lists_the_commands():
    result = _proctor("--help")
    assert result.returncode == 0
    assert "crds" in result.stdout
    assert "validate" in result.stdout


def test_crds_check_passes_on_the_committed_tree():
    result = _proctor("crds", "generate", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_crds_generate_writes_crds_and_chart_templates_then_check_passes(tmp_path):
    first = _proctor("crds", "generate", "--root", str(tmp_path))
    assert first.returncode == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.yaml"))
    assert written == [
        "charts/proctor/templates/crds/experiments.proctor.dev.yaml",
        "charts/proctor/templates/crds/validationpyramids.proctor.dev.yaml",
        "crds/experiments.proctor.dev.yaml",
        "crds/validationpyramids.proctor.dev.yaml",
    ]
    assert _proctor("crds", "generate", "--check", "--root", str(tmp_path)).returncode == 0


def test_crds_check_fails_on_a_hand_edit_and_says_how_to_fix_it(tmp_path):
    _proctor("crds", "generate", "--root", str(tmp_path))
    target = tmp_path / "crds/experiments.proctor.dev.yaml"
    target.write_text(target.read_text().replace("shortNames:\n    - exp", "shortNames:\n    - ex"))
    result = _proctor("crds", "generate", "--check", "--root", str(tmp_path))
    assert result.returncode == 1
    assert "-    - ex" in result.stdout
    assert "+    - exp" in result.stdout
    assert "make generate" in result.stderr


def test_validate_accepts_the_examples_and_names_the_field_of_a_bad_one():
    good = _proctor("validate", "examples/digits/experiment.yaml")
    assert good.returncode == 0
    assert "valid (Experiment/digits-mlp-baseline)" in good.stdout
    bad = _proctor("validate", "examples/invalid/negative-budget.yaml")
    assert bad.returncode == 1
    assert "spec.training.budget.maxSteps" in bad.stderr


def test_validate_reports_broken_yaml_without_a_traceback(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    result = _proctor("validate", str(broken))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "broken.yaml" in result.stderr


def test_validate_reports_a_missing_file_and_binary_input(tmp_path):
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"\x80\x02\xff\xfe\x00binary")
    result = _proctor("validate", str(tmp_path / "absent.yaml"), str(binary))
    assert result.returncode == 1
    assert "absent.yaml" in result.stderr
    assert "model.pt" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_checks_every_file_even_after_a_bad_one():
    result = _proctor("validate", "examples/invalid/bad-enum.yaml", "examples/digits/pyramid.yaml")
    assert result.returncode == 1
    assert "valid (ValidationPyramid/digits-mlp-check)" in result.stdout


def test_crds_generate_finds_the_repository_from_a_subdirectory():
    result = _proctor("crds", "generate", "--check", cwd=REPO / "examples" / "digits")
    assert result.returncode == 0, result.stderr


def test_crds_generate_outside_a_checkout_refuses_instead_of_writing(tmp_path):
    result = _proctor("crds", "generate", cwd=tmp_path)
    assert result.returncode == 2
    assert "pass --root" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_no_command_is_a_usage_error():
    result = _proctor()
    assert result.returncode == 2
    assert "proctor --help" in result.stderr
