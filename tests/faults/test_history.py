"""The fault tests' History finds every kind of step back it claims to (no servers: fed by hand)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from proctor.cluster.store import WatchEvent
from tests.faults.conftest import History

EXPERIMENTS = ("proctor.dev", "experiments")
PYRAMIDS = ("proctor.dev", "validationpyramids")


def _history(*statuses: tuple[tuple[str, str], dict[str, Any]]) -> History:
    store = SimpleNamespace(add_listener=lambda listener: None)
    cluster = SimpleNamespace(
        call=lambda function, *args: function(*args), cluster=SimpleNamespace(store=store)
    )
    history = History(cluster)  # type: ignore[arg-type]
    for version, (key, status) in enumerate(statuses, start=1):
        obj = {"metadata": {"name": "x"}, "status": status}
        history._on_event(WatchEvent(version, "MODIFIED", key, "default", obj))
    return history


def _condition(kind: str, time: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": "R", "lastTransitionTime": time}


def test_a_run_that_only_moves_forward_has_no_regressions():
    validated = [_condition("V", "2026-01-01T00:00:00Z")]
    trained = [*validated, _condition("T", "2026-01-01T00:05:00Z")]
    history = _history(
        (EXPERIMENTS, {"phase": "Pending"}),
        (EXPERIMENTS, {"phase": "Validating", "conditions": validated}),
        (EXPERIMENTS, {"phase": "Training", "training": {"step": 5}, "conditions": trained}),
        (EXPERIMENTS, {"phase": "Queued", "training": {"step": 5}, "conditions": trained}),
        (EXPERIMENTS, {"phase": "Succeeded", "training": {"step": 9}, "conditions": trained}),
        (EXPERIMENTS, {"phase": "Concluded", "training": {"step": 9}, "conditions": trained}),
    )
    assert history.regressions() == []
    assert history.latest("Experiment", "x")["phase"] == "Concluded"


def test_every_step_back_is_found():
    history = _history(
        (EXPERIMENTS, {"phase": "Training", "training": {"step": 50}, "anomalyCount": 2}),
        (EXPERIMENTS, {"phase": "Validating", "training": {"step": 40}, "anomalyCount": 1}),
        (EXPERIMENTS, {"phase": "Failed", "conditions": [_condition("T", "2026-01-01T00:01:00Z")]}),
        (
            EXPERIMENTS,
            {"phase": "Succeeded", "conditions": [_condition("T", "2026-01-01T00:00:00Z")]},
        ),
        (EXPERIMENTS, {"phase": "Succeeded"}),
    )
    found = "\n".join(history.regressions())
    for problem in (
        "phase went back from Training to Validating",
        "training.step went back from 50 to 40",
        "anomalyCount went back from 2 to 1",
        "the outcome changed from Failed to Succeeded",
        "condition T lastTransitionTime went back",
        "condition T disappeared",
    ):
        assert problem in found, found


def test_a_passed_layer_that_runs_again_is_found():
    passed = {"layer": "L0", "phase": "Passed", "attempts": 2}
    history = _history(
        (PYRAMIDS, {"phase": "Running", "layers": [passed]}),
        (PYRAMIDS, {"phase": "Running", "layers": [{**passed, "phase": "Running", "attempts": 1}]}),
    )
    found = "\n".join(history.regressions())
    assert "layer L0 went from Passed to Running" in found, found
    assert "layer L0 attempts went back" in found, found
