"""The watchdog as the operator deploys it: a native sidecar beside a real trainer in the emulated
cluster, a recovery bundle in object storage, an Event the operator mirrors into status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.crd_schema import REPO
from tests.support.operator import apply, digits_experiment, get, wait_for

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(300)]
CODE = REPO / "tests" / "watchdog" / "code"
PLANTED_TOKEN = "hf_plantedSecretValue0123456789"


def test_a_nan_loss_writes_one_redacted_bundle_and_reaches_status(cluster, operator, tmp_path):
    cluster.kubectl("create", "secret", "generic", "hf", f"--from-literal=token={PLANTED_TOKEN}")
    bundles = tmp_path / "bundles"
    manifest = digits_experiment(
        "careless",
        tmp_path,
        code={
            "entrypoint": "careless_nan:setup",
            "config": {"jump_at": 30},
            "env": [
                {"name": "PYTHONPATH", "value": str(CODE)},
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            ],
        },
        validation={"skip": {"reason": "the watchdog is under test"}},
        training={"budget": {"maxSteps": 5000, "maxDuration": "3m"}},
        watchdog={"schedule": {"denseInterval": "1s", "warmup": "1m"}},
        recovery={"bundleURI": f"file://{bundles}"},
    )
    apply(cluster, manifest)
    status = wait_for(
        lambda: (
            (get(cluster, "exp/careless").get("status") or {}).get("anomalies")
            and get(cluster, "exp/careless")["status"]
        ),
        180,
        "an anomaly in status",
    )
    anomaly = status["anomalies"][0]
    assert anomaly["kind"] == "NonFiniteLoss"
    assert anomaly["severity"] == "Critical"
    where = Path(anomaly["bundleURI"].removeprefix("file://"))
    assert where.is_relative_to(bundles / "default" / "careless")
    bundle_json = wait_for(lambda: (where / "bundle.json").exists() and where, 60, "the upload")
    assert (bundle_json / "metrics.png").read_bytes().startswith(b"\x89PNG")
    bundle = json.loads((where / "bundle.json").read_text())
    assert bundle["schemaVersion"] == "proctor.dev/bundle/v1"
    assert bundle["finding"]["kind"] == "NonFiniteLoss"
    assert bundle["experiment"]["hypothesis"]["statement"]
    assert bundle["pod"]["name"].startswith("careless-train-")
    assert bundle["logTail"], "the trainer's log tail, through pods/log"
    prompt = (where / "recovery.md").read_text()
    assert "AdjustHyperparameters" in prompt
    every_file = "".join(
        p.read_text(errors="replace") for p in bundles.rglob("*") if p.suffix in (".json", ".md")
    )
    assert PLANTED_TOKEN not in every_file, "a planted secret leaked into a bundle"
    logs = "".join(
        cluster.kubectl("logs", p["metadata"]["name"], "-c", "trainer").stdout
        for p in get(cluster, "pods")["items"]
        if p["metadata"]["name"].startswith("careless-train-")
    )
    assert PLANTED_TOKEN in logs, "the test must plant the secret where the watchdog reads"
    written = list((bundles / "default" / "careless").iterdir())
    pods = [
        p
        for p in get(cluster, "pods")["items"]
        if p["metadata"]["name"].startswith("careless-train-")
    ]
    # One incident, one bundle: each pod's watchdog reports it once, however many checks see it
    # (a crashed trainer is retried by the Job, and a new pod is a new attempt).
    assert 1 <= len(written) <= len(pods), (written, [p["metadata"]["name"] for p in pods])
    assert PLANTED_TOKEN not in json.dumps(get(cluster, "exp/careless")["status"])
