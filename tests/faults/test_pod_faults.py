"""Pod faults: what a node does to pods (the OOM killer, an eviction, a pod deleted under a
running Job, a sidecar container that dies), with the real operator, trainer and watchdog.

The emulated kubelet ends a pod as OOMKilled or Evicted when it carries the annotation
`emulator.proctor.dev/end-as` (proctor.cluster.podrunner), and restarts a native sidecar that
exits while the pod runs, as the kubelet does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proctor.cluster.podrunner import END_AS_ANNOTATION
from tests.support.crd_schema import REPO
from tests.support.operator import (
    DIGITS_DIR,
    OperatorProcess,
    apply,
    digits_experiment,
    get,
    wait_for,
)

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(300)]
SKIP = {"skip": {"reason": "the pod faults are under test, not this code"}}
CODE = REPO / "tests" / "faults" / "code"
# The digits example paced to 50 ms a step, so the test acts at the step it means to.
PACED = {
    "entrypoint": "slow_digits:setup",
    "env": [{"name": "PYTHONPATH", "value": f"{DIGITS_DIR}:{CODE}"}],
}


@pytest.fixture
def fast_retries(monkeypatch) -> None:
    """An infrastructure retry after 1 s, not the default 10 s (the operator reads it at start)."""
    monkeypatch.setenv("PROCTOR_RETRY_BASE_SECONDS", "1")


@pytest.fixture
def operator(cluster, tmp_path, fast_retries) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster, tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()


def _pods(cluster, selector: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def _running(cluster, selector: str) -> dict[str, Any] | None:
    """A pod of `selector` whose main container has started."""
    for pod in _pods(cluster, selector):
        states = [c.get("state", {}) for c in pod["status"].get("containerStatuses") or []]
        if pod["status"].get("phase") == "Running" and states and "running" in states[0]:
            return pod
    return None


def _end_as(cluster, pod: dict[str, Any], how: str) -> None:
    name = pod["metadata"]["name"]
    cluster.kubectl("annotate", "pod", name, f"{END_AS_ANNOTATION}={how}")


def _events(cluster, name: str, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in get(cluster, "events")["items"]
        if e["involvedObject"]["name"] == name and e["reason"] == reason
    ]


def test_an_oomkilled_and_an_evicted_layer_pod_are_retried_as_infrastructure(
    cluster, operator, history, tmp_path
):
    layers = {"l2": {"enabled": False}, "l3": {"enabled": False}}
    apply(
        cluster,
        digits_experiment(
            "layers",
            tmp_path,
            validation={"layers": layers},
            training={"command": ["true"]},
            watchdog={"enabled": False},
        ),
    )
    for layer, how in (("L0", "OOMKilled"), ("L1", "Evicted")):
        selector = f"proctor.dev/pyramid=layers,proctor.dev/layer={layer},proctor.dev/attempt=1"
        pod = wait_for(lambda s=selector: _running(cluster, s), 120, f"{layer} running")
        _end_as(cluster, pod, how)

    wait_for(
        lambda: history.latest("Experiment", "layers").get("phase") in ("Succeeded", "Failed"),
        180,
        "the experiment's end",
    )
    status = history.latest("Experiment", "layers")
    assert status["phase"] == "Succeeded", (status, operator.output()[-3000:])
    pyramid = history.latest("ValidationPyramid", "layers")
    assert [(e["layer"], e["phase"], e["attempts"]) for e in pyramid["layers"]][:2] == [
        ("L0", "Passed", 2),
        ("L1", "Passed", 2),
    ]
    assert history.created("Job") == {
        "layers-l0-1": 1,
        "layers-l0-2": 1,
        "layers-l1-1": 1,
        "layers-l1-2": 1,
        "layers-train": 1,
    }

    # The first attempts ended as the kubelet reports these ends...
    [oom] = _pods(cluster, "proctor.dev/layer=L0,proctor.dev/attempt=1")
    terminated = oom["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
    [evicted] = _pods(cluster, "proctor.dev/layer=L1,proctor.dev/attempt=1")
    assert (evicted["status"]["phase"], evicted["status"]["reason"]) == ("Failed", "Evicted")

    # ...and the operator said they were the machine's doing, not the code's, and retried.
    retrying = [e["message"] for e in _events(cluster, "layers", "InfrastructureRetrying")]
    assert len(retrying) == 2, retrying
    oom, evicted = sorted(retrying)
    assert oom.startswith("L0 attempt 2 of 4 started after"), oom
    assert "(OOMKilled" in oom, oom
    assert evicted.startswith("L1 attempt 2 of 4 started after"), evicted
    assert "evicted" in evicted, evicted
    reasons = {
        (c["type"], c["reason"])
        for change in history.of("ValidationPyramid", "layers")
        for c in change.status.get("conditions") or []
    }
    assert {("L0Passed", "InfrastructureRetrying"), ("L1Passed", "InfrastructureRetrying")} <= (
        reasons
    )
    assert history.regressions() == []


def _metrics(pod_dir: Path) -> list[dict[str, Any]]:
    path = pod_dir / "volumes" / "proctor-metrics" / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _last_step(pod_dir: Path) -> int:
    steps = [r["step"] for r in _metrics(pod_dir) if "event" not in r]
    return max(steps, default=0)


def test_a_training_pod_deleted_then_evicted_resumes_from_its_checkpoints(
    cluster, operator, history, tmp_path
):
    max_steps, every = 300, 20
    apply(
        cluster,
        digits_experiment(
            "resumes",
            tmp_path,
            validation=SKIP,
            code=PACED,
            training={
                "budget": {"maxSteps": max_steps, "maxDuration": "4m"},
                "checkpoint": {"everySteps": every, "keepLast": 2},
            },
            watchdog={"enabled": False},
        ),
    )
    pods_dir = tmp_path / "cluster" / "pods" / "default"
    selector = "job-name=resumes-train"

    first = wait_for(lambda: _running(cluster, selector), 120, "the first training pod")
    first_dir = pods_dir / first["metadata"]["name"]
    wait_for(lambda: _last_step(first_dir) >= 60, 120, "60 steps")
    cluster.kubectl("delete", "pod", first["metadata"]["name"], "--wait=false")

    def replacement(after: set[str]) -> dict[str, Any] | None:
        pod = _running(cluster, selector)
        return pod if pod is not None and pod["metadata"]["name"] not in after else None

    second = wait_for(lambda: replacement({first["metadata"]["name"]}), 60, "a second pod")
    second_dir = pods_dir / second["metadata"]["name"]
    wait_for(lambda: _last_step(second_dir) >= _last_step(first_dir) + 50, 120, "50 more steps")
    _end_as(cluster, second, "Evicted")
    seen = {first["metadata"]["name"], second["metadata"]["name"]}
    third = wait_for(lambda: replacement(seen), 60, "a third pod")
    third_dir = pods_dir / third["metadata"]["name"]

    wait_for(
        lambda: history.latest("Experiment", "resumes").get("phase") in ("Succeeded", "Failed"),
        150,
        "the experiment's end",
    )
    status = history.latest("Experiment", "resumes")
    logs = {
        d.name: (d / "logs" / "trainer.log").read_text() for d in (first_dir, second_dir, third_dir)
    }
    assert status["phase"] == "Succeeded", (status, logs)

    # Deleted: SIGTERM, a checkpoint at the step it stopped, and the next pod resumed there.
    checkpoints = {
        d.name: [r["step"] for r in _metrics(d) if r.get("event") == "checkpoint"]
        for d in (first_dir, second_dir, third_dir)
    }
    stopped_at = checkpoints[first_dir.name][-1]
    assert f"SIGTERM at step {stopped_at}" in logs[first_dir.name], (checkpoints, logs)
    assert f"(step {stopped_at})" in logs[second_dir.name], logs[second_dir.name][-2000:]
    resumed = [r["step"] for r in _metrics(second_dir) if "event" not in r]
    assert stopped_at < resumed[0] <= stopped_at + 10, (stopped_at, resumed[:3])

    # Evicted (SIGKILL, no last checkpoint): the next pod resumed from the newest periodic one.
    newest = checkpoints[second_dir.name][-1]
    assert newest % every == 0, checkpoints
    assert f"(step {newest})" in logs[third_dir.name], logs[third_dir.name][-2000:]
    resumed = [r["step"] for r in _metrics(third_dir) if "event" not in r]
    assert newest < resumed[0] <= newest + 10, (newest, resumed[:3])
    assert resumed[-1] == max_steps

    job = get(cluster, "job/resumes-train")["status"]
    assert (job["succeeded"], job.get("failed", 0)) == (1, 0), "an eviction is not a failure"
    assert status["training"]["step"] == max_steps, status["training"]
    assert history.created("Job") == {"resumes-train": 1}
    assert history.regressions() == []


def _process_of(pod_dir: Path, command: str) -> int | None:
    """The pid of `command` running in the pod whose directory is `pod_dir`."""
    found = subprocess.run(["pgrep", "-f", command], capture_output=True, text=True)
    for pid in found.stdout.split():
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(pod_dir):
                return int(pid)
        except OSError:
            continue
    return None


def test_a_restarted_watchdog_reports_an_incident_once(cluster, operator, history, tmp_path):
    bundles, stop = tmp_path / "bundles", tmp_path / "stop-training"
    manifest = digits_experiment(
        "watched",
        tmp_path,
        validation=SKIP,
        training={"command": ["python", str(CODE / "nan_once.py"), str(stop)]},
        watchdog={"schedule": {"denseInterval": "1s", "warmup": "10m"}},
        recovery={"bundleURI": f"file://{bundles}"},
    )
    del manifest["spec"]["training"]["checkpoint"]  # this trainer does not checkpoint
    apply(cluster, manifest)
    mine = bundles / "default" / "watched"
    wait_for(lambda: mine.exists() and list(mine.glob("*/bundle.json")), 120, "the bundle")
    [pod] = _pods(cluster, "job-name=watched-train")
    pod_dir = tmp_path / "cluster" / "pods" / "default" / pod["metadata"]["name"]
    watchdog = _process_of(pod_dir, "proctor watchdog")
    assert watchdog is not None
    os.kill(watchdog, signal.SIGKILL)

    log = pod_dir / "logs" / "watchdog.log"
    wait_for(lambda: log.read_text().count("watching default/watched") == 2, 60, "the restart")
    time.sleep(5)  # the restarted watchdog checks every second, the NaN still in its window
    stop.touch()
    wait_for(
        lambda: history.latest("Experiment", "watched").get("phase") in ("Succeeded", "Failed"),
        90,
        "the experiment's end",
    )
    status = history.latest("Experiment", "watched")
    assert status["phase"] == "Succeeded", (status, log.read_text()[-3000:])
    [pod] = _pods(cluster, "job-name=watched-train")
    [sidecar] = pod["status"]["initContainerStatuses"]
    assert sidecar["restartCount"] == 1, sidecar

    # One incident: one bundle, one Event, one anomaly in status, across the restart.
    assert len(list(mine.iterdir())) == 1, list(mine.iterdir())
    assert len(_events(cluster, "watched", "NonFiniteLoss")) == 1
    assert status["anomalyCount"] == 1, status.get("anomalies")
    assert [a["kind"] for a in status["anomalies"]] == ["NonFiniteLoss"]
    assert "1 incident(s) already reported: NonFiniteLoss:step-20" in log.read_text()
