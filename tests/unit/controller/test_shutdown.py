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


class CountingApiServer:
    def __init__(self) -> None:
        self.reads = 0

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        self.reads += 1
        return None


def test_a_waiting_echo_that_absorbed_another_request_still_reconciles():
    """The echo of the operator's own write arrives while that write's reconcile still holds
    the lock; a Job event arrives behind it and is left to it (coalesced). When the lock is
    free the echo is recognised, but it must still run: it carries the Job event's work."""
    kube = CountingApiServer()
    reconciler = Reconciler(kube, ControllerSettings(), OperatorMetrics(CollectorRegistry()))  # type: ignore[arg-type]
    key = ("Experiment", "lab", "exp")
    lock = reconciler._lock(key)
    lock.acquire()  # the reconcile that is writing status version 7
    echo = threading.Thread(
        target=reconciler.experiment, args=("lab", "exp"), kwargs={"version": "7"}
    )
    echo.start()
    while key not in reconciler._waiting:
        time.sleep(0.01)
    reconciler.experiment("lab", "exp", child=True)  # a Job changed: coalesced into the echo
    reconciler._own_writes[key] = "7"  # the write's answer, recorded before the lock goes
    lock.release()
    echo.join(timeout=5)
    assert kube.reads == 1, "the Job event's reconcile was lost"
