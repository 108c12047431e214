"""The Experiments of each namespace as the watch last delivered them, for the guardrails.

The guardrails compare an Experiment with the others of its namespace on every reconcile until
it starts. Listing the namespace each time costs O(n) per reconcile and O(n^2) per burst: with
1,000 Experiments applied at once the operator listed 1,000 objects about 10,000 times and the
API server spent minutes serving it (bench/operator_scale.py). The watch already delivers every
Experiment, so the index keeps what the guardrails read from it, and lists a namespace once, the
first time it is asked about it, to learn what existed before the operator started.

As fresh as the watch: a neighbour's change is seen when its event is, as a fresh LIST would see
it a moment later. Thread-safe: kopf runs the handlers that feed it on worker threads.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

Lister = Callable[[str], list[dict[str, Any]]]


class ExperimentIndex:
    def __init__(self, lister: Lister) -> None:
        """`lister(namespace)`: every Experiment of the namespace, from the API server."""
        self._lister = lister
        self._lock = threading.Lock()
        self._objects: defaultdict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._listed: set[str] = set()
        # uids the watch said were deleted before their namespace was listed: a LIST answered
        # from before the deletion must not bring them back.
        self._deleted: defaultdict[str, set[str]] = defaultdict(set)

    def seen(self, obj: dict[str, Any]) -> None:
        """The watch delivered `obj` (added or modified)."""
        meta = obj["metadata"]
        with self._lock:
            self._objects[meta["namespace"]][meta["name"]] = _essentials(obj)

    def gone(self, namespace: str, name: str, uid: str | None) -> None:
        """The watch said the Experiment was deleted."""
        with self._lock:
            self._objects[namespace].pop(name, None)
            if namespace not in self._listed and uid:
                self._deleted[namespace].add(uid)

    def neighbours(self, namespace: str) -> list[dict[str, Any]]:
        """Every Experiment of `namespace` (listed from the API server the first time)."""
        with self._lock:
            listed = namespace in self._listed
        if not listed:
            found = self._lister(namespace)  # outside the lock: a request
            with self._lock:
                known, deleted = self._objects[namespace], self._deleted.pop(namespace, set())
                for obj in found:
                    meta = obj["metadata"]
                    # The watch's copy is at least as new as the list's, or the list's is newer
                    # and its event is on the way: either way the watch has the last word.
                    if meta["name"] not in known and meta.get("uid") not in deleted:
                        known[meta["name"]] = _essentials(obj)
                self._listed.add(namespace)
        with self._lock:
            return list(self._objects[namespace].values())


def _essentials(obj: dict[str, Any]) -> dict[str, Any]:
    """What the guardrails read: names, labels, creation time, spec, phase and conditions. The
    rest (training progress, anomalies, layer results) is not kept: 1,000 of those add up."""
    meta, status = obj["metadata"], obj.get("status") or {}
    return {
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "labels", "creationTimestamp")
            if key in meta
        },
        "spec": obj.get("spec") or {},
        "status": {key: status[key] for key in ("phase", "conditions") if key in status},
    }
