"""The Job controller's decisions as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proctor.cluster.jobs import INDEX_ANNOTATION, reconcile_job

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _job(**spec) -> dict:
    template = {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "command": ["true"]}]}
    }
    return {
        "metadata": {"name": "j", "namespace": "default", "uid": "u-1"},
        "spec": {"template": template, **spec},
    }


def _pod(name: str, phase: str, index: int | None = None) -> dict:
    annotations = {INDEX_ANNOTATION: str(index)} if index is not None else {}
    return {"metadata": {"name": name, "annotations": annotations}, "status": {"phase": phase}}


def _types(status: dict) -> list[str]:
    return [c["type"] for c in status.get("conditions", [])]


def test_a_new_job_gets_one_owned_pod():
    decision = reconcile_job(_job(), [], NOW)
    [pod] = decision.create
    assert pod["metadata"]["name"].startswith("j-")
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pod["metadata"]["labels"]["job-name"] == "j"
    assert decision.status["startTime"] == "2026-11-22T12:00:00Z"


def test_success_completes_the_job():
    decision = reconcile_job(_job(), [_pod("j-a", "Succeeded")], NOW)
    assert decision.create == []
    assert _types(decision.status) == ["SuccessCriteriaMet", "Complete"]
    assert decision.status["succeeded"] == 1


def test_failures_beyond_the_backoff_limit_fail_the_job():
    pods = [_pod("j-a", "Failed"), _pod("j-b", "Failed")]
    retry = reconcile_job(_job(backoffLimit=2), pods, NOW)
    assert len(retry.create) == 1
    failed = reconcile_job(_job(backoffLimit=1), pods, NOW)
    assert failed.create == []
    assert failed.status["conditions"][-1]["reason"] == "BackoffLimitExceeded"


def test_the_active_deadline_fails_the_job_and_stops_its_pods():
    job = _job(activeDeadlineSeconds=60)
    job["status"] = {"startTime": (NOW - timedelta(seconds=61)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    decision = reconcile_job(job, [_pod("j-a", "Running")], NOW)
    assert decision.delete == ["j-a"]
    assert decision.status["conditions"][-1]["reason"] == "DeadlineExceeded"


def test_a_suspended_job_deletes_its_pods_and_says_so():
    decision = reconcile_job(_job(suspend=True), [_pod("j-a", "Running")], NOW)
    assert decision.delete == ["j-a"]
    assert decision.create == []
    assert _types(decision.status) == ["Suspended"]


def test_an_indexed_job_creates_one_pod_per_missing_index_with_its_hostname():
    job = _job(completionMode="Indexed", completions=3, parallelism=3)
    decision = reconcile_job(job, [_pod("j-1-x", "Running", index=1)], NOW)
    indexes = sorted(p["metadata"]["annotations"][INDEX_ANNOTATION] for p in decision.create)
    assert indexes == ["0", "2"]
    hostnames = sorted(p["spec"]["hostname"] for p in decision.create)
    assert hostnames == ["j-0", "j-2"]
    env = decision.create[0]["spec"]["containers"][0]["env"]
    assert env[-1]["name"] == "JOB_COMPLETION_INDEX"


def test_a_finished_job_is_left_alone():
    job = _job()
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    decision = reconcile_job(job, [], NOW)
    assert decision.create == []
    assert decision.status == job["status"]


def test_pod_runner_maps_paths_and_hosts_only_where_it_should():
    from pathlib import Path

    from proctor.cluster.podrunner import _exit_code, _rewriter

    pod = {"metadata": {"namespace": "ml"}, "spec": {"subdomain": "ranks"}}
    rewrite = _rewriter({"/data": Path("/tmp/p/volumes/data")}, pod, "ranks")
    assert rewrite("/data/x.bin") == "/tmp/p/volumes/data/x.bin"
    assert rewrite("--out=/data/y") == "--out=/tmp/p/volumes/data/y"
    assert rewrite("echo hi > /data/z") == "echo hi > /tmp/p/volumes/data/z"
    assert rewrite("/database/x") == "/database/x", "a longer path is not under the mount"
    assert rewrite("tcp://j-0.ranks.ml.svc.cluster.local:29500") == "tcp://127.0.0.1:29500"
    no_service = _rewriter({}, pod, None)
    assert no_service("j-0.ranks") == "j-0.ranks", "without a headless Service, no DNS name"
    assert _exit_code(-15) == 143
    assert _exit_code(-9) == 137
    assert _exit_code(3) == 3
