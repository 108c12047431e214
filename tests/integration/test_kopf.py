"""kopf, the framework Proctor's operator is built on, runs against the emulated cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kubectl

HANDLERS = Path(__file__).parent / "pod_scripts" / "kopf_handlers.py"


def test_a_kopf_operator_watches_patches_status_and_posts_events(with_crds):
    env = {**os.environ, "KUBECONFIG": str(with_crds.kubeconfig)}
    operator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--namespace",
            "default",
            str(HANDLERS),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(2)  # kopf lists and starts watching before the object arrives
        with_crds.kubectl("apply", "-f", "examples/digits/experiment.yaml")
        with_crds.kubectl(
            "wait",
            "--for=jsonpath={.status.phase}=Pending",
            "exp/digits-mlp-baseline",
            "--timeout=30s",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = with_crds.kubectl(
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=digits-mlp-baseline,reason=Seen",
                "-o",
                "jsonpath={.items[*].message}",
            ).stdout
            if events:
                break
            time.sleep(0.5)
        assert "kopf saw digits-mlp-baseline" in events
    finally:
        operator.terminate()
        output, _ = operator.communicate(timeout=30)
    assert "Handler 'experiment_created' succeeded" in output
    assert "Traceback" not in output
