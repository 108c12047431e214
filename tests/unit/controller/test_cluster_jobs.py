"""The emulated cluster's podFailurePolicy and GPU scheduling, on Proctor's training Job."""

from __future__ import annotations

from datetime import UTC, datetime

from proctor.api.v1alpha1 import Experiment
from proctor.cluster.jobs import reconcile_job
from proctor.cluster.podrunner import PodRunner
from proctor.cluster.store import Store
from proctor.controller.settings import ControllerSettings
from proctor.controller.training_jobs import training_job
from tests.unit.controller.objects import experiment

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def _job(backoff_limit: int | None = None) -> dict:
    """Proctor's own training Job, as the API server stores it."""
    obj = experiment("exp")
    job = training_job(Experiment.model_validate(obj), obj, ControllerSettings())
    job["metadata"]["uid"] = "job-uid"
    if backoff_limit is not None:
        job["spec"]["backoffLimit"] = backoff_limit
    return job


def _failed_pod(name: str, exit_code: int, conditions: list[dict] | None = None) -> dict:
    return {
        "metadata": {"name": name, "namespace": "ml"},
        "status": {
            "phase": "Failed",
            "conditions": conditions or [],
            "containerStatuses": [
                {"name": "trainer", "state": {"terminated": {"exitCode": exit_code}}}
            ],
        },
    }


def _failed(status: dict) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Failed"), None)


def test_bad_config_fails_the_job_at_once_by_the_pod_failure_policy():
    decision = reconcile_job(_job(), [_failed_pod("exp-train-a", 2)], NOW)
    failed = _failed(decision.status)
    assert failed is not None
    assert failed["reason"] == "PodFailurePolicy"
    assert "exit code 2" in failed["message"]
    assert "ml/exp-train-a" in failed["message"]
    assert decision.create == [], "a retry cannot help"


def test_a_plain_crash_counts_toward_the_backoff_limit_and_is_retried():
    decision = reconcile_job(_job(), [_failed_pod("exp-train-a", 1)], NOW)
    assert _failed(decision.status) is None
    assert len(decision.create) == 1
    exhausted = reconcile_job(_job(backoff_limit=0), [_failed_pod("exp-train-a", 1)], NOW)
    assert _failed(exhausted.status)["reason"] == "BackoffLimitExceeded"


def test_a_disrupted_pod_does_not_count_toward_the_backoff_limit():
    disrupted = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
    pod = _failed_pod("exp-train-a", 143, [disrupted])
    decision = reconcile_job(_job(backoff_limit=0), [pod], NOW)
    assert _failed(decision.status) is None
    [replacement] = decision.create
    assert replacement["metadata"]["labels"]["job-name"] == "exp-train"


def test_the_first_matching_rule_decides():
    # exit code 2 with a DisruptionTarget: the FailJob rule comes first
    disrupted = {"type": "DisruptionTarget", "status": "True"}
    decision = reconcile_job(_job(), [_failed_pod("exp-train-a", 2, [disrupted])], NOW)
    assert _failed(decision.status)["reason"] == "PodFailurePolicy"


def test_exit_codes_of_other_containers_do_not_match_the_trainers_rule():
    pod = _failed_pod("exp-train-a", 1)
    pod["status"]["containerStatuses"].append(
        {"name": "watchdog", "state": {"terminated": {"exitCode": 2}}}
    )
    decision = reconcile_job(_job(), [pod], NOW)
    assert _failed(decision.status) is None


def _runner(tmp_path, **extended) -> PodRunner:
    return PodRunner(Store(), tmp_path, extended_resources=extended)


def _gpu_pod(gpus: int) -> dict:
    resources = {"limits": {"nvidia.com/gpu": str(gpus), "cpu": "2", "memory": "4Gi"}}
    return {"spec": {"containers": [{"name": "trainer", "resources": resources}]}}


def test_a_pod_asking_for_more_gpus_than_the_node_has_is_unschedulable(tmp_path):
    runner = _runner(tmp_path, **{"nvidia.com/gpu": 1})
    assert runner._shortage(_gpu_pod(1)) is None
    assert runner._shortage(_gpu_pod(2)) == (
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    )
    assert _runner(tmp_path)._shortage(_gpu_pod(1)) is not None, "no GPUs on a plain node"


def test_cpu_memory_and_hugepages_never_block_scheduling(tmp_path):
    pod = {
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "resources": {
                        "requests": {"cpu": "64", "memory": "1Ti", "hugepages-2Mi": "1Gi"}
                    },
                }
            ]
        }
    }
    assert _runner(tmp_path)._shortage(pod) is None


def test_gpus_of_every_container_add_up(tmp_path):
    pod = _gpu_pod(1)
    pod["spec"]["initContainers"] = [
        {"name": "sidecar", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    ]
    assert _runner(tmp_path, **{"nvidia.com/gpu": 1})._shortage(pod) is not None
    assert _runner(tmp_path, **{"nvidia.com/gpu": 2})._shortage(pod) is None
