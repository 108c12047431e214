"""The API models: defaults, constraints that teach, conditions that follow the convention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from proctor.api.manifests import ManifestError, field_errors, parse_manifest
from proctor.api.v1alpha1 import (
    Condition,
    ConditionStatus,
    EnvVar,
    Experiment,
    ExperimentConditionType,
    Reason,
    Resources,
    duration_seconds,
    find_condition,
    set_condition,
)

MINIMAL = {
    "apiVersion": "proctor.dev/v1alpha1",
    "kind": "Experiment",
    "metadata": {"name": "lr-sweep-1"},
    "spec": {
        "hypothesis": {
            "statement": "A smaller learning rate removes the loss spikes.",
            "expectedOutcome": "no loss spike above 4 MAD in 1000 steps",
            "inspiredBy": [{"kind": "Note", "ref": "spikes seen in run 12"}],
            "independentVariable": "code.config.lr",
            "controls": ["seed 0"],
        },
        "code": {"image": "team/model:1", "entrypoint": "model.train:setup"},
        "training": {"budget": {"maxSteps": 1000}},
    },
}


def test_minimal_experiment_gets_documented_defaults():
    exp = Experiment.model_validate(MINIMAL)
    assert exp.spec.validation.layers.l0.max_data_wait_ratio == 0.1
    assert exp.spec.validation.layers.l2.target_loss_ratio == 0.1
    assert exp.spec.training.resources.gpus == 1
    assert exp.spec.recovery.on_anomaly == "Notify"
    assert exp.spec.watchdog.enabled is True
    assert exp.status is None


def test_wire_format_is_camel_case_without_unset_fields():
    wire = Experiment.model_validate(MINIMAL).to_wire()
    assert wire["spec"]["hypothesis"]["expectedOutcome"]
    assert "conclusion" not in wire["spec"]
    assert "status" not in wire
    assert wire["spec"]["validation"]["layers"]["l0"]["maxDataWaitRatio"] == 0.1


@pytest.mark.parametrize(
    "field", ["statement", "expectedOutcome", "inspiredBy", "independentVariable", "controls"]
)
def test_every_hypothesis_field_is_required(field):
    document = {**MINIMAL, "spec": {**MINIMAL["spec"]}}
    document["spec"]["hypothesis"] = {
        k: v for k, v in MINIMAL["spec"]["hypothesis"].items() if k != field
    }
    with pytest.raises(ManifestError) as caught:
        parse_manifest(document)
    assert [e.path for e in caught.value.errors] == [f"spec.hypothesis.{field}"]


@pytest.mark.parametrize(
    "name", ["HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "WANDB_API_KEY", "DB_PASSWORD"]
)
def test_credentials_cannot_be_literal_env_values(name):
    with pytest.raises(ValidationError, match=r"use valueFrom\.secretKeyRef"):
        EnvVar(name=name, value="s3cr3t")


@pytest.mark.parametrize("name", ["TOKENIZER_PATH", "DATA_DIR", "NUM_TOKENS_PER_BATCH"])
def test_ordinary_env_values_are_fine(name):
    assert EnvVar(name=name, value="x").value == "x"


def test_credentials_from_a_secret_are_fine():
    var = EnvVar.model_validate(
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    )
    assert var.value_from is not None
    assert var.value_from.secret_key_ref is not None


def test_env_source_needs_exactly_one_reference():
    with pytest.raises(ValidationError, match="exactly one"):
        EnvVar.model_validate({"name": "X", "valueFrom": {}})


@pytest.mark.parametrize("value", [4, "4", "500m", "16Gi", "1.5"])
def test_quantities_accept_kubernetes_notation(value):
    assert Resources(cpu=value).cpu == value


def test_bad_quantity_message_shows_the_notation():
    with pytest.raises(ValidationError) as caught:
        Resources(memory="16GB")
    [error] = field_errors(caught.value)
    assert error.path == "memory"
    assert "16Gi" in error.message


def test_durations():
    assert duration_seconds("2h30m") == 9000
    assert duration_seconds("90s") == 90
    assert duration_seconds("1.5h") == 5400
    with pytest.raises(ValueError, match="like 90s"):
        duration_seconds("10 minutes")


def test_unknown_kind_is_explained():
    with pytest.raises(ManifestError, match=r"expected apiVersion proctor\.dev/v1alpha1"):
        parse_manifest({"apiVersion": "v1", "kind": "Pod"})


def test_condition_transition_time_moves_only_when_status_changes():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=5)
    validated = ExperimentConditionType.VALIDATED
    conditions = set_condition(
        [], validated, ConditionStatus.UNKNOWN, Reason.PYRAMID_RUNNING, "L0 running", 1, now=t0
    )
    conditions = set_condition(
        conditions, validated, ConditionStatus.UNKNOWN, Reason.PYRAMID_RUNNING, "L1", 1, now=t1
    )
    current = find_condition(conditions, validated)
    assert current is not None
    assert current.last_transition_time == t0
    assert current.message == "L1"
    conditions = set_condition(
        conditions, validated, ConditionStatus.TRUE, Reason.PYRAMID_PASSED, "all passed", 1, now=t1
    )
    current = find_condition(conditions, validated)
    assert current is not None
    assert current.last_transition_time == t1
    assert len(conditions) == 1


def test_condition_reason_must_be_camel_case():
    with pytest.raises(ValidationError):
        Condition(
            type="Validated",
            status=ConditionStatus.TRUE,
            reason="checks failed",
            last_transition_time=datetime.now(UTC),
        )


def test_reasons_are_valid_condition_reasons():
    now = datetime.now(UTC)
    for reason in Reason:
        Condition(
            type="Validated", status=ConditionStatus.TRUE, reason=reason, last_transition_time=now
        )
