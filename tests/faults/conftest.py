"""Shared by the fault tests: a cluster of their own per test, the operator as a process, and a
History of every change the API server stored, checked for what must never happen (a status
that moves backwards, an object created twice).

Randomness is seeded: PROCTOR_FAULT_SEED replays a run (each test prints its seed, and puts it in
every assertion message); without it each run draws a new seed.
"""

from __future__ import annotations

import copy
import itertools
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from proctor.cluster.store import WatchEvent
from tests.support.cluster import RunningCluster, running_cluster
from tests.support.operator import OperatorProcess

# The order an Experiment's phase may only move along (equal ranks may alternate: Kueue may
# suspend a running Job again, and a Blocked experiment becomes Pending when unblocked).
PHASE_RANK = {
    None: 0,
    "Pending": 0,
    "Blocked": 0,
    "Validating": 1,
    "Queued": 2,
    "Training": 2,
    "Succeeded": 3,
    "Failed": 3,
    "Concluded": 4,
}
PYRAMID_RANK = {None: 0, "Pending": 0, "Running": 1, "Passed": 2, "Failed": 2}
LAYER_DONE = ("Passed", "Failed", "Skipped")
WATCHED = {
    ("proctor.dev", "experiments"): "Experiment",
    ("proctor.dev", "validationpyramids"): "ValidationPyramid",
    ("batch", "jobs"): "Job",
}


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("PROCTOR_FAULT_SEED") or random.SystemRandom().randrange(10**6))
    print(f"fault seed: {value} (replay with PROCTOR_FAULT_SEED={value})")
    return value


@pytest.fixture
def cluster(tmp_path) -> Iterator[RunningCluster]:
    with running_cluster(tmp_path / "cluster") as handle:
        handle.kubectl("apply", "-f", "crds/")
        yield handle


@pytest.fixture
def history(cluster) -> History:
    return History(cluster)


@pytest.fixture
def operator(cluster, tmp_path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster, tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()


@dataclass(frozen=True)
class Change:
    """One stored version of a watched object."""

    time: float
    type: str  # ADDED, MODIFIED, DELETED
    kind: str
    name: str
    resource_version: int
    labels: dict[str, str]
    status: dict[str, Any]


@dataclass
class History:
    """Every change of Experiments, ValidationPyramids and Jobs, as the API server stored it:
    recorded by a listener on its store, so nothing is missed (a watch could be cut)."""

    cluster: RunningCluster
    changes: list[Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], dict[str, Any]] = {}
        self.cluster.call(self.cluster.cluster.store.add_listener, self._on_event)

    def _on_event(self, event: WatchEvent) -> None:
        kind = WATCHED.get(event.key)
        if kind is None:
            return
        meta = event.object["metadata"]
        change = Change(
            time=time.monotonic(),
            type=event.type,
            kind=kind,
            name=meta["name"],
            resource_version=event.resource_version,
            labels=dict(meta.get("labels") or {}),
            status=copy.deepcopy(event.object.get("status") or {}),
        )
        with self._lock:
            self.changes.append(change)
            self._latest[(kind, change.name)] = change.status

    def of(self, kind: str, name: str | None = None) -> list[Change]:
        with self._lock:
            return [c for c in self.changes if c.kind == kind and name in (None, c.name)]

    def created(self, kind: str) -> Counter[str]:
        """How many times each object of `kind` was created (ADDED), by name."""
        return Counter(c.name for c in self.of(kind) if c.type == "ADDED")

    def latest(self, kind: str, name: str) -> dict[str, Any]:
        """The newest stored status of an object, {} if it was never stored."""
        with self._lock:
            return self._latest.get((kind, name), {})

    def regressions(self) -> list[str]:
        """Every step back between two consecutive stored statuses of an object."""
        found: list[str] = []
        by_object: dict[tuple[str, str], list[Change]] = {}
        for change in self.of("Experiment") + self.of("ValidationPyramid"):
            if change.type != "DELETED":
                by_object.setdefault((change.kind, change.name), []).append(change)
        for (kind, name), changes in sorted(by_object.items()):
            check = _experiment_step if kind == "Experiment" else _pyramid_step
            for before, after in itertools.pairwise(changes):
                found += [
                    f"{kind} {name} rv {before.resource_version}->{after.resource_version}: {p}"
                    for p in check(before.status, after.status) + _conditions(before, after)
                ]
        return found


def _experiment_step(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = []
    was, now = before.get("phase"), after.get("phase")
    if PHASE_RANK[now] < PHASE_RANK[was]:
        problems.append(f"phase went back from {was} to {now}")
    if was in ("Succeeded", "Failed") and now in ("Succeeded", "Failed") and was != now:
        problems.append(f"the outcome changed from {was} to {now}")
    step_was = (before.get("training") or {}).get("step")
    step_now = (after.get("training") or {}).get("step")
    if step_was is not None and (step_now is None or step_now < step_was):
        problems.append(f"training.step went back from {step_was} to {step_now}")
    if (after.get("anomalyCount") or 0) < (before.get("anomalyCount") or 0):
        problems.append(
            f"anomalyCount went back from {before.get('anomalyCount')} to "
            f"{after.get('anomalyCount')}"
        )
    validation_was = (before.get("validation") or {}).get("phase")
    validation_now = (after.get("validation") or {}).get("phase")
    if PYRAMID_RANK[validation_now] < PYRAMID_RANK[validation_was]:
        problems.append(f"validation.phase went back from {validation_was} to {validation_now}")
    return problems


def _pyramid_step(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = []
    was, now = before.get("phase"), after.get("phase")
    if PYRAMID_RANK[now] < PYRAMID_RANK[was] or (was in LAYER_DONE and now != was):
        problems.append(f"phase went from {was} to {now}")
    layers_now = {e["layer"]: e for e in after.get("layers") or []}
    for entry in before.get("layers") or []:
        later = layers_now.get(entry["layer"])
        if later is None:
            problems.append(f"layer {entry['layer']} disappeared")
            continue
        if entry["phase"] in LAYER_DONE and later["phase"] != entry["phase"]:
            problems.append(
                f"layer {entry['layer']} went from {entry['phase']} to {later['phase']}"
            )
        if later.get("attempts", 0) < entry.get("attempts", 0):
            problems.append(f"layer {entry['layer']} attempts went back")
    return problems


def _conditions(before: Change, after: Change) -> list[str]:
    problems = []
    now = {c["type"]: c for c in after.status.get("conditions") or []}
    for condition in before.status.get("conditions") or []:
        later = now.get(condition["type"])
        if later is None:
            problems.append(f"condition {condition['type']} disappeared")
        elif _time(later["lastTransitionTime"]) < _time(condition["lastTransitionTime"]):
            problems.append(
                f"condition {condition['type']} lastTransitionTime went back from "
                f"{condition['lastTransitionTime']} to {later['lastTransitionTime']}"
            )
    return problems


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
