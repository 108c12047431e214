"""The operator, as a process, drives Experiments and ValidationPyramids on the emulated cluster:
the real kubectl applies and reads, the pod runner executes every Job's pods as processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from proctor.api.anomaly_events import anomaly_event
from proctor.api.v1alpha1 import Anomaly
from tests.support.crd_schema import REPO
from tests.support.operator import apply, digits_experiment, get, phase, wait_for

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(300)]
PLANTED = REPO / "tests" / "pyramid" / "planted"
HANDLERS = "proctor.controller.handlers"


def _phases_until(cluster, resource: str, final: set[str], timeout: float) -> list[str]:
    """Every distinct phase `kubectl get` shows on the way to one of `final`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = phase(cluster, resource)
        if now and (not seen or seen[-1] != now):
            seen.append(now)
        if now in final:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"{resource} never reached {final}; phases seen: {seen}")


def _events(cluster, name: str) -> list[dict]:
    items = get(cluster, "events")["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def test_the_digits_experiment_validates_trains_succeeds_and_concludes(cluster, operator, tmp_path):
    apply(cluster, digits_experiment("digits-e2e", tmp_path))
    phases = _phases_until(cluster, "exp/digits-e2e", {"Succeeded", "Failed"}, timeout=240)
    assert phases[-1] == "Succeeded", (phases, operator.output()[-3000:])
    assert "Validating" in phases, phases
    assert "Training" in phases, phases

    pyramid = get(cluster, "vp/digits-e2e")
    assert pyramid["status"]["phase"] == "Passed"
    assert [layer["phase"] for layer in pyramid["status"]["layers"]] == ["Passed"] * 4
    assert all(layer["checks"] for layer in pyramid["status"]["layers"])
    owner = pyramid["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Experiment", "digits-e2e", True)

    status = get(cluster, "exp/digits-e2e")["status"]
    assert status["training"]["step"] == 150
    assert status["validation"]["phase"] == "Passed"
    assert status["validation"]["passedChecks"] >= 20
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Validated"]["status"] == "True"
    assert conditions["Trained"]["reason"] == "TrainingSucceeded"
    assert conditions["Concluded"]["reason"] == "AwaitingConclusion"
    checkpoints = tmp_path / "checkpoints" / "default" / "digits-e2e"
    assert (checkpoints / "step-000000150" / "COMPLETE").exists()

    jobs = cluster.kubectl("get", "jobs", "-l", "proctor.dev/pyramid=digits-e2e", "-o", "name")
    assert sorted(jobs.stdout.split()) == [f"job.batch/digits-e2e-l{i}-1" for i in range(4)]
    reasons = [e["reason"] for e in _events(cluster, "digits-e2e")]
    for expected in ("Validating", "Training", "Succeeded", "LayerPassed", "PyramidPassed"):
        assert expected in reasons, reasons

    frozen = cluster.kubectl(
        "patch",
        "exp/digits-e2e",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"training": {"budget": {"maxSteps": 999}}}}),
        check=False,
    )
    assert frozen.returncode != 0
    assert "frozen once validation has started" in frozen.stderr

    table = cluster.kubectl("get", "exp", "digits-e2e").stdout
    assert "Succeeded" in table
    assert "150" in table

    conclusion = {
        "verdict": "effective",
        "evidence": "trained to step 150 without anomalies",
        "learnings": "the 256-unit MLP is a sound baseline",
    }
    cluster.kubectl(
        "patch",
        "exp/digits-e2e",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"conclusion": conclusion}}),
    )
    wait_for(lambda: phase(cluster, "exp/digits-e2e") == "Concluded", 30, "Concluded")
    described = cluster.kubectl("describe", "exp", "digits-e2e").stdout
    assert "ConclusionWritten" in described

    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    concluded = re.search(r'proctor_operator_experiments\{phase="Concluded"\} (\S+)', metrics)
    assert concluded is not None
    assert float(concluded.group(1)) >= 1
    assert 'proctor_operator_layer_duration_seconds_count{layer="L2",outcome="Passed"}' in metrics
    assert "proctor_operator_checks_total" in metrics
    health = urllib.request.urlopen(f"http://127.0.0.1:{operator.liveness_port}/healthz", timeout=5)
    assert health.status == 200

    cluster.kubectl("delete", "exp", "digits-e2e", "--wait=false")
    wait_for(
        lambda: (
            not cluster.kubectl(
                "get", "vp,jobs,pods", "-l", "proctor.dev/experiment=digits-e2e", "-o", "name"
            ).stdout.strip()
            and "digits-e2e-l0" not in cluster.kubectl("get", "jobs", "-o", "name").stdout
        ),
        30,
        "garbage collection of everything the experiment owned",
    )


def test_a_planted_bug_stops_the_pyramid_at_its_layer_and_nothing_trains(
    cluster, operator, tmp_path
):
    manifest = digits_experiment(
        "detached",
        tmp_path,
        code={
            "entrypoint": "detached_output:setup",
            "env": [{"name": "PYTHONPATH", "value": str(PLANTED)}],
        },
    )
    apply(cluster, manifest)
    wait_for(lambda: phase(cluster, "exp/detached") == "Failed", 180, "Failed")
    status = get(cluster, "exp/detached")["status"]
    assert status["validation"]["layer"] == "L1"
    assert "gradients_present" in status["validation"]["message"]
    validated = next(c for c in status["conditions"] if c["type"] == "Validated")
    assert validated["reason"] == "PyramidFailed"
    assert "no training was started" in validated["message"]
    pyramid = get(cluster, "vp/detached")["status"]
    assert [layer["phase"] for layer in pyramid["layers"]] == ["Passed", "Failed"]
    l1_checks = {c["name"]: c for c in pyramid["layers"][1]["checks"]}
    assert l1_checks["gradients_present"]["verdict"] == "Failed"
    assert l1_checks["gradients_present"]["message"]
    described = cluster.kubectl("describe", "vp", "detached").stdout
    assert "gradients_present" in described
    assert "ChecksFailed" in described
    jobs = cluster.kubectl("get", "jobs", "-o", "name").stdout.split()
    assert "job.batch/detached-train" not in jobs
    assert "job.batch/detached-l1-2" not in jobs, "a failed check is never retried"
    assert "job.batch/detached-l2-1" not in jobs, "the pyramid stops at the first failed layer"


def test_two_pods_train_together_with_ddp(cluster, operator, tmp_path):
    manifest = digits_experiment(
        "digits-ddp",
        tmp_path,
        validation={"skip": {"reason": "the same code passed in the first end-to-end test"}},
        training={"nodes": 2, "budget": {"maxSteps": 60}},
    )
    apply(cluster, manifest)
    wait_for(
        lambda: phase(cluster, "exp/digits-ddp") in ("Succeeded", "Failed"), 180, "the run's end"
    )
    status = get(cluster, "exp/digits-ddp")["status"]
    assert status["phase"] == "Succeeded", (status, operator.output()[-2000:])
    assert status["training"]["step"] == 60
    job = get(cluster, "job/digits-ddp-train")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["status"]["succeeded"] == 2
    service = get(cluster, "svc/digits-ddp-train")
    assert service["spec"]["clusterIP"] == "None"
    pods = get(cluster, "pods")["items"]
    ranks = [p for p in pods if p["metadata"]["labels"].get("job-name") == "digits-ddp-train"]
    assert len(ranks) == 2
    logs = "".join(
        cluster.kubectl("logs", p["metadata"]["name"], "-c", "trainer").stdout for p in ranks
    )
    assert logs.count("done at step 60") == 2, logs[-2000:]


def _kill_layer_process(cluster, layer: str) -> bool:
    """SIGKILL the layer's process, found among this cluster's pods only (its working
    directory is under the pod runner's), as the OOM killer would."""
    found = subprocess.run(
        ["pgrep", "-f", f"proctor pyramid run --layer {layer}"], capture_output=True, text=True
    )
    pods_dir = str(cluster.cluster.pods.workdir)
    pids = [
        int(pid)
        for pid in found.stdout.split()
        if os.path.exists(f"/proc/{pid}/cwd")
        and os.readlink(f"/proc/{pid}/cwd").startswith(pods_dir)
    ]
    for pid in pids:
        os.kill(pid, 9)
    return bool(pids)


def test_a_killed_layer_pod_is_retried_as_infrastructure(cluster, operator, tmp_path):
    apply(
        cluster,
        digits_experiment(
            "killed-layer",
            tmp_path,
            validation={"layers": {"l2": {"maxSteps": 3000, "targetLossRatio": 0.0001}}},
        ),
    )
    wait_for(lambda: _layer(cluster, "killed-layer", "L2"), 120, "L2 to start")
    wait_for(lambda: _kill_layer_process(cluster, "L2"), 60, "the L2 process to kill")
    entry = wait_for(
        lambda: (
            (_layer(cluster, "killed-layer", "L2") or {}).get("attempts", 0) >= 2
            and _layer(cluster, "killed-layer", "L2")
        ),
        90,
        "a second L2 attempt",
    )
    assert "SIGKILL" in entry["message"] or entry["attempts"] == 2
    condition = next(
        c
        for c in get(cluster, "vp/killed-layer")["status"]["conditions"]
        if c["type"] == "L2Passed"
    )
    assert condition["reason"] == "InfrastructureRetrying"
    reasons = [e["reason"] for e in _events(cluster, "killed-layer")]
    assert "InfrastructureRetrying" in reasons
    cluster.kubectl("delete", "exp", "killed-layer", "--wait=false")


def _layer(cluster, name: str, layer: str) -> dict | None:
    status = get(cluster, f"vp/{name}").get("status", {}) if _exists(cluster, f"vp/{name}") else {}
    return next((e for e in status.get("layers", []) if e["layer"] == layer), None)


def _exists(cluster, resource: str) -> bool:
    return cluster.kubectl("get", resource, check=False).returncode == 0


def test_restart_safety_kill_the_operator_at_every_transition(cluster, operator, tmp_path):
    """SIGKILL the operator each time the experiment or its pyramid moves on, start it again:
    no Job is created twice and the experiment still succeeds."""
    apply(cluster, digits_experiment("restarts", tmp_path, training={"budget": {"maxSteps": 100}}))
    seen: list[str] = []
    kills = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        obj = get(cluster, "exp/restarts")
        # No finalizer ever: deleting works while the operator is down.
        assert not obj["metadata"].get("finalizers"), obj["metadata"]
        exp = obj.get("status", {})
        state = f"{exp.get('phase')}/{(exp.get('validation') or {}).get('layer')}"
        if exp.get("phase") in ("Succeeded", "Failed"):
            break
        if exp.get("phase") and (not seen or seen[-1] != state):
            seen.append(state)
            operator.kill()
            kills += 1
            operator.start()
        time.sleep(0.3)
    final = get(cluster, "exp/restarts")["status"]
    assert final["phase"] == "Succeeded", (seen, final, operator.output()[-3000:])
    assert kills >= 4, seen
    jobs = cluster.kubectl("get", "jobs", "-o", "name").stdout.split()
    mine = sorted(j for j in jobs if j.startswith("job.batch/restarts-"))
    assert mine == [
        "job.batch/restarts-l0-1",
        "job.batch/restarts-l1-1",
        "job.batch/restarts-l2-1",
        "job.batch/restarts-l3-1",
        "job.batch/restarts-train",
    ], mine
    pods = [
        p for p in get(cluster, "pods")["items"] if p["metadata"]["name"].startswith("restarts-")
    ]
    assert len(pods) == 5, [p["metadata"]["name"] for p in pods]


def test_an_entrypoint_that_does_not_import_fails_at_l0_with_the_reason(
    cluster, operator, tmp_path
):
    apply(cluster, digits_experiment("no-module", tmp_path, code={"entrypoint": "nowhere:setup"}))
    wait_for(lambda: phase(cluster, "exp/no-module") == "Failed", 120, "Failed")
    status = get(cluster, "exp/no-module")["status"]
    assert status["validation"]["layer"] == "L0"
    assert "nowhere" in status["validation"]["message"]
    pyramid = get(cluster, "vp/no-module")["status"]
    assert pyramid["layers"][0]["attempts"] == 1, "a code error is not retried"
    assert pyramid["layers"][0]["checks"][0]["name"] == "contract"


def test_a_gpu_request_the_cluster_cannot_satisfy_fails_with_the_schedulers_words(
    cluster, operator, tmp_path
):
    apply(
        cluster,
        digits_experiment(
            "too-many-gpus",
            tmp_path,
            validation={"resources": {"gpus": 8}, "layers": {"l0": {"timeout": "5s"}}},
        ),
    )
    wait_for(lambda: phase(cluster, "exp/too-many-gpus") == "Failed", 90, "Failed")
    status = get(cluster, "vp/too-many-gpus")["status"]
    l0 = status["layers"][0]
    assert l0["phase"] == "Failed"
    assert "Insufficient nvidia.com/gpu" in l0["message"], l0["message"]
    assert next(c for c in status["conditions"] if c["type"] == "L0Passed")["reason"] == (
        "LayerTimedOut"
    )


def test_a_bundle_uri_with_an_unknown_scheme_is_refused_at_apply(cluster, operator, tmp_path):
    manifest = digits_experiment("gs-bundles", tmp_path, recovery={"bundleURI": "gs://bucket/x"})
    result = cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert "spec.recovery.bundleURI" in result.stderr
    assert not _exists(cluster, "exp/gs-bundles")


def test_a_queued_job_is_queued_not_failed_until_kueue_admits_it(cluster, operator, tmp_path):
    manifest = digits_experiment(
        "queued",
        tmp_path,
        validation={"skip": {"reason": "only the queueing is under test"}},
        training={"queueName": "gpu-queue"},
    )
    apply(cluster, manifest)
    wait_for(lambda: phase(cluster, "exp/queued") == "Queued", 60, "Queued")
    job = get(cluster, "job/queued-train")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    trained = next(
        c for c in get(cluster, "exp/queued")["status"]["conditions"] if c["type"] == "Trained"
    )
    assert trained["reason"] == "Queued"
    assert "gpu-queue" in trained["message"]
    # Kueue admits a workload by resuming its Job.
    cluster.kubectl("patch", "job/queued-train", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: phase(cluster, "exp/queued") == "Succeeded", 120, "Succeeded")


def test_a_critical_anomaly_stops_training_when_the_spec_asks(cluster, operator, tmp_path):
    manifest = digits_experiment(
        "stop-me",
        tmp_path,
        validation={"skip": {"reason": "only the anomaly path is under test"}},
        training={"budget": {"maxSteps": 10_000_000, "maxDuration": "3m"}},
        recovery={"onAnomaly": "StopTraining", "bundleURI": f"file://{tmp_path}/bundles"},
    )
    apply(cluster, manifest)
    wait_for(
        lambda: (get(cluster, "exp/stop-me").get("status", {}).get("training") or {}).get("step"),
        90,
        "training progress in status",
    )
    experiment = get(cluster, "exp/stop-me")
    anomaly = Anomaly(
        kind="NonFiniteLoss",
        severity="Critical",
        time=datetime.now(UTC),
        step=1234,
        message="loss is nan at step 1234",
        bundle_uri=f"file://{tmp_path}/bundles/default/stop-me/20261122T000000Z-NonFiniteLoss/",
    )
    event = anomaly_event(experiment, anomaly, "stop-me.nonfiniteloss.1234")
    cluster.kubectl("create", "-f", "-", input=json.dumps(event))
    wait_for(lambda: phase(cluster, "exp/stop-me") == "Failed", 60, "Failed")
    status = get(cluster, "exp/stop-me")["status"]
    trained = next(c for c in status["conditions"] if c["type"] == "Trained")
    assert trained["reason"] == "StoppedOnAnomaly"
    assert "NonFiniteLoss" in trained["message"]
    assert "stop-me/2026" in trained["message"]
    assert status["anomalyCount"] == 1
    assert status["anomalies"][0]["bundleURI"] == anomaly.bundle_uri
    assert status["anomalies"][0]["step"] == 1234
    wait_for(lambda: not _exists(cluster, "job/stop-me-train"), 30, "the training Job deleted")


def test_the_handlers_also_run_under_plain_kopf_run(cluster, tmp_path):
    """`kopf run -m proctor.controller.handlers` is the same operator (options from PROCTOR_*);
    it watches its own namespace here, beside the module's operator on `default`."""
    cluster.kubectl("create", "namespace", "kopf-run")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PROCTOR_RESYNC_SECONDS": "1"}
    log = (tmp_path / "kopf.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "-n", "kopf-run", "-m", HANDLERS],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        layers = {layer: {"enabled": False} for layer in ("l0", "l1", "l2", "l3")}
        pyramid = {
            "apiVersion": "proctor.dev/v1alpha1",
            "kind": "ValidationPyramid",
            "metadata": {"name": "nothing-enabled", "namespace": "kopf-run"},
            "spec": {"code": {"image": "img:1", "entrypoint": "m:setup"}, "layers": layers},
        }
        apply(cluster, pyramid)
        wait_for(
            lambda: get_in(cluster, "kopf-run", "vp/nothing-enabled").get("phase") == "Passed",
            60,
            "the pyramid to pass",
        )
        status = get_in(cluster, "kopf-run", "vp/nothing-enabled")
        assert [layer["phase"] for layer in status["layers"]] == ["Skipped"] * 4
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert "L0, L1, L2, L3 skipped" in ready["message"]
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def get_in(cluster, namespace: str, resource: str) -> dict:
    result = cluster.kubectl("get", resource, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout).get("status", {}) if result.returncode == 0 else {}
