"""`proctor cluster up` / `down`: a long-lived local cluster a user drives with kubectl."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.crd_schema import REPO
from tests.support.tools import tool

pytestmark = pytest.mark.kubectl


def _proctor(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("proctor"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_up_writes_a_kubeconfig_kubectl_can_use_and_down_stops_it(tmp_path):
    state = tmp_path / "state"
    up = _proctor("cluster", "up", "--state-dir", str(state), cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stderr
        assert f"export KUBECONFIG={state / 'kubeconfig'}" in up.stdout
        kubectl = [str(REPO / ".bin/kubectl"), "--kubeconfig", str(state / "kubeconfig")]
        namespaces = subprocess.run(
            [*kubectl, "get", "ns", "-o", "name"], capture_output=True, text=True
        )
        assert "namespace/default" in namespaces.stdout
        again = _proctor("cluster", "up", "--state-dir", str(state), cwd=tmp_path)
        assert "already running" in again.stdout
    finally:
        down = _proctor("cluster", "down", "--state-dir", str(state), cwd=tmp_path)
    assert down.returncode == 0
    assert "cluster stopped" in down.stdout
    assert not (state / "kubeconfig").exists()
    assert (
        "no cluster is running"
        in _proctor("cluster", "down", "--state-dir", str(state), cwd=tmp_path).stdout
    )
