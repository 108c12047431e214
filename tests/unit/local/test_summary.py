"""How a local run ends: exit codes, expectations and the JSON record."""

from __future__ import annotations

import json

import pytest

from proctor.local.progress import experiment_view
from proctor.local.summary import ExitCode, exit_code, parse_expectations, summary_json


def test_a_run_that_failed_makes_the_exit_code_non_zero(demo_objects):
    views = [experiment_view(e, p) for e, p in demo_objects]
    assert exit_code(views, timed_out=False) == ExitCode.FAILED
    assert exit_code(views[:1], timed_out=False) == ExitCode.SUCCEEDED
    assert exit_code(views[:1], timed_out=True) == ExitCode.TIMED_OUT


def test_runs_designed_to_fail_pass_when_they_fail(demo_objects):
    views = [experiment_view(e, p) for e, p in demo_objects]
    expected = parse_expectations(["digits-detached=Failed", "digits-lr-restart=Failed"])
    assert exit_code(views, False, expected) == ExitCode.SUCCEEDED
    assert exit_code(views, False, {"digits-healthy": "Failed"}) == ExitCode.FAILED


@pytest.mark.parametrize("flag", ["digits-detached", "=Failed", "x=Exploded"])
def test_a_malformed_expectation_says_how_to_write_one(flag):
    with pytest.raises(ValueError, match="NAME=PHASE"):
        parse_expectations([flag])


def test_the_json_record_holds_every_run_its_checks_and_its_bundles(demo_objects):
    views = [experiment_view(e, p) for e, p in demo_objects]
    record = summary_json(
        views, elapsed=42.04, timed_out=False, bundle_uri="file:///b", log="/x/operator.log"
    )
    record = json.loads(json.dumps(record, allow_nan=False))  # plain JSON, nothing else
    assert (record["succeeded"], record["exitCode"], record["elapsedSeconds"]) == (False, 1, 42.0)
    runs = {run["name"]: run for run in record["runs"]}
    assert runs["digits-healthy"]["training"]["step"] == 300
    l1 = runs["digits-detached"]["pyramid"][1]
    assert l1["phase"] == "Failed"
    assert {"name": "gradients_present", "verdict": "Failed"}.items() <= l1["checks"][1].items()
    assert runs["digits-detached"]["training"] is None
    [anomaly] = runs["digits-lr-restart"]["anomalies"]
    assert anomaly["bundleURI"].endswith("NonFiniteLoss-1/")
