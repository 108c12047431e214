"""The agent library's pure parts: manifests and conclusions checked offline, phases, bundle
names and places, the JSON shape of an error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from proctor.agent.bundles import bundle_bases, parse_directory_name
from proctor.agent.conclusion import check_conclusion
from proctor.agent.errors import AgentError
from proctor.agent.models import ExperimentReport
from proctor.agent.study import split_uri
from proctor.agent.submit import read_documents
from proctor.agent.waiting import decide, describe, parse_phases
from tests.support.crd_schema import REPO

INVALID = REPO / "examples" / "invalid"


def test_a_valid_manifest_reads_as_its_documents():
    text = (REPO / "examples" / "digits" / "experiment.yaml").read_text()
    [document] = read_documents(text, "experiment.yaml")
    assert document["metadata"]["name"] == "digits-mlp-baseline"


@pytest.mark.parametrize("path", sorted(INVALID.glob("*.yaml")), ids=lambda p: p.name)
def test_each_invalid_example_is_refused_naming_its_field(path: Path):
    expected = next(
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect-error:")
    )
    with pytest.raises(AgentError) as caught:
        read_documents(path.read_text(), path.name)
    assert "nothing was submitted" in caught.value.message
    assert any(detail.startswith(expected) for detail in caught.value.details), (
        expected,
        caught.value.details,
    )


def test_yaml_that_does_not_parse_is_refused_with_a_hint():
    with pytest.raises(AgentError, match=r"cannot read x\.yaml as YAML"):
        read_documents("spec: [unclosed", "x.yaml")


def test_phases_are_read_in_any_case_and_a_typo_lists_the_valid_ones():
    assert parse_phases("succeeded, Failed") == ["Succeeded", "Failed"]
    with pytest.raises(AgentError) as caught:
        parse_phases("Succeded")
    assert "Succeded" in caught.value.message
    assert "Succeeded" in caught.value.hint


def report(phase: str, **fields) -> ExperimentReport:
    return ExperimentReport(name="x", namespace="ns", phase=phase, next="", **fields)


@pytest.mark.parametrize(
    ("phase", "outcome"),
    [
        ("Succeeded", "reached"),
        ("Failed", "ended"),
        ("Concluded", "ended"),
        ("Blocked", "blocked"),
        ("Training", None),
        ("Validating", None),
        ("Pending", None),
    ],
)
def test_a_wait_for_success_ends_as_soon_as_waiting_cannot_help(phase, outcome):
    assert decide(report(phase), ["Succeeded"]) == outcome


def test_a_wait_for_the_conclusion_outlasts_the_end_of_the_run():
    assert decide(report("Succeeded"), ["Concluded"]) is None
    assert decide(report("Failed"), ["Concluded"]) is None
    assert decide(report("Concluded"), ["Concluded"]) == "reached"
    assert decide(report("Concluded"), ["Succeeded"]) == "ended"


def test_waiting_for_blocked_is_reaching_it():
    assert decide(report("Blocked"), ["Blocked"]) == "reached"


def test_progress_names_the_step_against_the_budget():
    line = describe(report("Training", training={"step": 40, "maxSteps": 300, "loss": 0.25}))
    assert line == "Training, step 40/300, loss 0.25"


def test_a_bundle_directory_name_gives_its_time_and_kind():
    when, kind = parse_directory_name("20261122T081500Z-NonFiniteLoss-0a1b2c")
    assert when == datetime(2026, 11, 22, 8, 15, tzinfo=UTC)
    assert kind == "NonFiniteLoss"
    assert parse_directory_name("notes") == (None, None)


def test_bundle_prefixes_come_from_the_flag_the_spec_the_installation_and_status():
    experiment = {
        "metadata": {"namespace": "lab", "name": "wide"},
        "spec": {"recovery": {"bundleURI": "s3://bucket/bundles"}},
        "status": {
            "anomalies": [
                {"bundleURI": "s3://bucket/bundles/lab/wide/20261122T081500Z-Stall-0a1b2c/"},
                {"bundleURI": "file:///old/lab/wide/20261122T081500Z-Stall-0a1b2c"},
            ]
        },
    }
    bases = bundle_bases(experiment, "file:///extra", {"PROCTOR_BUNDLE_URI": "s3://default/b"})
    assert bases == [
        "file:///extra/lab/wide",
        "s3://bucket/bundles/lab/wide",
        "s3://default/b/lab/wide",
        "file:///old/lab/wide",
    ]


def test_a_conclusion_is_checked_against_the_model_before_it_is_written():
    assert check_conclusion("effective", "0.97 vs 0.95", "go wider").verdict == "effective"
    with pytest.raises(AgentError) as caught:
        check_conclusion("great", "", "x")
    assert any(d.startswith("verdict") for d in caught.value.details), caught.value.details


def test_a_digest_uri_may_name_the_file_or_its_directory():
    assert split_uri("s3://b/studies/digits/digest.md") == ("s3://b/studies/digits", "digest.md")
    assert split_uri("file:///s/studies/digits/") == ("file:///s/studies/digits", "digest.md")


def test_an_error_as_json_carries_the_hint_and_details():
    error = AgentError("refused", "fix it", ["spec.x: bad"])
    assert error.as_dict() == {"error": "refused", "hint": "fix it", "details": ["spec.x: bad"]}
    assert AgentError("gone", "look").as_dict() == {"error": "gone", "hint": "look"}
