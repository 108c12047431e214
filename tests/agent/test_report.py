"""The status report an agent reads: built from stored objects by a pure function."""

from __future__ import annotations

import copy

import pytest

from proctor.agent.errors import AgentError
from proctor.agent.report import build_report

EXPERIMENT = {
    "apiVersion": "proctor.dev/v1alpha1",
    "kind": "Experiment",
    "metadata": {"name": "wide", "namespace": "lab", "labels": {"proctor.dev/study": "digits"}},
    "spec": {
        "hypothesis": {
            "statement": "A wider MLP learns faster.",
            "expectedOutcome": "accuracy above 0.96 at step 300",
            "inspiredBy": [{"kind": "Experiment", "ref": "base"}],
            "independentVariable": "code.config.hidden",
            "controls": ["seed 0"],
        },
        "training": {"budget": {"maxSteps": 300, "maxDuration": "10m"}},
    },
}
TIME = "2026-11-22T08:00:00Z"


def experiment(status: dict | None = None, **spec) -> dict:
    obj = copy.deepcopy(EXPERIMENT)
    obj["spec"].update(spec)
    if status is not None:
        obj["status"] = status
    return obj


def condition(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": TIME,
    }


FAILED_PYRAMID = {
    "metadata": {"name": "wide"},
    "status": {
        "phase": "Failed",
        "layers": [
            {
                "layer": "L0",
                "phase": "Passed",
                "checks": [{"name": "throughput", "verdict": "Passed"}],
            },
            {
                "layer": "L1",
                "phase": "Failed",
                "attempts": 1,
                "message": "1 of 6 checks failed",
                "checks": [
                    {"name": "loss_finite", "verdict": "Passed", "message": "finite"},
                    {
                        "name": "parameters_update",
                        "verdict": "Failed",
                        "value": 12,
                        "threshold": 0,
                        "message": "12 of 40 parameters never changed: is the output detached?",
                    },
                    {"name": "dead_relu", "verdict": "Warning", "value": 0.4, "message": "many"},
                ],
            },
        ],
    },
}


def test_an_experiment_the_operator_has_not_seen_reads_as_pending_with_its_hypothesis():
    report = build_report(experiment(), None)
    assert report.phase == "Pending"
    assert report.study == "digits"
    assert report.hypothesis is not None
    assert report.hypothesis.independent_variable == "code.config.hidden"
    assert report.training is not None
    assert report.training.max_steps == 300
    assert report.pyramid is None
    assert "proctor wait wide" in report.next


def test_a_failed_pyramid_lists_each_failed_check_with_its_numbers_and_fix():
    status = {
        "phase": "Failed",
        "validation": {"pyramidName": "wide", "phase": "Failed", "layer": "L1"},
        "conditions": [condition("Validated", "False", "ChecksFailed", "L1 failed")],
    }
    report = build_report(experiment(status), FAILED_PYRAMID)
    assert report.pyramid is not None
    layers = {layer.layer: layer for layer in report.pyramid.layers}
    assert layers["L0"].phase == "Passed"
    assert (layers["L1"].passed_checks, layers["L1"].total_checks) == (1, 3)
    [failed] = layers["L1"].failed_checks
    assert (failed.name, failed.value, failed.threshold) == ("parameters_update", 12, 0)
    assert "detached" in failed.message
    assert [w.name for w in layers["L1"].warnings] == ["dead_relu"]
    assert "L1 parameters_update" in report.next
    assert "conclude" in report.next
    assert report.as_json()["pyramid"]["layers"][1]["failedChecks"][0]["name"] == (
        "parameters_update"
    )


def test_a_succeeded_run_asks_for_its_conclusion_and_points_at_its_bundles():
    status = {
        "phase": "Succeeded",
        "training": {
            "step": 300,
            "loss": 0.05,
            "lastEval": {"step": 300, "metrics": {"accuracy": 0.97}},
        },
        "anomalyCount": 1,
        "anomalies": [
            {
                "kind": "LossSpike",
                "severity": "Warning",
                "time": TIME,
                "step": 120,
                "message": "loss 3.1 is 9 deviations above the median",
                "bundleURI": "file:///b/lab/wide/20261122T080000Z-LossSpike-abcdef",
            }
        ],
    }
    report = build_report(experiment(status), None)
    assert report.training is not None
    assert report.training.last_eval is not None
    assert report.training.last_eval.metrics == {"accuracy": 0.97}
    assert report.anomalies[0].bundle_uri.endswith("LossSpike-abcdef")
    assert report.as_json()["anomalies"][0]["bundleURI"].endswith("LossSpike-abcdef")
    assert "proctor conclude wide" in report.next
    assert "proctor bundles wide" in report.next


def test_blocked_repeats_the_guardrails_message():
    message = "conclude base first: patch spec.conclusion with verdict, evidence, learnings"
    status = {
        "phase": "Blocked",
        "conditions": [condition("Blocked", "True", "EarlierExperimentNotConcluded", message)],
    }
    report = build_report(experiment(status), None)
    assert report.next == f"blocked: {message}"


def test_a_concluded_experiment_shows_its_conclusion_and_asks_for_the_next_hypothesis():
    conclusion = {"verdict": "effective", "evidence": "0.97 vs 0.95", "learnings": "go wider"}
    report = build_report(experiment({"phase": "Concluded"}, conclusion=conclusion), None)
    assert report.conclusion is not None
    assert report.conclusion.verdict == "effective"
    assert "inspiredBy" in report.next


def test_a_skipped_pyramid_keeps_its_reason_on_record():
    report = build_report(
        experiment({"phase": "Training"}, validation={"skip": {"reason": "same code as base"}}),
        None,
    )
    assert report.pyramid is not None
    assert report.pyramid.skipped == "same code as base"


def test_a_status_this_version_cannot_read_is_an_error_that_says_so():
    with pytest.raises(AgentError, match="status this proctor cannot read"):
        build_report(experiment({"phase": "Exploded"}), None)
