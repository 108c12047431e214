"""The watch-fed index of Experiments the guardrails read (proctor.controller.neighbours)."""

from __future__ import annotations

from proctor.controller.neighbours import ExperimentIndex


def _obj(name: str, uid: str, phase: str = "Pending", namespace: str = "lab") -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "7"},
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


def test_the_watch_has_the_last_word_over_a_list_answered_before_it():
    # Seen Training by the watch, but the list (taken a moment before) still says Pending.
    index = ExperimentIndex(Lister(_obj("a", "u1", "Pending"), _obj("b", "u2", "Succeeded")))
    index.seen(_obj("a", "u1", "Training"))
    index.gone("lab", "b", "u2")  # deleted before the list's answer was read
    assert _names(index) == {"a": "Training"}


def test_namespaces_are_apart_and_only_what_the_guardrails_read_is_kept():
    index = ExperimentIndex(Lister(_obj("x", "u1", namespace="other")))
    assert _names(index) == {}
    assert _names(index, "other") == {"x": "Pending"}
    [kept] = index.neighbours("other")
    assert "training" not in kept["status"]
    assert "resourceVersion" not in kept["metadata"]
    assert kept["spec"] == {"hypothesis": {"statement": "x"}}
