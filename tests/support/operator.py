"""The real operator (`proctor operator`) as a process against an emulated cluster, and the
manifests the end-to-end tests apply."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.support.cluster import RunningCluster
from tests.support.crd_schema import REPO

DIGITS_DIR = REPO / "examples" / "digits"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """`proctor operator` in a subprocess; kill it (SIGKILL) and start it again at will."""

    def __init__(self, cluster: RunningCluster, log: Path, *extra: str) -> None:
        self.cluster = cluster
        self.log = log
        self.extra = extra
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== operator start {self.starts} =====\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "proctor.cli.main",
                    "operator",
                    "--namespace",
                    "default",
                    "--resync-seconds",
                    "1",
                    "--progress-seconds",
                    "1",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--liveness",
                    f"http://127.0.0.1:{self.liveness_port}/healthz",
                    *self.extra,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies or the OOM killer strikes."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def digits_experiment(name: str, tmp: Path, **changes: Any) -> dict[str, Any]:
    """The digits example, made to run here: its code importable in the pods, checkpoints in
    `tmp`, a short budget. `changes` are merged into spec (dicts deeply)."""
    manifest = yaml.safe_load((DIGITS_DIR / "experiment.yaml").read_text())
    manifest["metadata"]["name"] = name
    # These tests exercise the operator, not the research discipline: they rerun the example on
    # purpose and conclude only some runs (tests/e2e/test_guardrails.py tests the discipline).
    manifest["metadata"].pop("labels", None)
    spec = manifest["spec"]
    spec["guardrails"] = {"allowRetry": {"reason": "the operator's tests rerun the example"}}
    spec["code"]["env"] = [{"name": "PYTHONPATH", "value": str(DIGITS_DIR)}]
    spec["training"]["budget"] = {"maxSteps": 150, "maxDuration": "5m"}
    # L0's timing checks assume an idle machine; these tests are about the operator, and a
    # loaded 2-core CI machine must not fail them on data wait.
    spec["validation"]["layers"]["l0"]["maxDataWaitRatio"] = 0.6
    spec["training"]["checkpoint"] = {
        "uri": f"file://{tmp}/checkpoints",
        "everySteps": 50,
        "keepLast": 2,
    }
    _merge(spec, changes)
    return manifest


def _merge(into: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def apply(cluster: RunningCluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def get(cluster: RunningCluster, resource: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", resource, "-o", "json").stdout)
    return result


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def phase(cluster: RunningCluster, resource: str) -> str:
    return str(get(cluster, resource).get("status", {}).get("phase", ""))
