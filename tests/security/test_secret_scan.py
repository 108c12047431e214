"""Promise: planted secrets never appear in status, Events, the operator's log or bundles.

Two Experiments run end to end on the emulated cluster with the real operator and moto's S3 as the
bundle store (tests/security/conftest.py plants the secrets): their code prints its whole
environment and then raises an exception that quotes a bearer token and every Secret-held value.
One fails in its pyramid (L0), so the layer's result reaches the pyramid's and the Experiment's
status; the other skips validation and trains: its loss turns NaN, so the watchdog writes a
bundle (with the log tail) and posts Events, including one saying the Prometheus it was given
does not answer; the Job's retries crash with the exception, whose
message the operator copies into status and an Event.
Then every status, every Event, the operator's log and every object in the S3 endpoint is
scanned for every planted value.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.security.conftest import (
    BUCKET,
    PLANTED_CODE_SECRETS,
    PLANTED_STORAGE,
    planted_values,
    secret_env,
)
from tests.support.crd_schema import REPO
from tests.support.operator import apply, digits_experiment, get, wait_for

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(300)]
CODE = REPO / "tests" / "security" / "code"


def _leaky(name: str, tmp_path, **changes: Any) -> dict[str, Any]:
    return digits_experiment(
        name,
        tmp_path,
        code={
            "entrypoint": "leaky:setup",
            "config": {"fail_at": 0},
            "env": [{"name": "PYTHONPATH", "value": str(CODE)}, *secret_env()],
        },
        watchdog={"schedule": {"denseInterval": "1s", "warmup": "1m"}},
        **changes,
    )


def _s3_objects() -> dict[str, bytes]:
    s3 = boto3.client("s3")
    found = {}
    for bucket in s3.list_buckets()["Buckets"]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
        for page in pages:
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket["Name"], Key=item["Key"])["Body"].read()
                found[f"s3://{bucket['Name']}/{item['Key']}"] = body
    return found


def _settled(cluster) -> dict[str, Any]:
    """What the cluster and the store hold once nothing changes any more."""
    last: list[Any] = [None]

    def snapshot() -> dict[str, Any] | None:
        now = {
            "objects": cluster.kubectl("get", "exp,vp", "-o", "json").stdout,
            "events": cluster.kubectl("get", "events", "-o", "json").stdout,
            "new events": cluster.kubectl("get", "events.events.k8s.io", "-o", "json").stdout,
            "s3": sorted(_s3_objects()),
        }
        keys = (now["s3"], len(json.loads(now["events"])["items"]))
        settled, last[0] = keys == last[0], keys
        return now if settled else None

    return wait_for(snapshot, 60, "the cluster and the store to settle", interval=2)


def test_planted_secrets_reach_no_status_event_operator_log_or_bundle(installation, tmp_path):
    cluster, operator = installation
    apply(cluster, _leaky("leaky-validate", tmp_path / "v"))
    attempts = tmp_path / "attempts.json"
    training = _leaky("leaky-train", tmp_path / "t", validation={"skip": {"reason": "t"}})
    training["spec"]["code"]["config"] = {"nan_at": 20, "attempts": str(attempts)}
    apply(cluster, training)

    def ended(name: str) -> dict[str, Any] | None:
        status = get(cluster, f"exp/{name}").get("status") or {}
        return status if status.get("phase") == "Failed" else None

    validated = wait_for(lambda: ended("leaky-validate"), 120, "leaky-validate to fail")
    trained = wait_for(
        lambda: (s := ended("leaky-train")) and s.get("anomalies") and s, 180, "leaky-train"
    )
    state = _settled(cluster)
    objects = _s3_objects()

    # The plants took: the secrets are in the pods' output, and that output reached every place
    # scanned below (redacted).
    logs = "".join(
        cluster.kubectl("logs", pod["metadata"]["name"], "--all-containers").stdout
        for pod in get(cluster, "pods")["items"]
        if pod["metadata"]["name"].startswith(("leaky-train-", "leaky-validate-"))
    )
    for value in [*PLANTED_CODE_SECRETS.values(), *PLANTED_STORAGE.values()]:
        assert value in logs, f"{value} was not planted where Proctor reads pod output"
    assert "[REDACTED]" in validated["validation"]["message"], validated["validation"]
    trained_message = json.dumps(trained["conditions"])
    assert "dataset server refused" in trained_message, trained_message
    assert "[REDACTED]" in trained_message, trained_message
    bundles = [key for key in objects if key.endswith("/bundle.json")]
    assert bundles, sorted(objects)
    assert all(k.startswith(f"s3://{BUCKET}/proctor/default/leaky-train/") for k in objects), (
        sorted(objects)
    )
    tails = [json.loads(objects[key])["logTail"] for key in bundles]
    assert any("environment:" in line for tail in tails for line in tail), "the env print"
    events = json.loads(state["events"])["items"]
    assert any(e["reason"] == "WatchdogDegraded" and "127.0.0.1" in e["message"] for e in events)

    haystacks: dict[str, str] = {
        "Experiments and ValidationPyramids": state["objects"],
        "Events": state["events"],
        "events.k8s.io Events": state["new events"],
        "the operator's log": operator.output(),
        **{key: body.decode(errors="replace") for key, body in objects.items()},
    }
    leaks = [
        f"{value!r} in {where}: ...{text[max(0, at - 120) : at + 40]}..."
        for value in planted_values()
        for where, text in haystacks.items()
        for variant in (value, json.dumps(value)[1:-1])
        if (at := text.find(variant)) >= 0
    ]
    assert not leaks, "\n".join(leaks)
