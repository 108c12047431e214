"""The watchdog against real programs: a real trainer with a planted NaN, a real Prometheus that
scrapes it and a DCGM exporter's output, and moto's S3 server as storage, down at first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from proctor.api.v1alpha1.experiment import WatchdogSpec
from proctor.watchdog.runner import Watchdog, WatchdogConfig
from tests.support.prometheus import free_port, prometheus, serve_text
from tests.support.s3 import MotoServer, s3_environment

pytestmark = pytest.mark.slow
CODE = Path(__file__).parent / "code"
FIXTURES = Path("/work/shared/fixtures/dcgm")
POD, NAMESPACE = "lr-warmup-2-train-0-x7k2p", "team-a"  # the pod the DCGM fixtures describe
PLANTED = "hf_plantedSecretValue0123456789"


def _fixtures_dir() -> Path:
    local = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dcgm"
    return local if local.exists() else FIXTURES


def test_a_nan_and_a_fatal_xid_become_bundles_that_survive_a_storage_outage(tmp_path, monkeypatch):
    monkeypatch.setenv("PROCTOR_REDACT_0", PLANTED)  # as the operator hands it to the sidecar
    dcgm_server, dcgm_port = serve_text((_fixtures_dir() / "h100-xid79.prom").read_text())
    trainer_port = free_port()
    metrics_file = tmp_path / "metrics.jsonl"
    trainer_log = (tmp_path / "trainer.log").open("w")
    trainer = subprocess.Popen(
        [
            *(sys.executable, "-m", "proctor.cli.main", "train"),
            *("--entrypoint", "careless_nan:setup", "--path", str(CODE)),
            *("--config", '{"jump_at": 400}', "--max-steps", "100000", "--max-duration", "2m"),
            *("--metrics-port", str(trainer_port), "--metrics-file", str(metrics_file)),
            *("--experiment", "exp", "--namespace", NAMESPACE, "--log-every", "20"),
        ],
        env={**os.environ, "HF_TOKEN": PLANTED},
        stdout=trainer_log,
        stderr=subprocess.STDOUT,
    )
    s3 = MotoServer()  # not started yet: object storage is down
    try:
        with (
            prometheus(tmp_path, [f"127.0.0.1:{trainer_port}", f"127.0.0.1:{dcgm_port}"]) as prom,
            s3_environment(s3),
        ):
            # static targets carry no pod label, so the exporter's own `pod` label stays as is
            prom.wait_for(f'DCGM_FI_DEV_XID_ERRORS{{pod="{POD}"}}')
            spec = WatchdogSpec.model_validate({"metricSources": {"prometheusURL": prom.url}})
            config = WatchdogConfig(
                experiment="exp",
                namespace=NAMESPACE,
                pod=POD,
                metrics_url=f"http://127.0.0.1:{trainer_port}/metrics",
                metrics_file=metrics_file,
                bundle_uri=f"s3://bundles/watchdog/{NAMESPACE}/exp",
                checkpoint_uri=None,
                spool_dir=tmp_path / "spool",
                spec=spec,
            )
            watchdog = Watchdog(config, kube=None, upload_retry_seconds=0.2)
            found: dict[str, object] = {}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not {"NonFiniteLoss", "FatalXID"} <= set(found):
                for finding in watchdog.check():
                    found[finding.kind.value] = finding
                time.sleep(0.5)
            assert {"NonFiniteLoss", "FatalXID"} <= set(found), (found, trainer_log.name)
            for _ in range(5):  # the same incidents, checked again: no second report
                assert not [f for f in watchdog.check() if f.kind.value in found]
            assert len(watchdog.spool.waiting()) == 2, "storage is down: both bundles wait"

            s3.start()  # storage is back
            boto3.client("s3").create_bucket(Bucket="bundles")
            deadline = time.monotonic() + 30
            while watchdog.spool.waiting() and time.monotonic() < deadline:
                time.sleep(0.3)
                watchdog.spool.flush()
            assert watchdog.spool.waiting() == [], "every spooled bundle is uploaded"
            keys = [
                o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="bundles")["Contents"]
            ]
            bundles = {k.rsplit("/", 2)[-2] for k in keys}
            assert {b.split("-")[1] for b in bundles} == {"NonFiniteLoss", "FatalXID"}
            for bundle in bundles:
                names = {k.rsplit("/", 1)[-1] for k in keys if f"/{bundle}/" in k}
                assert names == {"bundle.json", "metrics.png", "recovery.md"}, names
            texts = [
                boto3.client("s3").get_object(Bucket="bundles", Key=k)["Body"].read().decode()
                for k in keys
                if not k.endswith(".png")
            ]
            assert all(PLANTED not in text for text in texts), "a planted secret leaked"
            assert all("testing-secret-key-for-moto" not in text for text in texts)
            xid = next(
                json.loads(t) for t in texts if '"kind": "FatalXID"' in t and t.startswith("{")
            )
            assert xid["finding"]["evidence"]
            assert {g["gpu"] for g in xid["dcgmSnapshot"]} == {"0", "1"}
            assert xid["recoveryStage"] == "RetryOnHealthyHardware"
    finally:
        trainer.kill()
        trainer.wait(timeout=30)
        trainer_log.close()
        s3.stop()
        dcgm_server.shutdown()
    assert PLANTED in (tmp_path / "trainer.log").read_text(), "the secret was planted in the log"


def test_a_planted_stall_is_found_while_the_trainer_process_lives(tmp_path, monkeypatch):
    from proctor.watchdog import detectors

    # The documented floor is 5 minutes of no progress; a test cannot wait that long.
    monkeypatch.setattr(detectors, "STALL_MIN_SECONDS", 3.0)
    port = free_port()
    metrics_file = tmp_path / "metrics.jsonl"
    trainer = subprocess.Popen(
        [
            *(sys.executable, "-m", "proctor.cli.main", "train"),
            *("--entrypoint", "stalls:setup", "--path", str(CODE), "--max-steps", "100000"),
            *("--metrics-port", str(port), "--metrics-file", str(metrics_file)),
            *("--experiment", "exp", "--namespace", NAMESPACE, "--log-every", "10"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        config = WatchdogConfig(
            experiment="exp",
            namespace=NAMESPACE,
            pod=None,
            metrics_url=f"http://127.0.0.1:{port}/metrics",
            metrics_file=metrics_file,
            bundle_uri=f"file://{tmp_path}/bundles/{NAMESPACE}/exp",
            checkpoint_uri=None,
            spool_dir=tmp_path / "spool",
        )
        watchdog = Watchdog(config, kube=None)
        stalls = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stalls:
            stalls = [f for f in watchdog.check() if f.kind.value == "Stall"]
            time.sleep(0.5)
        assert stalls, "the stall was never found"
        assert trainer.poll() is None, "found while the process is alive: a stall, not an exit"
        assert stalls[0].step is not None
        assert 190 <= stalls[0].step <= 200
        assert list((tmp_path / "bundles").rglob("bundle.json"))
    finally:
        trainer.kill()
        trainer.wait(timeout=30)
