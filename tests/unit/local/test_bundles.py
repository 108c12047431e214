"""Recovery bundles read back and rendered for a person, from the files the watchdog writes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from proctor.api.bundle import Bundle, BundleExperiment, BundleFinding, MetricPoint, RecoveryStage
from proctor.api.v1alpha1.experiment import AnomalyKind, Hypothesis, Severity
from proctor.local.bundles import BundleError, bundle_json, load_bundle, render_bundle
from proctor.watchdog.bundles import bundle_files

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def _write(root: Path, directory: str, step: int = 410) -> Path:
    where = root / "default" / "digits-lr-restart" / directory
    bundle = Bundle(
        created=NOW,
        uri=where.as_uri() + "/",
        experiment=BundleExperiment(
            namespace="default",
            name="digits-lr-restart",
            hypothesis=Hypothesis.model_validate(
                {
                    "statement": "A warm restart helps.",
                    "expectedOutcome": "accuracy above the baseline",
                    "inspiredBy": [{"kind": "Paper", "ref": "SGDR"}],
                    "independentVariable": "code.config.restart_factor",
                    "controls": ["seed 0"],
                }
            ),
        ),
        finding=BundleFinding(
            kind=AnomalyKind.NON_FINITE_LOSS,
            severity=Severity.CRITICAL,
            message=f"The loss became nan at step {step}.",
            key="NonFiniteLoss",
            time=NOW,
            step=step,
            evidence={"first_bad_step": step},
        ),
        recovery_stage=RecoveryStage.ADJUST_HYPERPARAMETERS,
        metrics=[MetricPoint(time=NOW, step=s, loss=1.0 / s) for s in range(1, 20)],
    )
    where.mkdir(parents=True)
    for name, data in bundle_files(bundle).items():
        (where / name).write_bytes(data)
    return where


def _text(renderable) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


def test_a_bundle_renders_its_summary_finding_plot_and_prompt(tmp_path):
    where = _write(tmp_path, "20261122T080000Z-NonFiniteLoss-a1")
    loaded = load_bundle(str(where))
    text = _text(render_bundle(loaded))
    assert "default/digits-lr-restart" in text
    assert "NonFiniteLoss (Critical) at step 410" in text
    assert "AdjustHyperparameters" in text
    assert "metrics.png" in text  # the plot's path is named
    assert loaded.plot == str(where / "metrics.png")
    assert Path(loaded.plot).read_bytes().startswith(b"\x89PNG")
    assert "recovery.md" in text
    assert "What happened" in text  # the prompt itself, rendered


def test_a_bundle_is_found_by_uri_by_its_json_and_by_a_directory_above_it(tmp_path):
    _write(tmp_path, "20261122T080000Z-NonFiniteLoss-a1", step=100)
    newest = _write(tmp_path, "20261122T090000Z-NonFiniteLoss-b2", step=200)
    assert load_bundle(newest.as_uri() + "/").bundle.finding.step == 200
    assert load_bundle(str(newest / "bundle.json")).bundle.finding.step == 200
    # Above: the newest by its time-stamped name, whatever the directories above it are called.
    assert load_bundle(str(tmp_path)).bundle.finding.step == 200
    assert load_bundle(tmp_path.as_uri()).location == newest.as_uri() + "/"


def test_the_json_form_is_the_record_and_where_its_parts_are(tmp_path):
    where = _write(tmp_path, "20261122T080000Z-NonFiniteLoss-a1")
    record = json.loads(json.dumps(bundle_json(load_bundle(str(where)))))
    assert record["bundle"]["schemaVersion"] == "proctor.dev/bundle/v1"
    assert record["bundle"]["finding"]["kind"] == "NonFiniteLoss"
    assert record["plot"].endswith("metrics.png")
    assert "What happened" in record["prompt"]


def test_no_bundle_there_says_what_to_give(tmp_path):
    with pytest.raises(BundleError, match=r"no bundle\.json there or below it"):
        load_bundle(str(tmp_path))


def test_an_unknown_schema_version_is_refused_not_misread(tmp_path):
    where = _write(tmp_path, "20261122T080000Z-NonFiniteLoss-a1")
    record = json.loads((where / "bundle.json").read_text())
    record["schemaVersion"] = "proctor.dev/bundle/v9"
    (where / "bundle.json").write_text(json.dumps(record))
    with pytest.raises(BundleError, match="v9"):
        load_bundle(str(where))
