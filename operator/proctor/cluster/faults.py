"""Injected API faults: the emulated API server answers some requests with an error, answers them
slowly, or cuts their watch streams, so tests can show that clients retry, back off and converge.

    faults = ApiFaults(seed=7, rate=0.1, drop_rate=0.1)  # only the operator's requests
    cluster.api.faults = faults            # from the next request on
    ...
    faults.injected                        # what was done to which request, and when
    cluster.api.faults = None              # served as usual again

Each request of a disturbed client draws from a random generator seeded with `seed`, so a failing
run can be replayed with its seed (requests arrive from several threads and processes, so a replay
is close to the original, not identical). Only clients named in `clients` (the User-Agent's
product, as `EmulatedApiServer.request_counts` counts them) are disturbed: a test's own kubectl is
served as usual.

The faults, each as a real API server gives it. `rate` of the requests get an error answer, its
kind drawn from those of `kinds` that fit the request:
- `409`: Conflict ("the object has been modified"), on writes (update, patch) only, as a write
  based on a stale resourceVersion gets. A create is never answered 409: a real server says that
  only when the object exists, and a client is right to believe it.
- `429`: TooManyRequests with `Retry-After: N` (1 to 3 s) and `details.retryAfterSeconds`, as API
  Priority and Fairness rejects a request it has no seat for (`Seen.retry_after` keeps N).
- `500`: InternalError; `503`: ServiceUnavailable.
Independently of those:
- `drop`: `drop_rate` of the watch streams are served, then cut mid-stream (the connection
  closed) after 0.2 to 3 s, as a load balancer or an API server restart cuts them;
- `slow`: `slow_rate` of the requests wait 0.2 to 1.5 s before they are answered (watches too).

A short run may draw no fault of some kind at all, and then proves nothing about it: from the
`every_kind_after`th request on, a kind not injected yet is given to the next request it fits
(a drop from the first watch on: watches are few, since their streams last).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from proctor.cluster import errors

KINDS = ("409", "429", "500", "503")
OPERATOR_CLIENTS = frozenset({"kopf", "proctor-operator"})
_WRITES = ("update", "patch")


@dataclass(frozen=True)
class Seen:
    """A request of a disturbed client, as it arrived."""

    time: float  # time.monotonic() of this process, when it was answered (or its stream began)
    client: str
    verb: str
    key: str  # method, path and query: what a retry of the same request repeats
    fault: str | None  # what was done to it: one of KINDS, "drop", "slow", or None
    slow: float = 0.0  # seconds it was held before that
    retry_after: int | None = None


@dataclass
class ApiFaults:
    """Which requests get which fault; see the module docstring."""

    seed: int = 0
    rate: float = 0.1
    """Share of a disturbed client's requests answered with one of `kinds` (drawn uniformly among
    those that fit the request)."""
    kinds: tuple[str, ...] = KINDS
    drop_rate: float = 0.1
    """Share of a disturbed client's watch streams cut mid-stream."""
    slow_rate: float = 0.1
    slow_seconds: tuple[float, float] = (0.2, 1.5)
    retry_after_seconds: tuple[int, int] = (1, 3)
    drop_after_seconds: tuple[float, float] = (0.2, 3.0)
    clients: frozenset[str] = OPERATOR_CLIENTS
    every_kind_after: int | None = 50
    """From this request on, kinds (drops and slow answers included) not injected yet are given
    to the next requests they fit; None leaves everything to chance."""
    seen: collections.deque[Seen] = field(default_factory=lambda: collections.deque(maxlen=200_000))
    """Every request of a disturbed client, in order of arrival, with the fault it got."""

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}: use some of {list(KINDS)}")
        if not all(0 <= r <= 1 for r in (self.rate, self.drop_rate, self.slow_rate)):
            raise ValueError(f"rates are shares of requests, from 0 to 1: {self}")
        self._random = random.Random(self.seed)
        self._given: set[str] = set()

    def _missing(self) -> set[str]:
        """Kinds owed a first injection (see every_kind_after). Watches are few (their streams
        last), so a drop is owed from the first one on."""
        if self.every_kind_after is None:
            return set()
        wanted = {"drop"} if self.drop_rate else set()
        if len(self.seen) >= self.every_kind_after:
            wanted |= set(self.kinds) | ({"slow"} if self.slow_rate else set())
        return wanted - self._given

    @property
    def injected(self) -> list[Seen]:
        """The requests that got a fault (slow ones included)."""
        return [s for s in self.seen if s.fault is not None]

    async def disturb(
        self, raw: aiohttp.web.BaseRequest, client: str, verb: str
    ) -> aiohttp.web.StreamResponse | None:
        """The fault's answer to this request, or None to serve it (after a delay, perhaps,
        and for a dropped watch with its connection cut later)."""
        if client not in self.clients:
            return None
        draw = self._random
        fitting = [k for k in self.kinds if k != "409" or verb in _WRITES]
        kind = draw.choice(fitting) if draw.random() < self.rate and fitting else None
        drop = verb == "watch" and kind is None and draw.random() < self.drop_rate
        slow = draw.uniform(*self.slow_seconds) if draw.random() < self.slow_rate else 0.0
        missing = self._missing()
        if kind is None and not drop and missing:
            owed = [k for k in fitting if k in missing]
            kind = owed[0] if owed else None
            drop = kind is None and verb == "watch" and "drop" in missing
            if not slow and "slow" in missing:
                slow = self.slow_seconds[0]
        retry_after = draw.randint(*self.retry_after_seconds) if kind == "429" else None
        cut = draw.uniform(*self.drop_after_seconds)
        if slow:
            await asyncio.sleep(slow)
        fault = kind or ("drop" if drop else None) or ("slow" if slow else None)
        query = "&".join(f"{k}={v}" for k, v in sorted(raw.query.items()))
        key = f"{raw.method} {raw.path}?{query}"
        self.seen.append(Seen(time.monotonic(), client, verb, key, fault, slow, retry_after))
        self._given.update(
            f for f in (kind, "drop" if drop else None, "slow" if slow else None) if f
        )
        if drop and raw.transport is not None:
            asyncio.get_running_loop().call_later(cut, raw.transport.close)
        if kind is None:
            return None
        error = _error(kind, raw.path, retry_after)
        response = aiohttp.web.json_response(error.status(), status=error.code)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response


def _error(kind: str, path: str, retry_after: int | None) -> errors.ApiError:
    if kind == "409":
        return errors.ApiError(
            409,
            "Conflict",
            f"Operation cannot be fulfilled on {path}: the object has been modified; please "
            "apply your changes to the latest version and try again (an injected fault)",
        )
    if kind == "429":
        details: dict[str, Any] = {"retryAfterSeconds": retry_after}
        return errors.ApiError(
            429,
            "TooManyRequests",
            "The server has received too many requests and has asked us to try again later "
            "(an injected fault)",
            details,
        )
    if kind == "500":
        return errors.ApiError(
            500, "InternalError", "Internal error occurred: an injected fault (500)"
        )
    return errors.ApiError(
        503,
        "ServiceUnavailable",
        "The server is currently unable to handle the request (an injected fault)",
    )
