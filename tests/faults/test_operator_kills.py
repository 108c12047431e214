"""The operator SIGKILLed at 50 random moments across a run of 20 experiments, and started again
at once each time: every experiment still ends as it should, nothing is created twice, and no
status field ever moves backwards (checked on every version the API server stored).

The experiments are cheap, so the kills fall among many transitions rather than inside long
runs: most skip validation (with a reason) and "train" with `sleep`; three run a real pyramid
(one with a planted bug, which fails at L1); two run the real trainer and get anomalies posted
while they train; two are meant to fail in training; one waits in a Kueue queue until the test
admits it; one is Blocked until the experiment it cites exists; two are concluded by the test.
The watchdog is off everywhere: it is not what is under test here.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proctor.api.anomaly_events import anomaly_event
from proctor.api.v1alpha1 import Anomaly
from tests.support.crd_schema import REPO
from tests.support.operator import apply, digits_experiment, get

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(420)]
KILLS = 50
PLANTED = REPO / "tests" / "pyramid" / "planted"
SKIP = {"skip": {"reason": "the operator's restart safety is under test, not this code"}}
NO_WATCHDOG = {"enabled": False}
CONCLUSION = {
    "verdict": "inconclusive",
    "evidence": "slept 2 s while the operator was killed 50 times",
    "learnings": "the operator survives being killed",
}


@dataclass
class Planned:
    """An experiment, where it must end, and the Jobs it must own (each created once)."""

    manifest: dict[str, Any]
    phase: str
    condition: tuple[str, str] | None  # (type, reason) it must end with
    jobs: set[str]
    chores: set[str] = field(default_factory=set)  # anomalies, conclude, admit
    done: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


def _layers(*enabled: int) -> dict[str, Any]:
    return {f"l{i}": {"enabled": i in enabled} for i in range(4)}


def _experiments(tmp: Path, rng: random.Random) -> list[Planned]:
    def cheap(name: str, command: list[str], **training: Any) -> dict[str, Any]:
        return digits_experiment(
            name,
            tmp,
            validation=SKIP,
            training={"command": command, **training},
            watchdog=NO_WATCHDOG,
        )

    def sleeper() -> list[str]:
        return ["sleep", f"{rng.uniform(0.5, 3):.1f}"]

    trained = ("Trained", "TrainingSucceeded")
    plans = [
        Planned(cheap(f"cheap-{i}", sleeper()), "Succeeded", trained, {"train"}) for i in range(8)
    ]
    plans += [
        Planned(cheap(f"concluded-{i}", ["sleep", "1"]), "Concluded", None, {"train"}, {"conclude"})
        for i in range(2)
    ]
    plans += [
        Planned(
            digits_experiment(
                f"trainer-{i}",
                tmp,
                validation=SKIP,
                watchdog=NO_WATCHDOG,
                training={
                    "budget": {"maxSteps": 100_000, "maxDuration": "25s"},
                    "checkpoint": {"uri": f"file://{tmp}/checkpoints", "everySteps": 100},
                },
            ),
            "Succeeded",
            trained,
            {"train"},
            {"anomalies"},
        )
        for i in range(2)
    ]
    plans.append(
        Planned(
            cheap("queued", ["sleep", "1"], queueName="q"),
            "Succeeded",
            trained,
            {"train"},
            {"admit"},
        )
    )
    blocked = cheap("cites-later", ["sleep", "1"])
    blocked["spec"]["hypothesis"]["inspiredBy"] = [{"kind": "Experiment", "ref": "cited"}]
    plans.append(Planned(blocked, "Succeeded", trained, {"train"}))
    plans.append(Planned(cheap("cited", ["sleep", "1"]), "Succeeded", trained, {"train"}))
    plans += [
        Planned(
            cheap("crashes", ["sh", "-c", "exit 1"]),
            "Failed",
            ("Trained", "TrainingFailed"),
            {"train"},
        ),
        Planned(
            cheap("bad-config", ["sh", "-c", "exit 2"]),
            "Failed",
            ("Trained", "TrainingFailed"),
            {"train"},
        ),
    ]
    validated = ("Validated", "PyramidPassed")
    plans += [
        Planned(
            digits_experiment(
                "pyramid-full",
                tmp,
                validation={"layers": _layers(0, 1, 2, 3)},
                training={"command": ["sleep", "1"]},
                watchdog=NO_WATCHDOG,
            ),
            "Succeeded",
            validated,
            {"l0-1", "l1-1", "l2-1", "l3-1", "train"},
        ),
        Planned(
            digits_experiment(
                "pyramid-l0",
                tmp,
                validation={"layers": _layers(0)},
                training={"command": ["sleep", "1"]},
                watchdog=NO_WATCHDOG,
            ),
            "Succeeded",
            validated,
            {"l0-1", "train"},
        ),
        Planned(
            digits_experiment(
                "planted-bug",
                tmp,
                code={
                    "entrypoint": "detached_output:setup",
                    "env": [{"name": "PYTHONPATH", "value": str(PLANTED)}],
                },
                validation={"layers": _layers(0, 1, 2, 3)},
                watchdog=NO_WATCHDOG,
            ),
            "Failed",
            ("Validated", "PyramidFailed"),
            {"l0-1", "l1-1"},
        ),
    ]
    assert len(plans) == 20
    return plans


def _schedule(plans: list[Planned], rng: random.Random) -> dict[int, list[Planned]]:
    """Before which kill each experiment is applied: the slow ones first, the rest spread over
    the first 40 kills, and the cited experiment well after the one that cites it."""
    slow = [p for p in plans if p.name.startswith(("trainer", "pyramid", "planted"))]
    rest = [p for p in plans if p not in slow and p.name not in ("cites-later", "cited")]
    rng.shuffle(slow)
    rng.shuffle(rest)
    due: dict[int, list[Planned]] = {}
    for plan in slow:
        due.setdefault(rng.randrange(0, 6), []).append(plan)
    for plan in rest:
        due.setdefault(rng.randrange(0, 40), []).append(plan)
    by_name = {p.name: p for p in plans}
    due.setdefault(rng.randrange(0, 10), []).append(by_name["cites-later"])
    due.setdefault(rng.randrange(20, 40), []).append(by_name["cited"])
    return due


def test_fifty_kills_of_the_operator_lose_nothing_and_move_nothing_backwards(
    cluster, operator, history, tmp_path, seed
):
    rng = random.Random(seed)
    plans = _experiments(tmp_path, rng)
    due = _schedule(plans, rng)
    restarts: list[float] = []

    def chores() -> None:
        for plan in plans:
            status = history.latest("Experiment", plan.name)
            _chores(cluster, plan, status)

    began = time.monotonic()
    for kill in range(KILLS):
        started = time.monotonic()
        for plan in due.get(kill, []):
            apply(cluster, plan.manifest)
        # A fifth of the kills fall while it starts (imports, first listing); the rest at up to
        # 1.5 s after its first request, among the reconciles of what it listed.
        early = rng.random() < 0.2
        wait = rng.uniform(0.05, 0.8) if early else rng.uniform(0.0, 1.5)
        deadline = started + wait if early else None
        requests = _kopf_requests(cluster)
        while deadline is None or time.monotonic() < deadline:
            chores()
            if deadline is None and _kopf_requests(cluster) > requests:
                restarts.append(time.monotonic() - started)
                deadline = time.monotonic() + wait
            assert time.monotonic() - started < 60, "the operator did not start"
            time.sleep(0.02)
        operator.kill()
        operator.start()
    killing = time.monotonic() - began

    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        chores()
        latest = {p.name: history.latest("Experiment", p.name) for p in plans}
        if all(
            latest[p.name].get("phase") == p.phase
            and ("anomalies" not in p.chores or latest[p.name].get("anomalyCount") == 2)
            for p in plans
        ):
            break
        time.sleep(0.2)
    context = (
        f"seed {seed}; {operator.starts} operator starts; start to first request: median "
        f"{statistics.median(restarts):.2f}s, max {max(restarts):.2f}s (of {len(restarts)} "
        f"that got that far); the kills took {killing:.0f}s"
    )
    print(context)
    wrong = {
        p.name: history.latest("Experiment", p.name).get("phase")
        for p in plans
        if history.latest("Experiment", p.name).get("phase") != p.phase
    }
    assert not wrong, (wrong, context, operator.output()[-3000:])
    assert operator.starts == KILLS + 1, context

    for plan in plans:
        status = history.latest("Experiment", plan.name)
        if plan.condition is not None:
            kind, reason = plan.condition
            found = next(c for c in status["conditions"] if c["type"] == kind)
            assert found["reason"] == reason, (plan.name, found, context)
        if "anomalies" in plan.chores:
            assert status["anomalyCount"] == 2, (plan.name, status.get("anomalies"), context)
            assert status["training"]["step"] > 0, (plan.name, status["training"], context)
    blocked = [c.status.get("phase") for c in history.of("Experiment", "cites-later")]
    assert "Blocked" in blocked, (blocked, context)
    assert "Queued" in [c.status.get("phase") for c in history.of("Experiment", "queued")]

    # No Job (and no pyramid) created twice, and none that should not exist.
    jobs = history.created("Job")
    assert all(count == 1 for count in jobs.values()), (
        {j: n for j, n in jobs.items() if n > 1},
        context,
    )
    for plan in plans:
        mine = {
            job.removeprefix(f"{plan.name}-") for job in jobs if _owner(job, plans) == plan.name
        }
        assert mine == plan.jobs, (plan.name, mine, context)
    pyramids = history.created("ValidationPyramid")
    assert pyramids == {"pyramid-full": 1, "pyramid-l0": 1, "planted-bug": 1}, (pyramids, context)

    assert history.regressions() == [], context
    assert "Traceback" not in operator.output(), operator.output()[-5000:]


def _owner(job: str, plans: list[Planned]) -> str:
    """The experiment a Job name belongs to (the longest name that prefixes it)."""
    names = [p.name for p in plans if job.startswith(f"{p.name}-")]
    return max(names, key=len) if names else ""


def _kopf_requests(cluster) -> int:
    counts = cluster.cluster.api.request_counts
    return sum(n for (client, _, _), n in list(counts.items()) if client == "kopf")


def _chores(cluster, plan: Planned, status: dict[str, Any]) -> None:
    """What the test does to an experiment along the way, each once: post two anomalies while it
    trains, conclude it once it succeeded, admit its queued Job."""
    phase = status.get("phase")
    if "anomalies" in plan.chores and phase in ("Training", "Succeeded"):
        # While it trains, if the operator was up long enough to show it (else after it ended:
        # a watchdog's Event may come late, and counts all the same).
        step = (status.get("training") or {}).get("step") or 0
        for number, after_step in ((1, 1), (2, 60)):
            due = step >= after_step or phase == "Succeeded"
            if f"anomaly-{number}" not in plan.done and due:
                _post_anomaly(cluster, plan.name, number, step)
                plan.done.add(f"anomaly-{number}")
    if "conclude" in plan.chores and phase == "Succeeded" and "conclude" not in plan.done:
        patch = json.dumps({"spec": {"conclusion": CONCLUSION}})
        cluster.kubectl("patch", f"exp/{plan.name}", "--type=merge", "-p", patch)
        plan.done.add("conclude")
    if "admit" in plan.chores and phase == "Queued" and "admit" not in plan.done:
        # Kueue admits a workload by resuming its Job.
        patch = '{"spec":{"suspend":false}}'
        cluster.kubectl("patch", f"job/{plan.name}-train", "--type=merge", "-p", patch)
        plan.done.add("admit")


def _post_anomaly(cluster, name: str, number: int, step: int) -> None:
    experiment = get(cluster, f"exp/{name}")
    anomaly = Anomaly(
        kind="LossSpike",
        severity="Warning",
        time=datetime.now(UTC),
        step=step,
        message=f"planted anomaly {number} at step {step}",
    )
    event = anomaly_event(experiment, anomaly, f"{name}.lossspike.{number}")
    cluster.kubectl("create", "-f", "-", input=json.dumps(event))
