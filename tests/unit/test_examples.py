"""Examples are tests: every valid manifest loads, every invalid one fails naming its field,
and the CRD schema the API server enforces agrees with the models on each of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from proctor.api.manifests import ManifestError, load_manifests
from proctor.api.v1alpha1 import Experiment, ValidationPyramid
from tests.support.crd_schema import REPO, admission_errors, load_crd, root_schema

VALID = sorted((REPO / "examples").glob("*/*.yaml"))
VALID = [p for p in VALID if p.parent.name != "invalid"]
INVALID = sorted((REPO / "examples" / "invalid").glob("*.yaml"))
PLURAL = {"Experiment": "experiments", "ValidationPyramid": "validationpyramids"}


def _expected_error(path: Path) -> str:
    match = re.search(r"^# expect-error: (\S+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} must say which field is wrong: '# expect-error: spec.x.y'"
    return match.group(1)


def _api_server_errors(document: dict) -> list[str]:
    return admission_errors(root_schema(load_crd(PLURAL[document["kind"]])), document)


def test_there_is_a_valid_example_of_each_kind_and_each_kind_of_mistake():
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in VALID}
    assert kinds == {"Experiment", "ValidationPyramid"}
    names = {p.stem for p in INVALID}
    assert {"missing-hypothesis", "bad-enum", "negative-budget", "unknown-field"} <= names


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_loads_into_the_models(path):
    resources = load_manifests(path)
    assert resources
    for resource in resources:
        assert isinstance(resource, Experiment | ValidationPyramid)
        assert resource.metadata.name


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_passes_the_crd_schema(path):
    for document in yaml.safe_load_all(path.read_text()):
        assert _api_server_errors(document) == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_refused_with_a_message_naming_the_field(path):
    field = _expected_error(path)
    with pytest.raises(ManifestError) as caught:
        load_manifests(path)
    paths = [error.path for error in caught.value.errors]
    assert field in paths, f"expected an error on {field}, got {caught.value}"
    assert field in str(caught.value)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_refused_by_the_crd_schema_too(path):
    document = yaml.safe_load(path.read_text())
    errors = _api_server_errors(document)
    assert errors, "the API server would accept what the models refuse"
    field_name = _expected_error(path).rsplit(".", 1)[-1].split("[")[0]
    assert field_name in "\n".join(errors)


def test_round_trip_through_the_wire_format_is_lossless():
    for path in VALID:
        for resource in load_manifests(path):
            again = type(resource).model_validate(resource.to_wire())
            assert again == resource
