"""The watch-fed index of Experiments the guardrails read (proctor.controller.neighbours)."""

from __future__ import annotations

from proctor.controller.neighbours import ExperimentIndex


def _obj(
    name: str, uid: str, phase: str = "Pending", namespace: str = "lab", version: int = 7
) -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": str(version),
        },
        "spec": {"hypothesis": {"statement": name}},
        "status": {"phase": phase, "training": {"step": 40}},
    }


class Lister:
    def __init__(self, *objects: dict) -> None:
        self.objects, self.calls = list(objects), 0

    def __call__(self, namespace: str) -> list[dict]:
        self.calls += 1
        return [o for o in self.objects if o["metadata"]["namespace"] == namespace]


def _names(index: ExperimentIndex, namespace: str = "lab") -> dict[str, str]:
    return {o["metadata"]["name"]: o["status"].get("phase") for o in index.neighbours(namespace)}


def test_a_namespace_is_listed_once_and_then_follows_the_watch():
    lister = Lister(_obj("old", "u1", "Concluded"))
    index = ExperimentIndex(lister)
    assert _names(index) == {"old": "Concluded"}
    index.seen(_obj("new", "u2"))
    index.seen(_obj("new", "u2", "Training"))
    assert _names(index) == {"old": "Concluded", "new": "Training"}
    index.gone("lab", "old", "u1")
    assert _names(index) == {"new": "Training"}
    assert lister.calls == 1


def test_the_watch_has_the_last_word_over_a_list_in_flight():
    index: ExperimentIndex

    def lister(namespace: str) -> list[dict]:
        # While the LIST is on its way, the watch reports: a started, b deleted, c created.
        index.seen(_obj("a", "u1", "Training", version=8))
        index.gone("lab", "b", "u2")
        index.seen(_obj("c", "u3", version=9))
        return [_obj("a", "u1", "Pending", version=5), _obj("b", "u2", "Succeeded", version=6)]

    index = ExperimentIndex(lister)
    assert _names(index) == {"a": "Training", "c": "Pending"}


def test_a_relist_drops_what_a_reconnecting_watch_never_said_was_deleted():
    now = [0.0]
    lister = Lister(_obj("ghost", "u1", "Succeeded"), _obj("kept", "u2"))
    index = ExperimentIndex(lister, relist_seconds=60, clock=lambda: now[0])
    assert set(_names(index)) == {"ghost", "kept"}
    lister.objects = [_obj("kept", "u2")]  # deleted while the watch was away: no event
    now[0] = 30.0
    assert set(_names(index)) == {"ghost", "kept"}
    now[0] = 61.0
    assert set(_names(index)) == {"kept"}
    assert lister.calls == 2


def test_callers_waiting_for_the_first_list_share_it():
    import threading
    import time

    calls = []

    def slow(namespace: str) -> list[dict]:
        calls.append(namespace)
        time.sleep(0.2)
        return [_obj("a", "u1")]

    index = ExperimentIndex(slow)
    threads = [threading.Thread(target=index.neighbours, args=("lab",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["lab"]


def test_namespaces_are_apart_and_only_what_the_guardrails_read_is_kept():
    index = ExperimentIndex(Lister(_obj("x", "u1", namespace="other")))
    assert _names(index) == {}
    assert _names(index, "other") == {"x": "Pending"}
    [kept] = index.neighbours("other")
    assert "training" not in kept["status"]
    assert kept["spec"] == {"hypothesis": {"statement": "x"}}
