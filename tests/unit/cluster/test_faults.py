"""Injected API faults: seeded, only for the chosen clients, each kind only where it fits, every
kind at least once in a short run."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from proctor.cluster.faults import ApiFaults


def _request(method: str = "GET", path: str = "/api/v1/namespaces/d/pods/p") -> SimpleNamespace:
    return SimpleNamespace(method=method, path=path, query={}, transport=None)


def _answers(faults: ApiFaults, requests: list[tuple[str, str, str]]) -> list[str | None]:
    async def run() -> list[str | None]:
        kinds = []
        for client, verb, method in requests:
            answer = await faults.disturb(_request(method), client, verb)  # type: ignore[arg-type]
            kinds.append(None if answer is None else json.loads(answer.body)["reason"])
        return kinds

    return asyncio.run(run())


def test_the_same_seed_disturbs_the_same_requests_the_same_way():
    requests = [("kopf", "get", "GET")] * 200
    first = _answers(ApiFaults(seed=3, slow_rate=0), requests)
    assert first == _answers(ApiFaults(seed=3, slow_rate=0), requests)
    assert first != _answers(ApiFaults(seed=4, slow_rate=0), requests)
    assert 5 <= sum(a is not None for a in first) <= 40  # about 10%


def test_only_the_chosen_clients_are_disturbed():
    faults = ApiFaults(rate=1.0, slow_rate=0)
    assert _answers(faults, [("kubectl", "get", "GET")] * 20) == [None] * 20
    assert len(faults.seen) == 0


def test_a_409_goes_to_writes_only_and_a_429_says_when_to_come_back():
    faults = ApiFaults(rate=1.0, kinds=("409",), slow_rate=0, every_kind_after=None)
    assert _answers(faults, [("kopf", "get", "GET")]) == [None]
    assert _answers(faults, [("kopf", "patch", "PATCH")]) == ["Conflict"]

    async def throttled() -> tuple[str, dict]:
        many = ApiFaults(rate=1.0, kinds=("429",), slow_rate=0, retry_after_seconds=(2, 2))
        answer = await many.disturb(_request(), "proctor-operator", "get")  # type: ignore[arg-type]
        assert answer is not None
        return answer.headers["Retry-After"], json.loads(answer.body)["details"]

    assert asyncio.run(throttled()) == ("2", {"retryAfterSeconds": 2})


def test_a_short_run_gets_every_kind_once_at_least():
    faults = ApiFaults(seed=1, rate=0.0, slow_rate=0.0, drop_rate=0.0, every_kind_after=10)
    _answers(faults, [("kopf", "patch", "PATCH")] * 30)
    assert {s.fault for s in faults.injected} == {"409", "429", "500", "503"}


def test_unknown_kinds_and_rates_outside_0_to_1_are_refused():
    with pytest.raises(ValueError, match="unknown fault kinds"):
        ApiFaults(kinds=("418",))
    with pytest.raises(ValueError, match="shares of requests"):
        ApiFaults(rate=1.5)
