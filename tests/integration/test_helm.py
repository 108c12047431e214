"""The real helm (v4) installs, upgrades and uninstalls the chart on the emulated cluster, and the
operator, started exactly as the chart's Deployment starts it, joins the chart's kopf peering.

The emulator runs Jobs' pods, not Deployments, so the install does not `--wait`; the operator
runs as a process with the Deployment's arguments and environment instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from tests.support.operator import free_port

pytestmark = pytest.mark.kubectl

VALUES = ("--set", "storage.bundleURI=s3://bundles/proctor", "--set", "kueue.defaultQueue=gpus")


def _deployment(cluster) -> dict:
    out = cluster.kubectl("get", "deployment", "proctor-operator", "-o", "json").stdout
    return json.loads(out)


def _operator_as_deployed(cluster, tmp_path) -> subprocess.Popen[bytes]:
    [container] = _deployment(cluster)["spec"]["template"]["spec"]["containers"]
    args = [
        arg
        for arg in container["args"]
        if not arg.startswith(("--liveness=", "--metrics-port="))  # this machine's free ports
    ]
    env = {var["name"]: var["value"] for var in container["env"]}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proctor.cli.main",
            *args,
            f"--liveness=http://127.0.0.1:{free_port()}/healthz",
            f"--metrics-port={free_port()}",
        ],
        env={**os.environ, **env, "KUBECONFIG": str(cluster.kubeconfig)},
        stdout=(tmp_path / "operator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_install_upgrade_and_uninstall_keep_users_crds_and_the_operator_joins_the_peering(
    cluster, tmp_path
):
    cluster.helm("install", "proctor", "charts/proctor", "--namespace", "default", *VALUES)
    crds = cluster.kubectl("get", "crd", "-o", "name").stdout
    for name in ("experiments.proctor.dev", "validationpyramids.proctor.dev"):
        assert name in crds
    assert "clusterkopfpeerings.kopf.dev" in crds
    [container] = _deployment(cluster)["spec"]["template"]["spec"]["containers"]
    assert "--peering=proctor" in container["args"]
    assert {"name": "PROCTOR_DEFAULT_QUEUE", "value": "gpus"} in container["env"]

    operator = _operator_as_deployed(cluster, tmp_path)
    try:
        deadline = time.monotonic() + 60
        peers: dict = {}
        while time.monotonic() < deadline and not peers:
            peering = cluster.kubectl(
                "get", "clusterkopfpeering", "proctor", "-o", "yaml", check=False
            )
            if peering.returncode == 0:  # the operator creates it when it starts
                peers = yaml.safe_load(peering.stdout).get("status") or {}
            time.sleep(0.5)
        log = (tmp_path / "operator.log").read_text()
        assert operator.poll() is None, log
        assert len(peers) == 1, log  # it created the peering object and announced itself
    finally:
        operator.terminate()
        operator.wait(timeout=30)

    cluster.helm(
        "upgrade", "proctor", "charts/proctor", "--namespace", "default", *VALUES,
        "--set", "operator.resyncSeconds=5",
    )  # fmt: skip
    env = _deployment(cluster)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PROCTOR_RESYNC_SECONDS", "value": "5"} in env
    cluster.kubectl("get", "clusterkopfpeering", "proctor")  # an upgrade leaves it alone

    cluster.helm("uninstall", "proctor", "--namespace", "default")
    # helm.sh/resource-policy: keep: uninstalling never deletes users' experiments.
    crds = cluster.kubectl("get", "crd", "-o", "name").stdout
    assert "experiments.proctor.dev" in crds
    assert "deployment" not in cluster.kubectl("get", "deployments", "-o", "name").stdout
