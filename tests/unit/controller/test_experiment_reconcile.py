"""The Experiment's state machine, from what it owns: pyramid, training Job, anomalies, metrics."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import timedelta

from proctor.api.v1alpha1 import Anomaly, LayerName
from proctor.controller.experiment_reconcile import MAX_ANOMALIES, Observed, reconcile_experiment
from proctor.controller.observed import PodFacts
from proctor.controller.pyramid_reconcile import reconcile_pyramid
from proctor.controller.settings import ControllerSettings
from tests.unit.controller.objects import (
    NOW,
    experiment,
    layer_job,
    layer_message,
    passed_layer,
    training_job,
    training_pod,
)

SETTINGS = ControllerSettings(default_bundle_uri="s3://bundles")
ALL_LAYERS = (LayerName.L0, LayerName.L1, LayerName.L2, LayerName.L3)


def _condition(status: dict, kind: str) -> dict:
    [condition] = [c for c in status["conditions"] if c["type"] == kind]
    return condition


def _kinds(plan) -> list[str]:
    return [obj["kind"] for obj in plan.create]


def _with_status(obj: dict, status: dict) -> dict:
    return {**copy.deepcopy(obj), "status": json.loads(json.dumps(status))}


def _owned_pyramid(obj: dict, passed: bool = True) -> dict:
    """The pyramid the Experiment created, with the status its own reconciler gives it."""
    [created] = reconcile_experiment(obj, Observed(), NOW, SETTINGS).create
    created = {**created, "metadata": {**created["metadata"], "uid": "uid-vp", "generation": 1}}
    if passed:
        jobs = [passed_layer(layer, pyramid_name="exp") for layer in ALL_LAYERS]
    else:
        pod = PodFacts(
            name="exp-l0-1-a",
            phase="Failed",
            exit_code=1,
            termination_message=layer_message(
                LayerName.L0, passed=False, check="data_wait_ratio", text="the loader starves"
            ),
        )
        jobs = [layer_job(LayerName.L0, pyramid_name="exp", state="failed", pod=pod)]
    status = reconcile_pyramid(created, jobs, NOW, SETTINGS).status
    assert status["phase"] == ("Passed" if passed else "Failed")
    return _with_status(created, status)


def _training(obj: dict) -> dict:
    """The Experiment once training has started (status written back)."""
    plan = reconcile_experiment(obj, Observed(pyramid=_owned_pyramid(obj)), NOW, SETTINGS)
    return _with_status(obj, plan.status)


def _seen(obj: dict, **observed) -> Observed:
    """What a training Experiment owns: its passed pyramid, and whatever else is given."""
    return Observed(pyramid=_owned_pyramid(obj), **observed)


def _bundle(minute: int, kind: str) -> str:
    """Where the watchdog writes the bundle of a `kind` finding at NOW + `minute`."""
    stamp = (NOW + timedelta(minutes=minute)).strftime("%Y%m%dT%H%M%SZ")
    return f"s3://bundles/ml/exp/{stamp}-{kind}-3f9a1c"


def _anomaly(kind: str = "LossSpike", minute: int = 0, severity: str = "Warning") -> Anomaly:
    return Anomaly.model_validate(
        {
            "kind": kind,
            "severity": severity,
            "time": (NOW + timedelta(minutes=minute)).isoformat(),
            "step": 10 + minute,
            "message": f"{kind} at minute {minute}",
            "bundleURI": _bundle(minute, kind),
        }
    )


def test_a_new_experiment_creates_its_pyramid_and_validates():
    obj = experiment("exp")
    plan = reconcile_experiment(obj, Observed(), NOW, SETTINGS)
    [pyramid] = plan.create
    assert (pyramid["kind"], pyramid["metadata"]["name"]) == ("ValidationPyramid", "exp")
    [owner] = pyramid["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Experiment", "uid-exp", True)
    assert pyramid["spec"]["code"]["entrypoint"] == "digits_mlp:setup"
    resources = pyramid["spec"]["resources"]
    assert (resources["cpu"], resources["memory"], resources["gpus"]) == ("2", "8Gi", 1)
    assert plan.status["phase"] == "Validating"
    assert plan.status["validation"]["pyramidName"] == "exp"
    assert _condition(plan.status, "Validated")["status"] == "Unknown"
    assert [e.reason for e in plan.events] == ["Validating"]


def test_validation_resources_override_the_training_ones():
    obj = experiment(validation={"resources": {"cpu": "1", "memory": "1Gi"}})
    [pyramid] = reconcile_experiment(obj, Observed(), NOW, SETTINGS).create
    assert pyramid["spec"]["resources"]["cpu"] == "1"
    assert pyramid["spec"]["resources"].get("gpus", 0) == 0


def test_a_running_pyramid_keeps_the_experiment_validating():
    obj = experiment("exp")
    [created] = reconcile_experiment(obj, Observed(), NOW, SETTINGS).create
    created["metadata"].update(uid="uid-vp", generation=1)
    running = reconcile_pyramid(created, [], NOW, SETTINGS).status
    plan = reconcile_experiment(
        obj, Observed(pyramid=_with_status(created, running)), NOW, SETTINGS
    )
    assert plan.create == []
    assert plan.status["phase"] == "Validating"
    assert plan.status["validation"]["layer"] == "L0"


def test_a_passed_pyramid_starts_training_with_the_watchdog_identity():
    obj = experiment("exp")
    plan = reconcile_experiment(obj, Observed(pyramid=_owned_pyramid(obj)), NOW, SETTINGS)
    assert _kinds(plan) == ["ServiceAccount", "Role", "RoleBinding", "Secret", "Job"]
    assert plan.create[-1]["metadata"]["name"] == "exp-train"
    assert plan.status["phase"] == "Training"
    assert plan.status["training"]["jobName"] == "exp-train"
    validated = _condition(plan.status, "Validated")
    assert (validated["status"], validated["reason"]) == ("True", "PyramidPassed")
    assert plan.status["validation"]["phase"] == "Passed"
    assert plan.status["validation"]["passedChecks"] == 8


def test_a_multi_node_run_also_gets_its_headless_service():
    obj = experiment("exp", training={"budget": {"maxSteps": 9}, "nodes": 2})
    plan = reconcile_experiment(obj, Observed(pyramid=_owned_pyramid(obj)), NOW, SETTINGS)
    assert _kinds(plan)[-2:] == ["Service", "Job"]


def test_without_the_watchdog_no_access_objects_are_created():
    obj = experiment("exp", watchdog={"enabled": False})
    plan = reconcile_experiment(obj, Observed(pyramid=_owned_pyramid(obj)), NOW, SETTINGS)
    assert _kinds(plan) == ["Job"]


def test_a_queue_name_makes_the_experiment_queued_until_admitted():
    obj = experiment("exp", training={"budget": {"maxSteps": 9}, "queueName": "gpus"})
    plan = reconcile_experiment(obj, Observed(pyramid=_owned_pyramid(obj)), NOW, SETTINGS)
    assert plan.status["phase"] == "Queued"
    assert _condition(plan.status, "Trained")["reason"] == "Queued"
    after = _with_status(obj, plan.status)
    suspended = training_job(suspended=True)
    waiting = reconcile_experiment(after, _seen(obj, job=suspended), NOW, SETTINGS)
    assert waiting.status["phase"] == "Queued"
    assert "gpus" in _condition(waiting.status, "Trained")["message"]
    admitted = reconcile_experiment(after, _seen(obj, job=training_job()), NOW, SETTINGS)
    assert admitted.status["phase"] == "Training"


def test_a_failed_pyramid_fails_the_experiment_and_never_trains():
    obj = experiment("exp")
    plan = reconcile_experiment(obj, Observed(pyramid=_owned_pyramid(obj, False)), NOW, SETTINGS)
    assert "Job" not in _kinds(plan)
    assert plan.create == []
    assert plan.status["phase"] == "Failed"
    validated = _condition(plan.status, "Validated")
    assert (validated["status"], validated["reason"]) == ("False", "PyramidFailed")
    assert "the loader starves" in validated["message"]
    assert "L0" in validated["message"]
    assert _condition(plan.status, "Concluded")["reason"] == "AwaitingConclusion"
    assert [(e.reason, e.type) for e in plan.events] == [("Failed", "Warning")]


def test_skipping_validation_goes_straight_to_training_with_the_reason_on_record():
    obj = experiment("exp", validation={"skip": {"reason": "same code as exp-1, which passed"}})
    plan = reconcile_experiment(obj, Observed(), NOW, SETTINGS)
    assert "ValidationPyramid" not in _kinds(plan)
    assert _kinds(plan)[-1] == "Job"
    assert plan.status["phase"] == "Training"
    validated = _condition(plan.status, "Validated")
    assert (validated["status"], validated["reason"]) == ("True", "ValidationSkipped")
    assert "same code as exp-1" in validated["message"]


def test_a_completed_job_succeeds_at_the_step_it_reports():
    obj = _training(experiment("exp"))
    outcome = {"exitCode": 0, "outcome": "done", "step": 150, "resumedFrom": None, "message": ""}
    job = training_job("complete", training_pod(outcome))
    plan = reconcile_experiment(obj, _seen(obj, job=job), NOW, SETTINGS)
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["training"]["step"] == 150
    trained = _condition(plan.status, "Trained")
    assert (trained["status"], trained["reason"]) == ("True", "TrainingSucceeded")
    assert "150" in trained["message"]
    assert plan.status["training"]["completionTime"] == "2026-03-04T12:00:00Z"
    assert plan.delete == []


def test_a_job_completed_after_an_eviction_reports_the_step_of_the_pod_that_finished():
    obj = _training(experiment("exp"))
    evicted = training_pod("killed", phase="Failed", exit_code=137, reason="Evicted")
    done = training_pod({"exitCode": 0, "outcome": "done", "step": 300})
    job = dataclasses.replace(training_job("complete"), pods=(evicted, done))
    plan = reconcile_experiment(obj, _seen(obj, job=job), NOW, SETTINGS)
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["training"]["step"] == 300


def test_a_spent_time_budget_is_a_success_with_reason_budget_exceeded():
    obj = _training(experiment("exp"))
    outcome = {"exitCode": 3, "outcome": "budget_exhausted", "step": 90, "message": "10m"}
    pod = training_pod(outcome, phase="Failed", exit_code=3)
    job = training_job("failed", pod, failed_reason="PodFailurePolicy")
    plan = reconcile_experiment(obj, _seen(obj, job=job), NOW, SETTINGS)
    assert plan.status["phase"] == "Succeeded"
    trained = _condition(plan.status, "Trained")
    assert (trained["status"], trained["reason"]) == ("True", "BudgetExceeded")
    assert plan.status["training"]["step"] == 90


def test_a_crash_fails_training_with_the_trainers_message():
    obj = _training(experiment("exp"))
    outcome = {"exitCode": 1, "outcome": "crashed", "step": 12, "message": "loss became nan"}
    pod = training_pod(outcome, phase="Failed", exit_code=1)
    job = training_job("failed", pod, failed_reason="BackoffLimitExceeded")
    plan = reconcile_experiment(obj, _seen(obj, job=job), NOW, SETTINGS)
    assert plan.status["phase"] == "Failed"
    trained = _condition(plan.status, "Trained")
    assert (trained["status"], trained["reason"]) == ("False", "TrainingFailed")
    assert "loss became nan" in trained["message"]
    assert [(e.reason, e.type) for e in plan.events] == [("Failed", "Warning")]


def test_a_conclusion_on_an_ended_experiment_concludes_it():
    obj = _training(experiment("exp"))
    job = training_job("complete", training_pod({"exitCode": 0, "outcome": "done", "step": 300}))
    ended = reconcile_experiment(obj, _seen(obj, job=job), NOW, SETTINGS)
    assert ended.status["phase"] == "Succeeded"
    concluded_obj = _with_status(obj, ended.status)
    concluded_obj["spec"]["conclusion"] = {
        "verdict": "effective",
        "evidence": "eval accuracy 0.97 at 300 steps",
        "learnings": "256 units suffice",
    }
    plan = reconcile_experiment(concluded_obj, _seen(obj, job=job), NOW, SETTINGS)
    assert plan.status["phase"] == "Concluded"
    concluded = _condition(plan.status, "Concluded")
    assert (concluded["status"], concluded["reason"]) == ("True", "ConclusionWritten")
    assert "effective: eval accuracy 0.97" in concluded["message"]
    assert plan.create == []
    assert [e.reason for e in plan.events] == ["Concluded"]


def test_anomalies_are_merged_once_each_and_counted():
    obj = _training(experiment("exp"))
    job = training_job()
    first = [_anomaly("LossSpike", 0), _anomaly("Stall", 1)]
    plan = reconcile_experiment(obj, _seen(obj, job=job, anomalies=first), NOW, SETTINGS)
    assert [a["kind"] for a in plan.status["anomalies"]] == ["LossSpike", "Stall"]
    assert plan.status["anomalyCount"] == 2
    detected = _condition(plan.status, "AnomalyDetected")
    assert detected["reason"] == "AnomalyReported"
    assert _bundle(1, "Stall") in detected["message"]
    assert [e.reason for e in plan.events] == ["AnomalyRecorded", "AnomalyRecorded"]
    again = reconcile_experiment(
        _with_status(obj, plan.status),
        _seen(obj, job=job, anomalies=[*first, _anomaly("LossSpike", 5)]),
        NOW,
        SETTINGS,
    )
    assert again.status["anomalyCount"] == 3, "the two known ones are not counted twice"
    assert [a["kind"] for a in again.status["anomalies"]] == ["LossSpike", "Stall", "LossSpike"]
    assert again.status["phase"] == "Training", "Notify only records"
    assert again.delete == []


def test_a_bundle_uri_outside_the_experiment_s_prefix_is_left_out_of_status():
    obj = _training(experiment("exp"))
    job = training_job()
    own = _anomaly("LossSpike", 0)
    elsewhere = [
        "s3://bundles/other-ns/exp/20261122T051200Z-Stall-3f9a1c",  # another namespace
        "s3://bundles/ml/other/20261122T051200Z-Stall-3f9a1c",  # another experiment
        "s3://attacker/ml/exp/20261122T051200Z-Stall-3f9a1c",  # another store
        "s3://bundles/ml/exp/../../other-ns/exp/20261122T051200Z-Stall-3f9a1c",
        "file:///etc/ml/exp/20261122T051200Z-Stall-3f9a1c",
    ]
    foreign = [
        _anomaly("Stall", minute + 1).model_copy(update={"bundle_uri": uri})
        for minute, uri in enumerate(elsewhere)
    ]
    plan = reconcile_experiment(obj, _seen(obj, job=job, anomalies=[own, *foreign]), NOW, SETTINGS)
    recorded = plan.status["anomalies"]
    assert recorded[0]["bundleURI"] == own.bundle_uri
    assert [a.get("bundleURI") for a in recorded[1:]] == [None] * len(elsewhere)
    assert all("left out: not under s3://bundles/ml/exp" in a["message"] for a in recorded[1:])
    assert plan.status["anomalyCount"] == 1 + len(elsewhere), "still counted, only not linked"
    detected = _condition(plan.status, "AnomalyDetected")
    assert "left out" in detected["message"], "the condition does not link it either"


def test_only_the_latest_anomalies_are_kept_and_old_ones_are_not_counted_again():
    obj = _training(experiment("exp"))
    job = training_job()
    seen = [_anomaly("LossSpike", minute) for minute in range(MAX_ANOMALIES + 5)]
    plan = reconcile_experiment(obj, _seen(obj, job=job, anomalies=seen), NOW, SETTINGS)
    kept = plan.status["anomalies"]
    assert len(kept) == MAX_ANOMALIES
    assert kept[0]["message"] == "LossSpike at minute 5"
    assert plan.status["anomalyCount"] == MAX_ANOMALIES + 5
    # the watchdog's Events are all still there on the next pass
    again = reconcile_experiment(
        _with_status(obj, plan.status), _seen(obj, job=job, anomalies=seen), NOW, SETTINGS
    )
    assert again.status == plan.status
    assert again.events == []


def test_a_critical_anomaly_stops_training_when_asked():
    obj = _training(experiment("exp", recovery={"onAnomaly": "StopTraining"}))
    job = training_job()
    warning = [_anomaly("LossSpike", 0)]
    noted = reconcile_experiment(obj, _seen(obj, job=job, anomalies=warning), NOW, SETTINGS)
    assert noted.status["phase"] == "Training", "a warning does not stop the run"
    assert noted.delete == []
    critical = [*warning, _anomaly("NonFiniteLoss", 1, "Critical")]
    plan = reconcile_experiment(obj, _seen(obj, job=job, anomalies=critical), NOW, SETTINGS)
    assert plan.status["phase"] == "Failed"
    trained = _condition(plan.status, "Trained")
    assert (trained["status"], trained["reason"]) == ("False", "StoppedOnAnomaly")
    assert "NonFiniteLoss" in trained["message"]
    assert _bundle(1, "NonFiniteLoss") in trained["message"]
    assert plan.delete == [("batch/v1", "Job", "exp-train")]
    # Progress is read at a bounded rate; the run reached at least the anomaly's step.
    assert plan.status["training"]["step"] == 11


def test_a_stopped_run_reports_the_step_its_trainer_reached_before_exiting():
    obj = _training(experiment("exp", recovery={"onAnomaly": "StopTraining"}))
    # The trainer exited at its NaN; the Job has not noticed yet (a retry pending).
    exited = training_job(
        "active", training_pod({"outcome": "crashed", "exitCode": 1, "step": 410}, "Failed")
    )
    critical = [_anomaly("NonFiniteLoss", 1, "Critical")]
    plan = reconcile_experiment(obj, _seen(obj, job=exited, anomalies=critical), NOW, SETTINGS)
    assert plan.status["phase"] == "Failed"
    assert plan.status["training"]["step"] == 410


def test_a_critical_anomaly_under_notify_only_records():
    obj = _training(experiment("exp"))
    critical = [_anomaly("NonFiniteLoss", 1, "Critical")]
    plan = reconcile_experiment(
        obj, _seen(obj, job=training_job(), anomalies=critical), NOW, SETTINGS
    )
    assert plan.status["phase"] == "Training"
    assert plan.delete == []


def test_progress_is_merged_with_the_checkpoint_under_the_experiment():
    obj = _training(experiment("exp"))
    sample = {
        "step": 60,
        "loss": 0.42,
        "samples_per_second": 512.0,
        "checkpoint_step": 50,
        "checkpoint_time": NOW,
        "eval": {"accuracy": 0.91},
    }
    plan = reconcile_experiment(obj, _seen(obj, job=training_job(), progress=sample), NOW, SETTINGS)
    training = plan.status["training"]
    assert (training["step"], training["loss"], training["samplesPerSecond"]) == (60, 0.42, 512.0)
    assert training["lastCheckpoint"] == {
        "uri": "s3://ckpts/runs/ml/exp/step-000000050/",
        "step": 50,
        "time": "2026-03-04T12:00:00Z",
    }
    assert training["lastEval"] == {"step": 60, "metrics": {"accuracy": 0.91}}


def test_progress_never_moves_backwards():
    obj = _training(experiment("exp"))
    ahead = {
        "step": 80,
        "loss": 0.3,
        "checkpoint_step": 50,
        "checkpoint_time": NOW,
        "eval": {"accuracy": 0.93},
    }
    first = reconcile_experiment(obj, _seen(obj, job=training_job(), progress=ahead), NOW, SETTINGS)
    # a stale scrape (or a restarted trainer resuming from an older checkpoint)
    behind = {
        "step": 40,
        "loss": 0.9,
        "checkpoint_step": 0,
        "checkpoint_time": NOW - timedelta(hours=1),
        "eval": {"accuracy": 0.5},
    }
    plan = reconcile_experiment(
        _with_status(obj, first.status),
        _seen(obj, job=training_job(), progress=behind),
        NOW,
        SETTINGS,
    )
    training = plan.status["training"]
    assert (training["step"], training["loss"]) == (80, 0.3)
    assert training["lastCheckpoint"]["step"] == 50
    assert training["lastEval"] == {"step": 80, "metrics": {"accuracy": 0.93}}
    assert plan.status == first.status


def test_an_ended_experiment_stops_a_job_still_running():
    obj = _training(experiment("exp"))
    failed = reconcile_experiment(
        obj,
        _seen(
            obj,
            job=training_job(
                "failed",
                training_pod({"outcome": "crashed", "message": "x"}, "Failed", exit_code=1),
            ),
        ),
        NOW,
        SETTINGS,
    )
    assert failed.status["phase"] == "Failed"
    again = reconcile_experiment(
        _with_status(obj, failed.status), _seen(obj, job=training_job()), NOW, SETTINGS
    )
    assert again.status["phase"] == "Failed"
    assert again.delete == [("batch/v1", "Job", "exp-train")]
    assert again.create == []


def test_a_pyramid_of_the_same_name_that_is_not_its_own_blocks_instead_of_being_adopted():
    obj = experiment("exp")
    taken = "a ValidationPyramid named exp exists and does not belong to this Experiment"
    plan = reconcile_experiment(obj, Observed(name_taken=taken), NOW, SETTINGS)
    assert plan.create == [], "neither created again nor adopted"
    assert plan.status["phase"] == "Pending"
    blocked = _condition(plan.status, "Blocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "NameTaken")
    freed = reconcile_experiment(_with_status(obj, plan.status), Observed(), NOW, SETTINGS)
    assert _kinds(freed) == ["ValidationPyramid"]
    assert _condition(freed.status, "Blocked")["status"] == "False"


def test_an_unschedulable_training_pod_blocks_the_experiment_until_it_is_scheduled():
    obj = _training(experiment("exp"))
    stuck = training_pod(
        "",
        phase="Pending",
        unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    )
    plan = reconcile_experiment(obj, _seen(obj, job=training_job("active", stuck)), NOW, SETTINGS)
    assert plan.status["phase"] == "Training"
    blocked = _condition(plan.status, "Blocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in blocked["message"]
    running = training_pod("", phase="Running")
    later = reconcile_experiment(
        _with_status(obj, plan.status),
        _seen(obj, job=training_job("active", running)),
        NOW,
        SETTINGS,
    )
    assert _condition(later.status, "Blocked")["status"] == "False"


def test_secrets_in_a_crashed_trainers_output_stay_out_of_status():
    obj = _training(experiment("exp"))
    crash = training_pod(
        "Traceback ... AWS_SECRET_ACCESS_KEY=abc123secretvalue", phase="Failed", exit_code=1
    )
    job = training_job("failed", crash, failed_reason="BackoffLimitExceeded")
    plan = reconcile_experiment(obj, _seen(obj, job=job), NOW, SETTINGS)
    assert plan.status["phase"] == "Failed"
    assert "abc123secretvalue" not in json.dumps(plan.status)
    assert "abc123secretvalue" not in json.dumps([e.message for e in plan.events])
