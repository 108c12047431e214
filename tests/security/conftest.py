"""One installation for the end-to-end security tests, shared by the package: an emulated cluster
with pods, the real operator process, and moto's S3 server as the bundle store, with secrets
planted everywhere they could leak from.

Planted: a Kubernetes Secret whose keys the Experiments reference from spec.code.env (secretKeyRef,
under credential-like and innocent names alike), AWS-style storage keys in the operator's
environment and in the watchdog's Secret (the emulated pods inherit the host's environment too,
so the trainer sees them as well). (A token in the installation's Prometheus URL is not planted:
the operator refuses to start with one, tests/unit/controller/test_settings.py.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.support.cluster import RunningCluster, running_cluster
from tests.support.operator import OperatorProcess, free_port
from tests.support.s3 import MotoServer

BUCKET = "bundles"
BUNDLE_URI = f"s3://{BUCKET}/proctor"
STORAGE_SECRET = "proctor-storage"
CODE_SECRET = "leaky-creds"
# Values a pattern cannot recognise as well as ones it can: only exact-value redaction catches
# the first kind, so both paths are tested.
PLANTED_CODE_SECRETS = {
    "hf": "hf_Pl4ntedSecretRefValue9f8e7d6c",
    "dataset": "https://reader:Pl4ntedDatasetPassw0rd@data.example/d",
    "bearer": "eyJPl4ntedBearerToken.c2lnbmF0dXJl",
    "salt": "Pl4ntedOpaqueSaltValue0x7f3e",
}
PLANTED_STORAGE = {
    "AWS_ACCESS_KEY_ID": "AKIAPL4NTEDKEY000001",
    "AWS_SECRET_ACCESS_KEY": "Pl4ntedAwsSecret/Key+0123456789abcdefghij",
}


def planted_values() -> list[str]:
    return [*PLANTED_CODE_SECRETS.values(), *PLANTED_STORAGE.values()]


def secret_env() -> list[dict[str, object]]:
    """spec.code.env: every planted code secret, by secretKeyRef."""
    names = {"hf": "HF_TOKEN", "dataset": "DATASET_URL", "bearer": "BEARER", "salt": "SEED_SALT"}
    return [
        {"name": names[key], "valueFrom": {"secretKeyRef": {"name": CODE_SECRET, "key": key}}}
        for key in PLANTED_CODE_SECRETS
    ]


@pytest.fixture(scope="package")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def installation(moto, tmp_path_factory) -> Iterator[tuple[RunningCluster, OperatorProcess]]:
    """The cluster and the operator, with the planted environment (restored afterwards)."""
    closed = free_port()  # nothing listens: the watchdog's Prometheus reads fail, and say so
    planted_env = {
        **PLANTED_STORAGE,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto.url,
        "PROCTOR_STORAGE_ENDPOINT": moto.url,
        "PROCTOR_WATCHDOG_SECRET": STORAGE_SECRET,
        "PROCTOR_PROMETHEUS_URL": f"http://127.0.0.1:{closed}",
    }
    saved = {key: os.environ.get(key) for key in planted_env}
    os.environ.update(planted_env)
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
            cluster.kubectl("apply", "-f", "crds/")
            storage = [f"--from-literal={k}={v}" for k, v in PLANTED_STORAGE.items()]
            cluster.kubectl("create", "secret", "generic", STORAGE_SECRET, *storage)
            code = [f"--from-literal={k}={v}" for k, v in PLANTED_CODE_SECRETS.items()]
            cluster.kubectl("create", "secret", "generic", CODE_SECRET, *code)
            log = Path(tmp_path_factory.mktemp("operator")) / "operator.log"
            operator = OperatorProcess(cluster, log, "--bundle-uri", BUNDLE_URI)
            operator.start()
            try:
                yield cluster, operator
            finally:
                operator.stop()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
