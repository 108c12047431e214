"""Only this incarnation's children count: names and labels are not proof of ownership."""

from __future__ import annotations

from proctor.controller.reconciler import _name_taken, _owned_by

OWNER = {"metadata": {"name": "exp", "namespace": "ml", "uid": "uid-now"}}


def _child(uid: str | None, controller: bool = True, deleting: bool = False) -> dict:
    meta: dict = {"name": "exp", "namespace": "ml"}
    if uid is not None:
        meta["ownerReferences"] = [{"kind": "Experiment", "uid": uid, "controller": controller}]
    if deleting:
        meta["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    return {"metadata": meta}


def test_children_of_an_earlier_incarnation_or_of_nobody_are_not_ours():
    ours = _child("uid-now")
    assert _owned_by(OWNER, [ours, _child("uid-before"), _child(None)]) == [ours]


def test_an_owner_reference_that_is_not_the_controller_does_not_count():
    assert _owned_by(OWNER, [_child("uid-now", controller=False)]) == []


def test_a_same_name_pyramid_is_awaited_when_it_is_a_predecessors_and_refused_when_standalone():
    assert "waiting for" in _name_taken(_child("uid-before", deleting=True))
    standalone = _name_taken(_child(None))
    assert "does not belong to this Experiment" in standalone
    assert "another name" in standalone


def test_an_invalid_object_fails_once_and_a_second_pass_changes_nothing():
    from pydantic import ValidationError

    from proctor.api.v1alpha1 import Experiment, PyramidConditionType
    from proctor.controller.reconciler import _invalid

    try:
        Experiment.model_validate({"spec": {"bogus": 1}})
    except ValidationError as exc:
        error = exc
    obj = {"kind": "ValidationPyramid", "metadata": {"name": "p"}, "status": {}}
    first = _invalid(obj, error, PyramidConditionType.READY)
    assert first.status["phase"] == "Failed"
    [ready] = first.status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "SpecInvalid")
    assert first.events
    again = _invalid({**obj, "status": first.status}, error, PyramidConditionType.READY)
    assert again.status == first.status, "no new transition time: nothing to write"
    assert not again.events
