"""Object storage down, then back: no checkpoint and no recovery bundle is lost.

A real trainer checkpoints every 20 steps to S3 (moto, behind a proxy that can go down, see
tests.support.s3.Outage), with the watchdog beside it writing bundles to S3 too. Once the first
checkpoint is stored, the endpoint goes away for 40 seconds: long against the retry intervals
(the trainer retries a checkpoint from 1 s up to every 10 s, the watchdog's spool from 1 s here,
doubling), though not the minutes a real outage may last, which only adds retries. Meanwhile the
trainer waits at its next checkpoint, the watchdog finds that checkpoint stale and writes a
bundle into its spool. When the endpoint is back: every checkpoint of the run is there, complete,
the trainer never crashed (one pod), and every bundle the watchdog reported arrived whole, the one
made during the outage after it, from the spool; the spool is empty.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from tests.support.operator import OperatorProcess, apply, digits_experiment
from tests.support.s3 import CREDENTIALS, MotoServer, Outage

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(300)]
OUTAGE_SECONDS = 40
MAX_STEPS = 300
EVERY = 20


@pytest.fixture
def s3(monkeypatch):
    """moto behind an Outage proxy; the pods (which run in this process's environment) and the
    operator reach it through the proxy, the test straight."""
    moto = MotoServer()
    moto.start()
    proxy = Outage(moto.port)
    proxy.up()
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": proxy.url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROCTOR_UPLOAD_RETRY_SECONDS", "1")
    client = boto3.client("s3", endpoint_url=moto.url)
    for bucket in ("checkpoints", "bundles"):
        client.create_bucket(Bucket=bucket)
    yield proxy, client
    proxy.down()
    moto.stop()


def test_a_storage_outage_loses_no_checkpoint_and_no_bundle(
    cluster, history, tmp_path, s3, request
):
    proxy, client = s3
    operator = OperatorProcess(cluster, tmp_path / "operator.log")
    operator.start()
    request.addfinalizer(operator.stop)
    manifest = digits_experiment(
        "outage",
        tmp_path,
        validation={"skip": {"reason": "object storage is under test"}},
        training={
            "budget": {"maxSteps": MAX_STEPS, "maxDuration": "4m"},
            "checkpoint": {"uri": "s3://checkpoints/runs", "everySteps": EVERY, "keepLast": 100},
        },
        watchdog={
            "thresholds": {"maxCheckpointAge": "10s"},
            "schedule": {"denseInterval": "1s", "warmup": "10m"},
        },
        recovery={"bundleURI": "s3://bundles/proctor"},
    )
    apply(cluster, manifest)

    def checkpoints() -> set[int]:
        listed = client.list_objects_v2(Bucket="checkpoints", Prefix="runs/default/outage/")
        keys = [o["Key"] for o in listed.get("Contents", [])]
        return {int(m.group(1)) for k in keys if (m := re.search(r"step-(\d+)/COMPLETE$", k))}

    deadline = time.monotonic() + 120
    while not checkpoints():
        assert time.monotonic() < deadline, ("no first checkpoint", operator.output()[-2000:])
        time.sleep(0.2)
    went_down = datetime.now(UTC)
    proxy.down()
    stored_before = checkpoints()
    time.sleep(OUTAGE_SECONDS)
    stored_during = checkpoints()
    came_back = datetime.now(UTC)
    proxy.up()

    deadline = time.monotonic() + 150
    while history.latest("Experiment", "outage").get("phase") not in ("Succeeded", "Failed"):
        assert time.monotonic() < deadline, operator.output()[-2000:]
        time.sleep(0.2)
    ended = datetime.now(UTC)
    status = history.latest("Experiment", "outage")
    pods = sorted((tmp_path / "cluster" / "pods" / "default").glob("outage-train-*"))
    trainer_log = "".join((p / "logs" / "trainer.log").read_text() for p in pods)
    assert status["phase"] == "Succeeded", (status, trainer_log[-3000:])
    assert len(pods) == 1, "the trainer waited for the store: no crash, no second pod"
    assert "object storage failed" in trainer_log, "the outage must have hit a checkpoint"

    # Every checkpoint of the run, complete; none written while the store was down.
    assert checkpoints() == set(range(EVERY, MAX_STEPS + 1, EVERY)), checkpoints()
    assert stored_during == stored_before, (stored_before, stored_during)
    assert max(stored_before) < MAX_STEPS / 2, "the outage began early in the run"

    # Every bundle the watchdog reported is whole in the store; the stale checkpoint's was made
    # during the outage (spooled) and uploaded after it.
    anomalies = status.get("anomalies") or []
    assert "CheckpointStale" in [a["kind"] for a in anomalies], anomalies
    for anomaly in anomalies:
        prefix = anomaly["bundleURI"].removeprefix("s3://bundles/")
        listed = client.list_objects_v2(Bucket="bundles", Prefix=prefix)
        files = {o["Key"].rsplit("/", 1)[-1]: o for o in listed.get("Contents", [])}
        assert set(files) == {"bundle.json", "metrics.png", "recovery.md"}, (anomaly, files)
        if anomaly["kind"] == "CheckpointStale":
            made = datetime.fromisoformat(anomaly["time"].replace("Z", "+00:00"))
            assert went_down < made < came_back, (went_down, made, came_back)
            uploaded = files["bundle.json"]["LastModified"]
            assert came_back.replace(microsecond=0) <= uploaded <= ended, (uploaded, ended)
    spool = pods[0] / "volumes" / "watchdog-spool" / "pending"
    assert not [p for p in spool.iterdir() if not p.name.startswith(".")], "left in the spool"
    assert not list(Path(tmp_path).glob("**/step-*/COMPLETE")), "checkpoints went to S3 only"
