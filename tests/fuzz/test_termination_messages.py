"""A layer's verdict travels back as its pod's termination message (JSON, at most 4 KiB), written
by whatever runs in the user's image. The operator must read any message without crashing: a
result cut short, nested too deep, of the wrong types, another layer's, still "Running", with NaN,
or not JSON at all ends the layer Failed with a message saying the result was unreadable (or,
for a crash's plain output, quoting it), and the status it writes passes the API server.

Driven through the pure `reconcile_pyramid` with the facts a finished layer Job gives it.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from proctor.api.v1alpha1 import LayerName, LayerResult
from proctor.cluster import crvalidation
from proctor.controller.experiment_reconcile import Observed, reconcile_experiment
from proctor.controller.observed import PodFacts
from proctor.controller.pyramid_reconcile import reconcile_pyramid
from proctor.controller.settings import ControllerSettings
from proctor.pyramid.runner import TERMINATION_MESSAGE_LIMIT, termination_message
from tests.fuzz.examples import examples
from tests.fuzz.manifests import SCHEMAS, hostile_text, hostile_value, nested
from tests.unit.controller.objects import (
    NOW,
    experiment,
    layer_job,
    pyramid,
    training_job,
    training_pod,
)

SETTINGS = ControllerSettings()
L0 = LayerName.L0
STATUS_SCHEMA = SCHEMAS["ValidationPyramid"]["properties"]["status"]

# A real L0 result, as `proctor pyramid run` writes it (shortened to fit 4 KiB); and the same as
# a runner that does not escape non-ASCII would write it, so cuts also fall inside UTF-8.
REAL = termination_message(
    LayerResult.model_validate(
        {
            "layer": "L0",
            "phase": "Passed",
            "attempts": 1,
            "checks": [
                {
                    "name": f"check_{i}",
                    "verdict": "Passed",
                    "value": 0.1 * i,
                    "threshold": 1.0,
                    "unit": "ratio",
                    "message": f"µ-benchmark {i}: within bounds ✓ " + "détail " * 20,
                }
                for i in range(18)
            ],
            "message": "all 18 checks passed",
        }
    )
)

REAL_UTF8 = json.dumps(json.loads(REAL), ensure_ascii=False, separators=(",", ":"))


def _finish(message: str, exit_code: int) -> dict[str, Any]:
    """The L0 entry of the status after its Job ended with this pod. The message arrives as the
    API server's JSON carries it: valid UTF-8 (Go writes U+FFFD for what is not)."""
    message = re.sub("[\ud800-\udfff]", "\ufffd", message)
    pod = PodFacts(
        name="digits-l0-1-abcde",
        phase="Succeeded" if exit_code == 0 else "Failed",
        exit_code=exit_code,
        terminated_reason="Completed" if exit_code == 0 else "Error",
        termination_message=message,
    )
    state = "complete" if exit_code == 0 else "failed"
    job = layer_job(L0, state=state, pod=pod, finished=NOW)
    plan = reconcile_pyramid(pyramid(), [job], NOW, SETTINGS)
    refused = crvalidation.validate(STATUS_SCHEMA, copy.deepcopy(plan.status), None)
    assert refused == [], f"the API server would refuse this status write: {refused}"
    [entry] = [e for e in plan.status["layers"] if e["layer"] == "L0"]
    return entry


def test_the_real_result_is_read_and_nearly_fills_the_limit():
    assert 3000 < len(REAL.encode()) <= TERMINATION_MESSAGE_LIMIT
    assert len(REAL_UTF8.encode()) < len(REAL.encode())
    assert any(ord(c) > 127 for c in REAL_UTF8)
    for message in (REAL, REAL_UTF8):
        entry = _finish(message, 0)
        assert entry["phase"] == "Passed"
        assert len(entry["checks"]) == 18


@pytest.mark.parametrize("real", [REAL, REAL_UTF8], ids=["ascii", "utf-8"])
def test_a_result_cut_at_every_byte_offset_fails_the_layer_as_unreadable(real):
    raw = real.encode()
    for cut in range(1, len(raw)):
        # As the kubelet (and the emulated pod runner) read it: bytes, decoded with
        # replacement, so a cut inside a UTF-8 sequence leaves U+FFFD.
        message = raw[:cut].decode(errors="replace")
        for exit_code in (0, 1) if cut % 16 == 0 else (0,):
            entry = _finish(message, exit_code)
            assert entry["phase"] == "Failed", (cut, entry)
            assert "unreadable" in entry["message"], (cut, entry["message"])
            assert [c["name"] for c in entry["checks"]] == ["result"], cut


def test_an_empty_message_is_no_result_rather_than_an_unreadable_one():
    assert "left no result" in _finish("", 0)["message"]
    assert "could not run the code (exit 1)" in _finish("", 1)["message"]


@pytest.mark.parametrize(
    ("message", "why"),
    [
        # json.loads raised RecursionError, which the parser did not catch: every reconcile
        # of the pyramid failed and was retried at each resync.
        ('{"layer": "L0", "checks": ' + "[" * 4000, "nests too deeply"),
        ("{" + '"a":{' * 800, "not complete JSON"),
        # A result still "Running" (or Pending, Skipped) from a finished Job was copied into
        # status as it was: the layer stayed Running for good, the pyramid never ended.
        (json.dumps({"layer": "L0", "phase": "Running"}), "phase is Running"),
        (json.dumps({"layer": "L0", "phase": "Skipped"}), "phase is Skipped"),
        (json.dumps({"layer": "L1", "phase": "Passed"}), "result of L1, not L0"),
        (json.dumps({"layer": "L0", "phase": "Passed", "checks": {"a": 1}}), "checks"),
        ('{"layer": "L0", "phase": "Passed", "message": "' + "x" * 5000 + '"}', "message"),
    ],
)
def test_messages_that_look_like_a_result_but_are_not_fail_as_unreadable(message, why):
    for exit_code in (0, 1):
        entry = _finish(message, exit_code)
        assert entry["phase"] == "Failed"
        assert "unreadable" in entry["message"]
        assert why in entry["message"]


def test_non_finite_values_in_a_result_are_dropped_not_written_to_status():
    # Python's json reads NaN and Infinity; the API server (JSON) cannot store them, so the
    # status write was refused on every pass.
    result = json.loads(REAL)
    result["checks"][0]["value"] = math.nan
    result["checks"][1]["threshold"] = -math.inf
    entry = _finish(json.dumps(result), 0)
    assert entry["phase"] == "Passed"
    assert "value" not in entry["checks"][0]
    assert "threshold" not in entry["checks"][1]


# ---- anything at all -------------------------------------------------------------------------

_CHECK = st.fixed_dictionaries(
    {"name": st.one_of(st.just("loss_finite"), hostile_text())},
    optional={
        "verdict": st.sampled_from(["Passed", "Failed", "Warning", "Skipped", "passed", "", 1]),
        "value": st.one_of(st.floats(), hostile_value()),
        "threshold": st.one_of(st.floats(), st.none()),
        "unit": hostile_text(),
        "message": hostile_text(),
    },
)
_RESULT = st.fixed_dictionaries(
    {},
    optional={
        "layer": st.sampled_from(["L0", "L1", "l0", "", None, 0, ["L0"]]),
        "phase": st.sampled_from(["Passed", "Failed", "Running", "Pending", "Skipped", None, 1]),
        "attempts": st.one_of(st.integers(), hostile_value()),
        "checks": st.one_of(st.lists(_CHECK, max_size=70), hostile_value()),
        "message": hostile_text(),
        "startTime": st.sampled_from(["2026-03-04T12:00:00Z", "yesterday", 0]),
        "extra": hostile_value(),
    },
)


@st.composite
def _cut(draw: st.DrawFn, text: str) -> str:
    raw = text.encode(errors="surrogatepass")
    return raw[: draw(st.integers(0, len(raw)))].decode(errors="replace")


MESSAGES = st.one_of(
    _RESULT.map(lambda r: json.dumps({"layer": "L0", "phase": "Passed", **r}, default=str)),
    _RESULT.map(lambda r: json.dumps(r, default=str)),
    st.sampled_from([REAL, REAL_UTF8]).flatmap(_cut),
    _RESULT.map(lambda r: json.dumps(r, default=str)).flatmap(_cut),
    hostile_text(),
    st.builds(
        lambda depth, as_list: json.dumps(nested(depth, as_list=as_list)),
        st.integers(0, 900),
        st.booleans(),
    ),
    st.builds(lambda depth: "{" + "[" * depth, st.integers(0, 4096)),
    st.binary(max_size=64).map(lambda b: "{" + b.decode(errors="replace")),
)


@settings(max_examples=examples(1000))
@given(message=MESSAGES, exit_code=st.sampled_from([0, 0, 1, 2, 137, 143]))
def test_any_termination_message_ends_the_layer_with_a_message(message, exit_code):
    note(f"message: {message[:2000]!r}")
    entry = _finish(message, exit_code)
    if exit_code in (137, 143) and not message.startswith("{"):
        assert entry["phase"] == "Running"  # killed from outside: retried as infrastructure
        assert "retrying" in entry["message"]
        return
    assert entry["phase"] in ("Passed", "Failed"), entry
    assert entry["message"].strip(), entry
    if entry["phase"] == "Passed":
        assert exit_code == 0
        assert LayerResult.model_validate(json.loads(message)).phase == "Passed"


# ---- the training pod's outcome -------------------------------------------------------------

MAX_MESSAGE = TERMINATION_MESSAGE_LIMIT  # what the kubelet keeps of a termination message


def _train_finished(message: str, exit_code: int) -> dict[str, Any]:
    obj = experiment(validation={"skip": {"reason": "the trainer's outcome is under test"}})
    obj["status"] = {"phase": "Training"}
    pod = training_pod(message, phase="Failed" if exit_code else "Succeeded", exit_code=exit_code)
    state = "failed" if exit_code else "complete"
    job = training_job(state, pod, failed_reason="BackoffLimitExceeded" if exit_code else "")
    plan = reconcile_experiment(obj, Observed(job=job), NOW, SETTINGS)
    schema = SCHEMAS["Experiment"]["properties"]["status"]
    refused = crvalidation.validate(schema, copy.deepcopy(plan.status), None)
    assert refused == [], f"the API server would refuse this status write: {refused}"
    return plan.status


@settings(max_examples=examples(400))
@given(message=MESSAGES, exit_code=st.sampled_from([0, 1, 2, 3, 4, 137]))
def test_any_training_outcome_message_ends_the_run_with_a_condition(message, exit_code):
    message = message.encode(errors="replace")[:MAX_MESSAGE].decode(errors="replace")
    note(f"message: {message[:2000]!r}")
    status = _train_finished(message, exit_code)
    [trained] = [c for c in status["conditions"] if c["type"] == "Trained"]
    assert trained["status"] in ("True", "False"), trained
    assert trained["message"].strip(), trained


def test_a_training_outcome_nested_too_deep_still_ends_the_run():
    status = _train_finished('{"outcome": ' + "[" * 4000, 1)
    assert status["phase"] == "Failed"


def test_a_crashed_trainer_s_message_is_redacted_in_status():
    key = "AKIA" + "Q" * 16
    message = json.dumps({"outcome": "crashed", "message": f"boto3 failed with {key}"})
    status = _train_finished(message, 1)
    [trained] = [c for c in status["conditions"] if c["type"] == "Trained"]
    assert "crashed" in trained["message"], trained
    assert key not in json.dumps(status), trained
