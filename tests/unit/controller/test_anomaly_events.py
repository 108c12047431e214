"""The Event contract between the watchdog (writes) and the operator (reads anomalies)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from proctor.api.anomaly_events import anomaly_event, anomaly_from_event
from proctor.api.v1alpha1 import Anomaly
from tests.unit.controller.objects import experiment

ANOMALY = Anomaly.model_validate(
    {
        "kind": "NonFiniteLoss",
        "severity": "Critical",
        "time": datetime(2026, 3, 4, 12, 30, 15, tzinfo=UTC),
        "step": 1234,
        "message": "loss is nan at step 1234",
        "bundleURI": "s3://bundles/ml/exp/20260304T123015Z-NonFiniteLoss/",
    }
)


def _event() -> dict:
    obj = experiment("exp")
    return anomaly_event(obj, ANOMALY, "exp.nonfiniteloss.1")


def test_an_anomaly_survives_the_round_trip_through_its_event():
    assert anomaly_from_event(_event()) == ANOMALY


def test_the_event_is_selectable_and_names_the_experiment():
    event = _event()
    assert event["metadata"]["labels"] == {
        "proctor.dev/experiment": "exp",
        "proctor.dev/anomaly": "NonFiniteLoss",
    }
    assert event["metadata"]["namespace"] == "ml"
    assert event["involvedObject"]["kind"] == "Experiment"
    assert event["involvedObject"]["uid"] == "uid-exp"
    assert (event["type"], event["reason"]) == ("Warning", "NonFiniteLoss")
    assert event["firstTimestamp"] == "2026-03-04T12:30:15Z"


def test_an_anomaly_without_step_or_bundle_round_trips_too():
    wire = {k: v for k, v in ANOMALY.to_wire().items() if k not in ("step", "bundleURI")}
    bare = Anomaly.model_validate({**wire, "severity": "Warning"})
    event = anomaly_event(experiment("exp"), bare, "e")
    assert "proctor.dev/step" not in event["metadata"]["annotations"]
    assert anomaly_from_event(event) == bare


def _broken(change) -> dict:
    event = copy.deepcopy(_event())
    change(event)
    return event


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda e: e["metadata"]["labels"].update({"proctor.dev/anomaly": "Gremlins"}),
            id="unknown-kind",
        ),
        pytest.param(
            lambda e: e["metadata"]["annotations"].update({"proctor.dev/severity": "Meh"}),
            id="unknown-severity",
        ),
        pytest.param(
            lambda e: e["metadata"]["annotations"].update({"proctor.dev/detected-at": "yesterday"}),
            id="unreadable-time",
        ),
        pytest.param(
            lambda e: (
                e["metadata"]["annotations"].pop("proctor.dev/detected-at"),
                e.pop("firstTimestamp"),
                e.pop("lastTimestamp"),
            ),
            id="no-time-at-all",
        ),
        pytest.param(
            lambda e: (e["metadata"].pop("labels"), e.update(reason="BackOff")),
            id="an-ordinary-event",
        ),
    ],
)
def test_a_malformed_event_is_skipped_not_raised(change):
    assert anomaly_from_event(_broken(change)) is None


def test_an_event_with_no_metadata_at_all_is_skipped():
    assert anomaly_from_event({}) is None


def test_the_time_falls_back_to_the_events_own_timestamp():
    event = _broken(lambda e: e["metadata"]["annotations"].pop("proctor.dev/detected-at"))
    found = anomaly_from_event(event)
    assert found is not None
    assert found.time == ANOMALY.time
