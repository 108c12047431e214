"""Selectors and patches as kubectl and kopf send them."""

from __future__ import annotations

import pytest

from proctor.cluster.patches import PatchError, apply_patch
from proctor.cluster.selectors import SelectorError, field_selector, label_selector

OBJ = {
    "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "trainer", "tier": "gpu"}},
    "status": {"phase": "Running"},
    "involvedObject": {"kind": "Experiment", "name": "e"},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=trainer", True),
        ("app==trainer", True),
        ("app!=trainer", False),
        ("app in (trainer,watchdog)", True),
        ("app notin (trainer)", False),
        ("tier", True),
        ("!tier", False),
        ("missing", False),
        ("!missing", True),
        ("app=trainer,tier in (cpu,gpu)", True),
        ("app=trainer,tier=cpu", False),
        ("", True),
    ],
)
def test_label_selectors(selector, expected):
    assert label_selector(selector)(OBJ) is expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=p", True),
        ("metadata.namespace=other", False),
        ("status.phase=Running", True),
        ("status.phase!=Running", False),
        ("involvedObject.kind=Experiment,involvedObject.name=e", True),
        ("involvedObject.name=x", False),
    ],
)
def test_field_selectors(selector, expected):
    assert field_selector(selector)(OBJ) is expected


def test_bad_selectors_are_errors():
    with pytest.raises(SelectorError):
        label_selector("app=(")
    with pytest.raises(SelectorError):
        field_selector("no-operator")


def test_merge_patch_sets_and_removes_keys_without_touching_the_target():
    target = {"a": {"b": 1, "c": 2}, "d": [1, 2]}
    patched = apply_patch(
        target, {"a": {"b": None, "e": 3}, "d": [9]}, "application/merge-patch+json"
    )
    assert patched == {"a": {"c": 2, "e": 3}, "d": [9]}
    assert target == {"a": {"b": 1, "c": 2}, "d": [1, 2]}


def test_json_patch_and_its_errors():
    target = {"spec": {"steps": [1, 2]}}
    ops = [
        {"op": "add", "path": "/spec/steps/-", "value": 3},
        {"op": "replace", "path": "/spec/x", "value": 1},
    ]
    with pytest.raises(PatchError):
        apply_patch(target, ops, "application/json-patch+json")
    ops = [
        {"op": "add", "path": "/spec/steps/-", "value": 3},
        {"op": "test", "path": "/spec/steps/0", "value": 1},
    ]
    assert apply_patch(target, ops, "application/json-patch+json") == {"spec": {"steps": [1, 2, 3]}}


def test_strategic_merge_merges_named_lists_and_drops_directives():
    target = {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}
    patch = {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "containers": [{"name": "b", "image": "2"}, {"name": "a", "$patch": "delete"}],
    }
    patched = apply_patch(target, patch, "application/strategic-merge-patch+json")
    assert patched == {"containers": [{"name": "b", "image": "2"}]}


def test_unknown_patch_types_are_refused():
    with pytest.raises(PatchError, match="unsupported patch type"):
        apply_patch({}, {}, "text/plain")
