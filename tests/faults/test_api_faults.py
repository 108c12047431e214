"""API faults injected at the emulated API server (proctor.cluster.faults), for the operator's
requests only (kopf's and its own client's; the test's kubectl is served as usual): 10% of them
answered 409 (writes), 429 with Retry-After, 500 or 503, 10% answered slowly, and 30% of its watch
streams cut mid-stream (more than the 10% of the rest, so a run of a minute cuts several).

Every experiment still ends as it should, and the retries back off: a request answered 429 is
not sent again before its Retry-After (and the operator's own client sends nothing at all
meanwhile), a request answered 5xx is not repeated at once, and the request count per experiment
stays within a small multiple of a run without faults (no hot loop, no storm).
"""

from __future__ import annotations

import collections
import random
import time
from typing import Any

import pytest

from proctor.cluster.faults import ApiFaults, Seen
from tests.support.operator import OperatorProcess, apply, digits_experiment

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(300)]
SKIP = {"skip": {"reason": "the API faults are under test, not this code"}}
NO_WATCHDOG = {"enabled": False}
# Requests per experiment of the same run without faults (rate 0), measured on a 2-core machine:
# about 50, the operator's start included (with faults it is often fewer: reconciles held back
# by a Retry-After coalesce). A hot loop or a retry storm adds hundreds.
REQUESTS_PER_EXPERIMENT = 120
# Seconds after a 429 left the server in which other requests are not held against the client:
# it learns of the 429 only once a thread has read the answer, and on a loaded 2-core machine
# that has taken 90 ms (the test failed at 0.05). Retry-After is 1 to 3 s, so a client that does
# not hold back still shows in the rest of the window.
TOLERANCE = 0.3


def _experiments(tmp, rng: random.Random) -> dict[str, tuple[dict[str, Any], str]]:
    def cheap(name: str, command: list[str]) -> dict[str, Any]:
        training = {"command": command}
        return digits_experiment(
            name, tmp, validation=SKIP, training=training, watchdog=NO_WATCHDOG
        )

    plans = {
        f"cheap-{i}": (cheap(f"cheap-{i}", ["sleep", f"{rng.uniform(0.5, 4):.1f}"]), "Succeeded")
        for i in range(6)
    }
    plans["bad-config"] = (cheap("bad-config", ["sh", "-c", "exit 2"]), "Failed")
    layers = {"l1": {"enabled": False}, "l2": {"enabled": False}, "l3": {"enabled": False}}
    plans["pyramid"] = (
        digits_experiment(
            "pyramid",
            tmp,
            validation={"layers": layers},
            training={"command": ["sleep", "1"]},
            watchdog=NO_WATCHDOG,
        ),
        "Succeeded",
    )
    return plans


def test_injected_api_faults_the_operator_converges_and_backs_off(
    cluster, history, tmp_path, seed, request
):
    faults = ApiFaults(seed=seed, rate=0.1, drop_rate=0.3, slow_rate=0.1)
    cluster.cluster.api.faults = faults
    operator = OperatorProcess(cluster, tmp_path / "operator.log")
    operator.start()
    request.addfinalizer(operator.stop)
    rng = random.Random(seed)
    plans = _experiments(tmp_path, rng)
    began = time.monotonic()
    for manifest, _ in plans.values():
        apply(cluster, manifest)
        time.sleep(rng.uniform(0, 1))

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        phases = {name: history.latest("Experiment", name).get("phase") for name in plans}
        if all(phases[name] == want for name, (_, want) in plans.items()):
            break
        time.sleep(0.2)
    took = time.monotonic() - began
    seen = list(faults.seen)
    kinds = collections.Counter(s.fault for s in seen if s.fault)
    context = f"seed {seed}; {len(seen)} requests in {took:.0f}s; faults {dict(kinds)}"
    print(context)
    wrong = {n: p for n, p in phases.items() if p != plans[n][1]}
    assert not wrong, (wrong, context, operator.output()[-3000:])
    for kind in ("409", "429", "500", "503", "drop", "slow"):
        assert kinds[kind], f"no {kind} was injected: the test proves nothing about it; {context}"

    # Nothing created twice, nothing moved backwards, even with writes refused at random.
    assert all(n == 1 for n in history.created("Job").values()), (history.created("Job"), context)
    assert history.regressions() == [], context

    # Retries back off.
    too_soon = _too_soon(seen)
    assert too_soon == [], (len(too_soon), "\n".join(too_soon), context)
    per_experiment = len(seen) / len(plans)
    assert per_experiment < REQUESTS_PER_EXPERIMENT, (per_experiment, _busiest(seen), context)
    time.sleep(3)  # a reconcile refused last may still be retried (faults are still on)
    settled = len(faults.seen)
    time.sleep(5)
    idle = [f"{s.verb} {s.key}" for s in list(faults.seen)[settled:] if s.verb != "watch"]
    assert len(idle) <= 10, ("requests while nothing is left to do", idle, context)


def _too_soon(seen: list[Seen]) -> list[str]:
    """Requests repeated sooner than the answer to the previous one allowed: after a 429, the
    same request before its Retry-After (and, from the operator's own client, any request at
    all); after a 500 or 503, the same request at once (the shortest first backoff is kopf's 1 s
    and the operator's client's 0.25 s)."""
    problems = []
    for index, fault in enumerate(seen):
        if fault.fault not in ("429", "500", "503"):
            continue
        if fault.fault != "429" and fault.key.startswith("POST"):
            continue  # a create is not repeated after a 5xx; the next one is another object's
        wait = float(fault.retry_after) if fault.retry_after is not None else 0.2
        client_wide = fault.fault == "429" and fault.client == "proctor-operator"
        for later in seen[index + 1 :]:
            if later.time > fault.time + wait + 2:  # answers come in order, give or take `slow`
                break
            arrived = later.time - later.slow
            if later.client != fault.client or not fault.time < arrived < fault.time + wait:
                continue
            if arrived > fault.time + TOLERANCE and (later.key == fault.key or client_wide):
                problems.append(
                    f"{later.client}: {later.key} {arrived - fault.time:.2f}s after a "
                    f"{fault.fault} (Retry-After {fault.retry_after}) to {fault.key}"
                )
    return problems


def _busiest(seen: list[Seen]) -> list[tuple[str, int]]:
    return collections.Counter(f"{s.client} {s.key}" for s in seen).most_common(10)
