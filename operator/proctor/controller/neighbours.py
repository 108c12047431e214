"""The Experiments of each namespace as the watch last delivered them, for the guardrails.

The guardrails compare an Experiment with the others of its namespace on every reconcile until
it starts. Listing the namespace each time costs O(n) per reconcile and O(n^2) per burst: with
1,000 Experiments applied at once the operator listed 1,000 objects about 10,000 times and the
API server spent minutes serving it (bench/operator_scale.py). The watch already delivers every
Experiment, so the index keeps what the guardrails read from it, and lists a namespace once, the
first time it is asked about it, to learn what existed before the operator started.

As fresh as the watch: a neighbour's change is seen when its event is, as a fresh LIST would see
it a moment later; and listed again now and then, since a reconnecting watch reports no deletions
that happened while it was away. Thread-safe: kopf runs the handlers that feed it on worker threads.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

Lister = Callable[[str], list[dict[str, Any]]]
RELIST_SECONDS = 60.0
"""How often a namespace is listed again and its contents replaced: a watch that reconnects
(an expired resourceVersion, an API server restart) sends no DELETED for what went away in the
gap, and a deleted Experiment left in the index would block its study for good."""


class ExperimentIndex:
    def __init__(
        self,
        lister: Lister,
        relist_seconds: float = RELIST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`lister(namespace)`: every Experiment of the namespace, from the API server."""
        self._lister, self._relist_seconds, self._clock = lister, relist_seconds, clock
        self._lock = threading.Lock()
        self._objects: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._listed_at: dict[str, float] = {}
        # One LIST per namespace at a time: the others wait for it rather than list again.
        self._listing: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        # What the watch said while a LIST was in flight: it has the last word over the LIST.
        self._seen_meanwhile: defaultdict[str, set[str]] = defaultdict(set)
        self._gone_meanwhile: defaultdict[str, set[str]] = defaultdict(set)

    def seen(self, obj: dict[str, Any]) -> None:
        """The watch delivered `obj` (added or modified)."""
        meta = obj["metadata"]
        with self._lock:
            known = self._objects[meta["namespace"]].get(meta["name"])
            if known is None or not _older(obj, known):
                self._objects[meta["namespace"]][meta["name"]] = _essentials(obj)
            self._seen_meanwhile[meta["namespace"]].add(meta["name"])

    def gone(self, namespace: str, name: str, uid: str | None) -> None:
        """The watch said the Experiment was deleted."""
        with self._lock:
            self._objects[namespace].pop(name, None)
            self._gone_meanwhile[namespace].add(name)
            self._seen_meanwhile[namespace].discard(name)

    def neighbours(self, namespace: str) -> list[dict[str, Any]]:
        """Every Experiment of `namespace`: listed from the API server the first time and every
        `relist_seconds`, followed through the watch in between."""
        if self._due(namespace):
            with self._listing[namespace]:
                if self._due(namespace):  # another caller may have listed while this one waited
                    self._relist(namespace)
        with self._lock:
            return list(self._objects[namespace].values())

    def _due(self, namespace: str) -> bool:
        with self._lock:
            listed = self._listed_at.get(namespace)
        return listed is None or self._clock() - listed >= self._relist_seconds

    def _relist(self, namespace: str) -> None:
        with self._lock:
            self._seen_meanwhile.pop(namespace, None)
            self._gone_meanwhile.pop(namespace, None)
        found = self._lister(namespace)  # outside the lock: a request
        with self._lock:
            seen = self._seen_meanwhile.pop(namespace, set())
            gone = self._gone_meanwhile.pop(namespace, set())
            old = self._objects[namespace]
            fresh: dict[str, dict[str, Any]] = {}
            for obj in found:
                name = obj["metadata"]["name"]
                if name in gone:
                    continue  # deleted after the LIST was answered
                watched = old.get(name)
                keep_watched = watched is not None and name in seen and _older(obj, watched)
                fresh[name] = watched if keep_watched and watched else _essentials(obj)
            for name in seen - fresh.keys():  # created after the LIST was answered
                if name in old:
                    fresh[name] = old[name]
            self._objects[namespace] = fresh
            self._listed_at[namespace] = self._clock()


def _older(obj: dict[str, Any], than: dict[str, Any]) -> bool:
    """Whether `obj` is an older version of `than` (resourceVersions compared as numbers, as
    every API server in practice issues them; unknown: not older)."""
    mine = str(obj["metadata"].get("resourceVersion", ""))
    theirs = str(than["metadata"].get("resourceVersion", ""))
    return mine.isdigit() and theirs.isdigit() and int(mine) < int(theirs)


def _essentials(obj: dict[str, Any]) -> dict[str, Any]:
    """What the guardrails read: names, labels, creation time, spec, phase and conditions. The
    rest (training progress, anomalies, layer results) is not kept: 1,000 of those add up."""
    meta, status = obj["metadata"], obj.get("status") or {}
    return {
        "metadata": {
            key: meta[key]
            for key in (
                "name",
                "namespace",
                "uid",
                "labels",
                "creationTimestamp",
                "resourceVersion",
            )
            if key in meta
        },
        "spec": obj.get("spec") or {},
        "status": {key: status[key] for key in ("phase", "conditions") if key in status},
    }
