"""Shutting down: a resync pass in flight ends after the object it is on, so the process can
exit (the thread running it would otherwise hold the exit for as long as the pass takes)."""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry

from proctor.controller.metrics import OperatorMetrics
from proctor.controller.reconciler import Reconciler
from proctor.controller.settings import ControllerSettings


class SlowApiServer:
    """Every read takes 50 ms, as on a loaded API server; counts the reads."""

    def __init__(self) -> None:
        self.reads = 0

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        self.reads += 1
        time.sleep(0.05)
        return None  # gone: the reconcile ends there


def test_a_resync_pass_in_flight_ends_soon_after_stop():
    kube = SlowApiServer()
    reconciler = Reconciler(kube, ControllerSettings(), OperatorMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    for i in range(200):  # 200 unfinished objects: a 10 s pass
        reconciler.track("Experiment", "lab", f"exp-{i:03d}", "Training")
    passing = threading.Thread(target=reconciler.resync)
    passing.start()
    time.sleep(0.3)
    reconciler.stop()
    started = time.monotonic()
    passing.join(timeout=5)
    assert not passing.is_alive(), "the pass went on after stop()"
    assert time.monotonic() - started < 1.0
    assert kube.reads < 50
