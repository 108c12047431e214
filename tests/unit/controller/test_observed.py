"""Reading Jobs and pods back: how they ended, and whether the machine or the code is to blame."""

from __future__ import annotations

from datetime import UTC, datetime

from proctor.api.v1alpha1 import LayerName
from proctor.controller.observed import PodFacts, job_facts, pod_facts
from tests.unit.controller.objects import layer_message


def _pod(
    name: str = "p",
    phase: str = "Failed",
    *,
    terminated: dict | None = None,
    waiting: dict | None = None,
    conditions: list[dict] | None = None,
    container: str = "layer",
    owner: str = "job-uid",
    created: str = "2026-03-04T12:00:00Z",
    **status,
) -> dict:
    state = {"terminated": terminated} if terminated else {"waiting": waiting} if waiting else {}
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "ownerReferences": [{"uid": owner}],
        },
        "status": {
            "phase": phase,
            "conditions": conditions or [],
            "containerStatuses": [
                {"name": "watchdog", "state": {"terminated": {"exitCode": 0}}},
                {"name": container, "state": state},
            ],
            **status,
        },
    }


def test_an_oom_killed_container_is_infrastructure_and_says_what_to_raise():
    facts = pod_facts(_pod(terminated={"exitCode": 137, "reason": "OOMKilled"}), "layer")
    assert facts.exit_code == 137
    assert facts.terminated_reason == "OOMKilled"
    cause = facts.infrastructure_cause
    assert cause is not None
    assert "OOMKilled" in cause
    assert "resources.memory" in cause


def test_an_evicted_pod_is_infrastructure_with_the_kubelet_message():
    pod = _pod(reason="Evicted", message="The node was low on resource: memory.")
    cause = pod_facts(pod, "layer").infrastructure_cause
    assert cause is not None
    assert "evicted" in cause
    assert "low on resource" in cause


def test_a_disruption_target_condition_is_infrastructure():
    condition = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    facts = pod_facts(_pod(conditions=[condition], terminated={"exitCode": 143}), "layer")
    assert facts.disrupted == "PreemptionByScheduler"
    cause = facts.infrastructure_cause
    assert cause is not None
    assert "PreemptionByScheduler" in cause


def test_a_disruption_target_that_is_false_does_not_count():
    condition = {"type": "DisruptionTarget", "status": "False", "reason": "Whatever"}
    facts = pod_facts(_pod(conditions=[condition], terminated={"exitCode": 1}), "layer")
    assert facts.disrupted == ""
    assert facts.infrastructure_cause is None


def test_a_sigkill_without_a_result_is_infrastructure_but_with_a_result_it_is_not():
    killed = pod_facts(_pod(terminated={"exitCode": 137, "message": "Killed\n"}), "layer")
    cause = killed.infrastructure_cause
    assert cause is not None
    assert "SIGKILL" in cause
    reported = PodFacts(
        name="p",
        phase="Failed",
        exit_code=137,
        termination_message=layer_message(LayerName.L0, passed=False),
    )
    assert reported.infrastructure_cause is None


def test_a_failed_check_is_the_code_not_the_machine():
    message = layer_message(LayerName.L1, passed=False, check="params_updated")
    facts = pod_facts(_pod(terminated={"exitCode": 1, "message": message}), "layer")
    assert facts.exit_code == 1
    assert facts.termination_message == message
    assert facts.infrastructure_cause is None


def test_only_the_named_container_is_read():
    pod = _pod(terminated={"exitCode": 3, "message": "{}"}, container="trainer")
    assert pod_facts(pod, "trainer").exit_code == 3
    assert pod_facts(pod, "layer").exit_code is None


def test_an_unschedulable_pod_is_blocked_with_the_scheduler_message():
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
    }
    facts = pod_facts(_pod("vp-l0-1-x", phase="Pending", conditions=[condition]), "layer")
    assert facts.blocked == (
        "pod vp-l0-1-x cannot be scheduled: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    )
    assert facts.infrastructure_cause is None


def test_waiting_on_an_image_is_blocked_but_container_creation_is_not():
    pulling = pod_facts(
        _pod(phase="Pending", waiting={"reason": "ImagePullBackOff", "message": "not found"}),
        "layer",
    )
    assert pulling.blocked == "pod p is waiting: ImagePullBackOff: not found"
    creating = pod_facts(_pod(phase="Pending", waiting={"reason": "ContainerCreating"}), "layer")
    assert creating.blocked == ""


def test_job_facts_read_conditions_times_and_only_the_jobs_own_pods_in_order():
    job = {
        "metadata": {"name": "vp-l0-1", "uid": "job-uid", "labels": {"a": "b"}},
        "spec": {},
        "status": {
            "startTime": "2026-03-04T12:00:00Z",
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": "2026-03-04T12:05:00Z",
                },
            ],
        },
    }
    pods = [
        _pod("second", created="2026-03-04T12:02:00Z", terminated={"exitCode": 1}),
        _pod("other", owner="someone-else"),
        _pod("first", created="2026-03-04T12:01:00Z", terminated={"exitCode": 137}),
    ]
    facts = job_facts(job, pods, "layer")
    assert [p.name for p in facts.pods] == ["first", "second"]
    assert facts.failed
    assert not facts.complete
    assert not facts.active
    assert facts.failed_reason == "BackoffLimitExceeded"
    assert facts.start_time == datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    assert facts.finish_time == datetime(2026, 3, 4, 12, 5, tzinfo=UTC)
    assert facts.last_pod is not None
    assert facts.last_pod.name == "second"


def test_a_suspended_job_is_neither_active_nor_finished():
    job = {"metadata": {"name": "t", "uid": "u"}, "spec": {"suspend": True}, "status": {}}
    facts = job_facts(job, [], "trainer")
    assert facts.suspended
    assert not facts.active
    assert not facts.complete
    assert not facts.failed
    assert facts.last_pod is None
