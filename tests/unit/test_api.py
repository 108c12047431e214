"""The API models: defaults, constraints that teach, conditions that follow the convention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from pydantic import ValidationError

from proctor.api.manifests import ManifestError, field_errors, load_manifests, parse_manifest
from proctor.api.v1alpha1 import (
    CodeSpec,
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
from proctor.api.v1alpha1.pyramid import HealthSettings

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
    assert duration_seconds("0h30m") == 1800


@pytest.mark.parametrize("bad", ["10 minutes", "0s", "0h0m", "1.5h", "", "5"])
def test_durations_must_be_whole_units_above_zero(bad):
    with pytest.raises(ValueError, match="like 90s"):
        duration_seconds(bad)


def test_training_gets_one_gpu_unless_told_otherwise():
    document = {**MINIMAL, "spec": {**MINIMAL["spec"]}}
    document["spec"]["training"] = {"budget": {"maxSteps": 10}, "resources": {"memory": "16Gi"}}
    exp = Experiment.model_validate(document)
    assert exp.spec.training.resources.gpus == 1
    assert exp.spec.validation.resources is None, "validation follows training unless set"


@pytest.mark.parametrize("value", [-1, "-1", "-500m"])
def test_negative_quantities_are_refused(value):
    with pytest.raises(ValidationError):
        Resources(cpu=value)


def test_gradient_bounds_must_be_in_order():
    with pytest.raises(ValidationError, match="minGradNorm must be below maxGradNorm"):
        HealthSettings(min_grad_norm=10, max_grad_norm=1)


def test_env_names_must_be_unique():
    with pytest.raises(ValidationError, match="repeated: SEED"):
        CodeSpec(
            image="i:1",
            entrypoint="m:f",
            env=[EnvVar(name="SEED", value="1"), EnvVar(name="SEED", value="2")],
        )


def test_names_that_cannot_become_job_names_are_refused():
    document = {**MINIMAL, "metadata": {"name": "x" * 51}}
    with pytest.raises(ManifestError, match="at most 50 characters"):
        parse_manifest(document)


def test_a_manifest_needs_a_name():
    with pytest.raises(ManifestError) as caught:
        parse_manifest({**MINIMAL, "metadata": {}})
    assert [e.path for e in caught.value.errors] == ["metadata.name"]


@pytest.mark.parametrize("kind", [["Experiment"], {"a": 1}, None, 3])
def test_non_string_kind_is_explained_not_crashed_on(kind):
    with pytest.raises(ManifestError, match="expected apiVersion"):
        parse_manifest({**MINIMAL, "kind": kind})


def test_errors_count_documents_as_they_appear_in_the_file(tmp_path):
    manifest = tmp_path / "two.yaml"
    bad = yaml.safe_dump({**MINIMAL, "spec": {}})
    manifest.write_text(f"---\n---\n---\n{bad}")  # two empty documents first
    with pytest.raises(ManifestError, match="document 3"):
        load_manifests(manifest)


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
