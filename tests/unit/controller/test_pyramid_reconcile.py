"""The ValidationPyramid's decisions from its layer Jobs: order, verdicts, retries, idempotence."""

from __future__ import annotations

import json
from datetime import timedelta

from proctor.api.v1alpha1 import LayerName
from proctor.controller.observed import PodFacts
from proctor.controller.pyramid_reconcile import reconcile_pyramid, retry_delay
from proctor.controller.settings import ControllerSettings
from tests.unit.controller.objects import (
    NOW,
    layer_job,
    layer_message,
    passed_layer,
    pyramid,
)

L0, L1, L2, L3 = LayerName.L0, LayerName.L1, LayerName.L2, LayerName.L3
SETTINGS = ControllerSettings(retry_base_seconds=10, retry_max_seconds=300)


def _layer(status: dict, layer: LayerName) -> dict:
    [entry] = [e for e in status["layers"] if e["layer"] == layer.value]
    return entry


def _condition(status: dict, kind: str) -> dict:
    [condition] = [c for c in status["conditions"] if c["type"] == kind]
    return condition


def _created(plan) -> list[str]:
    return [obj["metadata"]["name"] for obj in plan.create]


def _with_status(obj: dict, status: dict) -> dict:
    """The pyramid after the status write, as the next reconcile reads it."""
    return {**obj, "status": json.loads(json.dumps(status))}


def _oom(name: str = "digits-l0-1-a") -> PodFacts:
    return PodFacts(name=name, phase="Failed", exit_code=137, terminated_reason="OOMKilled")


def test_a_new_pyramid_starts_l0_attempt_one():
    plan = reconcile_pyramid(pyramid(), [], NOW, SETTINGS)
    assert _created(plan) == ["digits-l0-1"]
    assert plan.create[0]["kind"] == "Job"
    assert plan.status["phase"] == "Running"
    assert plan.status["currentLayer"] == "L0"
    entry = _layer(plan.status, L0)
    assert (entry["phase"], entry["attempts"], entry["jobName"]) == ("Running", 1, "digits-l0-1")
    assert [e["layer"] for e in plan.status["layers"]] == ["L0"], "later layers wait"
    assert _condition(plan.status, "Ready")["status"] == "Unknown"
    assert plan.status["observedGeneration"] == 1
    assert [e.reason for e in plan.events] == ["LayerStarted"]


def test_a_passed_layer_starts_the_next_one_in_the_same_plan():
    plan = reconcile_pyramid(pyramid(), [passed_layer(L0)], NOW, SETTINGS)
    assert _layer(plan.status, L0)["phase"] == "Passed"
    assert _layer(plan.status, L0)["completionTime"] == "2026-03-04T12:00:00Z"
    assert _condition(plan.status, "L0Passed")["status"] == "True"
    assert _condition(plan.status, "L0Passed")["reason"] == "ChecksPassed"
    assert _created(plan) == ["digits-l1-1"]
    assert _layer(plan.status, L1)["phase"] == "Running"
    assert plan.status["currentLayer"] == "L1"
    assert plan.status["passedChecks"] == plan.status["totalChecks"] == 2
    assert {e.reason for e in plan.events} == {"LayerPassed", "LayerStarted"}


def test_failed_checks_fail_the_pyramid_and_nothing_more_runs():
    teaching = "12 of 40 parameters never changed: is the output detached?"
    pod = PodFacts(
        name="digits-l1-1-a",
        phase="Failed",
        exit_code=1,
        termination_message=layer_message(L1, passed=False, check="params_updated", text=teaching),
    )
    jobs = [passed_layer(L0), layer_job(L1, state="failed", pod=pod, finished=NOW)]
    plan = reconcile_pyramid(pyramid(), jobs, NOW, SETTINGS)
    assert plan.create == []
    assert plan.requeue_after is None
    assert plan.status["phase"] == "Failed"
    entry = _layer(plan.status, L1)
    assert entry["phase"] == "Failed"
    [failed] = [c for c in entry["checks"] if c["verdict"] == "Failed"]
    assert failed["name"] == "params_updated"
    assert failed["message"] == teaching
    ready = _condition(plan.status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PyramidFailed")
    assert teaching in ready["message"]
    assert _condition(plan.status, "L1Passed")["reason"] == "ChecksFailed"
    assert [e["layer"] for e in plan.status["layers"]] == ["L0", "L1"]
    warnings = [e for e in plan.events if e.type == "Warning"]
    assert {e.reason for e in warnings} == {"LayerFailed", "PyramidFailed"}


def test_a_crash_without_a_result_is_a_code_failure_with_its_output():
    pod = PodFacts(
        name="digits-l0-1-a",
        phase="Failed",
        exit_code=1,
        termination_message="Traceback ...\nModuleNotFoundError: No module named 'digits_mlp'",
    )
    plan = reconcile_pyramid(
        pyramid(), [layer_job(L0, state="failed", pod=pod, finished=NOW)], NOW, SETTINGS
    )
    assert plan.create == []
    entry = _layer(plan.status, L0)
    assert entry["phase"] == "Failed"
    assert "No module named 'digits_mlp'" in entry["message"]
    assert "proctor pyramid run --layer L0" in entry["message"]
    assert _condition(plan.status, "L0Passed")["reason"] == "ChecksFailed"


def test_a_layer_past_its_deadline_times_out_for_good():
    obj = pyramid(layers={"l0": {"timeout": "90s"}})
    job = layer_job(L0, state="failed", failed_reason="DeadlineExceeded", finished=NOW)
    plan = reconcile_pyramid(obj, [job], NOW, SETTINGS)
    assert plan.create == []
    assert plan.status["phase"] == "Failed"
    assert _condition(plan.status, "L0Passed")["reason"] == "LayerTimedOut"
    assert "90s" in _layer(plan.status, L0)["message"]
    assert "spec.layers.l0.timeout" in _layer(plan.status, L0)["message"]


def test_infrastructure_trouble_is_retried_only_once_the_backoff_is_due():
    obj = pyramid()
    failed = layer_job(L0, state="failed", pod=_oom(), finished=NOW)
    delay = retry_delay(1, SETTINGS)
    assert delay == 10

    waiting = reconcile_pyramid(obj, [failed], NOW + timedelta(seconds=4), SETTINGS)
    assert waiting.create == []
    assert waiting.requeue_after == 6
    entry = _layer(waiting.status, L0)
    assert entry["phase"] == "Running"
    assert "OOMKilled" in entry["message"]
    assert _condition(waiting.status, "L0Passed")["reason"] == "InfrastructureRetrying"
    assert waiting.status["phase"] == "Running"

    due = reconcile_pyramid(obj, [failed], NOW + timedelta(seconds=delay), SETTINGS)
    assert _created(due) == ["digits-l0-2"]
    assert due.create[0]["metadata"]["labels"]["proctor.dev/attempt"] == "2"
    assert _layer(due.status, L0)["attempts"] == 2
    assert _layer(due.status, L0)["jobName"] == "digits-l0-2"
    assert "InfrastructureRetrying" in [e.reason for e in due.events]


def test_the_backoff_doubles_and_is_capped():
    assert [retry_delay(a, SETTINGS) for a in (1, 2, 3)] == [10, 20, 40]
    assert retry_delay(10, SETTINGS) == 300


def test_infrastructure_failures_beyond_the_retry_limit_fail_the_pyramid_naming_the_cause():
    obj = pyramid(maxInfrastructureRetries=1)
    jobs = [
        layer_job(L0, 1, state="failed", pod=_oom(), finished=NOW),
        layer_job(L0, 2, state="failed", pod=_oom("digits-l0-2-b"), finished=NOW),
    ]
    plan = reconcile_pyramid(obj, jobs, NOW + timedelta(hours=1), SETTINGS)
    assert plan.create == []
    assert plan.requeue_after is None
    assert plan.status["phase"] == "Failed"
    assert _condition(plan.status, "L0Passed")["reason"] == "InfrastructureFailed"
    message = _layer(plan.status, L0)["message"]
    assert "2 times" in message
    assert "OOMKilled" in message
    assert "OOMKilled" in _condition(plan.status, "Ready")["message"]


def test_the_last_allowed_retry_is_still_made():
    obj = pyramid(maxInfrastructureRetries=1)
    jobs = [layer_job(L0, 1, state="failed", pod=_oom(), finished=NOW)]
    plan = reconcile_pyramid(obj, jobs, NOW + timedelta(hours=1), SETTINGS)
    assert _created(plan) == ["digits-l0-2"]
    assert plan.status["phase"] == "Running"


def test_disabled_layers_are_skipped_and_the_rest_passing_passes_the_pyramid():
    obj = pyramid(layers={"l2": {"enabled": False}})
    jobs = [passed_layer(L0), passed_layer(L1), passed_layer(L3)]
    plan = reconcile_pyramid(obj, jobs, NOW, SETTINGS)
    assert plan.create == []
    assert [e["phase"] for e in plan.status["layers"]] == ["Passed", "Passed", "Skipped", "Passed"]
    assert plan.status["phase"] == "Passed"
    ready = _condition(plan.status, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "PyramidPassed")
    assert "L2 skipped" in ready["message"]
    skipped = _condition(plan.status, "L2Passed")
    assert (skipped["status"], skipped["reason"]) == ("Unknown", "LayerSkipped")
    assert "PyramidPassed" in [e.reason for e in plan.events]


def test_a_disabled_layer_is_stepped_over_to_start_the_next():
    obj = pyramid(layers={"l1": {"enabled": False}})
    plan = reconcile_pyramid(obj, [passed_layer(L0)], NOW, SETTINGS)
    assert _created(plan) == ["digits-l2-1"]
    assert _layer(plan.status, L1)["phase"] == "Skipped"


def test_an_unschedulable_pod_shows_in_the_layer_message():
    pod = PodFacts(
        name="digits-l0-1-a",
        phase="Pending",
        unschedulable="0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
    )
    plan = reconcile_pyramid(pyramid(), [layer_job(L0, pod=pod)], NOW, SETTINGS)
    assert plan.create == []
    assert "Insufficient nvidia.com/gpu" in _layer(plan.status, L0)["message"]
    assert "Insufficient nvidia.com/gpu" in _condition(plan.status, "Ready")["message"]


def test_reconciling_again_with_the_status_written_back_changes_nothing():
    obj = pyramid()
    first = reconcile_pyramid(obj, [], NOW, SETTINGS)
    assert _created(first) == ["digits-l0-1"]
    running = [layer_job(L0)]
    second = reconcile_pyramid(_with_status(obj, first.status), running, NOW, SETTINGS)
    assert second.create == []
    later = NOW + timedelta(minutes=3)
    third = reconcile_pyramid(_with_status(obj, second.status), running, later, SETTINGS)
    assert third.create == []
    assert third.status == second.status, "nothing changed, so nothing is rewritten"
    assert third.events == []


def test_a_finished_pyramid_reconciled_again_stays_as_it_was():
    jobs = [passed_layer(L0), passed_layer(L1), passed_layer(L2), passed_layer(L3)]
    first = reconcile_pyramid(pyramid(), jobs, NOW, SETTINGS)
    assert first.status["phase"] == "Passed"
    again = reconcile_pyramid(
        _with_status(pyramid(), first.status), jobs, NOW + timedelta(hours=1), SETTINGS
    )
    assert again.status == first.status
    assert again.create == []
    assert again.events == []


def test_a_recorded_outcome_is_final_even_when_its_job_is_gone():
    jobs = [passed_layer(L0), layer_job(L1)]
    first = reconcile_pyramid(pyramid(), jobs, NOW, SETTINGS)
    # the L0 Job was deleted by hand (or garbage collected): L0 stays Passed, no rerun
    again = reconcile_pyramid(_with_status(pyramid(), first.status), [layer_job(L1)], NOW, SETTINGS)
    assert again.create == []
    assert _layer(again.status, L0)["phase"] == "Passed"


def test_a_running_layer_whose_job_vanished_is_recreated_under_the_same_name():
    first = reconcile_pyramid(pyramid(), [], NOW, SETTINGS)
    again = reconcile_pyramid(_with_status(pyramid(), first.status), [], NOW, SETTINGS)
    assert _created(again) == ["digits-l0-1"], "the same name, so a duplicate is refused (409)"
    assert _layer(again.status, L0)["attempts"] == 1
    assert again.events == [], "no second LayerStarted"


def test_the_events_follow_every_transition():
    obj = pyramid()
    started = reconcile_pyramid(obj, [], NOW, SETTINGS)
    assert [(e.reason, e.type) for e in started.events] == [("LayerStarted", "Normal")]
    assert "digits-l0-1" in started.events[0].message
    jobs = [passed_layer(L0), passed_layer(L1), passed_layer(L2), passed_layer(L3)]
    done = reconcile_pyramid(_with_status(obj, started.status), jobs, NOW, SETTINGS)
    reasons = [e.reason for e in done.events]
    assert reasons.count("LayerPassed") == 4
    assert reasons[-1] == "PyramidPassed"


def test_an_image_that_cannot_be_pulled_ends_the_attempt_and_starts_the_next():
    stuck = PodFacts(
        name="digits-l0-1-a",
        phase="Pending",
        waiting_reason="ImagePullBackOff",
        waiting_message='Back-off pulling image "registry.example/digits:1.0"',
    )
    obj = pyramid()
    plan = reconcile_pyramid(obj, [layer_job(LayerName.L0, pod=stuck)], NOW, SETTINGS)
    assert ("batch/v1", "Job", "digits-l0-1") in plan.delete
    assert _created(plan) == ["digits-l0-2"]
    entry = _layer(plan.status, LayerName.L0)
    assert entry["attempts"] == 2
    assert "ImagePullBackOff" in entry["message"]


def test_an_invalid_image_name_fails_the_layer_without_retrying():
    bad = PodFacts(name="digits-l0-1-a", phase="Pending", waiting_reason="InvalidImageName")
    plan = reconcile_pyramid(pyramid(), [layer_job(LayerName.L0, pod=bad)], NOW, SETTINGS)
    assert _created(plan) == []
    assert plan.status["phase"] == "Failed"
    assert "spec.code.image" in _layer(plan.status, LayerName.L0)["message"]
