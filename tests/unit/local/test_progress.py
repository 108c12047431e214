"""Runs read from API objects into views (pure)."""

from __future__ import annotations

from proctor.local.live import final_table
from proctor.local.progress import experiment_view, pyramid_view
from proctor.local.summary import as_expected
from tests.unit.local.conftest import DETACHED_LAYERS, experiment, pyramid


def test_the_demo_runs_read_as_they_ended(demo_objects):
    healthy, detached, restart = (experiment_view(e, p) for e, p in demo_objects)
    assert (healthy.phase, healthy.succeeded, healthy.finished) == ("Succeeded", True, True)
    assert healthy.training is not None
    assert (healthy.training.step, healthy.training.max_steps) == (300, 300)
    assert [layer.phase for layer in healthy.layers] == ["Passed"] * 4

    assert detached.failed_layer is not None
    assert detached.failed_layer.layer == "L1"
    assert detached.training is None
    assert [layer.phase for layer in detached.layers] == ["Passed", "Failed", "Pending", "Pending"]
    assert detached.reason == "PyramidFailed"

    assert not restart.succeeded
    [anomaly] = restart.anomalies
    assert (anomaly.kind, anomaly.step) == ("NonFiniteLoss", 410)
    assert anomaly.bundle_uri
    assert anomaly.bundle_uri.startswith("file:///b/")
    assert restart.reason == "StoppedOnAnomaly"


def test_a_new_experiment_without_status_is_pending_with_every_layer_pending():
    view = experiment_view(experiment("fresh", {}), None)
    assert view.phase == "Pending"
    assert not view.finished
    assert [layer.phase for layer in view.layers] == ["Pending"] * 4


def test_a_guardrail_is_the_headline_while_it_holds():
    blocked = {
        "type": "Blocked",
        "status": "True",
        "reason": "CitationMissing",
        "message": "cite what inspired it",
        "lastTransitionTime": "2026-11-22T08:00:00Z",
    }
    view = experiment_view(experiment("x", {"phase": "Pending", "conditions": [blocked]}), None)
    assert view.blocked
    assert not view.finished
    assert (view.reason, view.message) == ("CitationMissing", "cite what inspired it")


def test_a_standalone_pyramid_that_passed_reads_as_succeeded():
    obj = pyramid("alone", [])
    obj["status"]["phase"] = "Passed"
    assert pyramid_view(obj).succeeded
    failed = pyramid_view(pyramid("bad", DETACHED_LAYERS))
    assert failed.finished
    assert not failed.succeeded


def test_unschedulable_pods_stall_a_run_that_keeps_its_phase():
    """Stuck (the local run may end on it) but not a guardrail block: the phase stays Training,
    and an expectation of Blocked does not match it."""
    unschedulable = {
        "type": "Blocked",
        "status": "True",
        "reason": "Unschedulable",
        "message": "0/1 nodes have nvidia.com/gpu",
        "lastTransitionTime": "2026-11-22T08:00:00Z",
    }
    status = {"phase": "Training", "conditions": [unschedulable]}
    view = experiment_view(experiment("x", status), None)
    assert view.blocked
    assert view.phase == "Training"
    assert not as_expected(view, {"x": "Blocked"})
    [phase_column] = [c for c in final_table([view]).columns if c.header == "phase"]
    assert [str(cell) for cell in phase_column.cells] == ["Training"]
