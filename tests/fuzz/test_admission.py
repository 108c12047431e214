"""Thousands of manifests (valid, near-valid, hostile) through the API server's admission, the
operator's models and its pure reconcilers, in process.

Admission is the emulated API server's own `Store.create` (dry run) against the generated CRDs:
metadata checks, pruning, defaulting, the structural schema and the CEL rules, exactly what a
`kubectl apply` meets. The promises checked for every manifest:

- admission never crashes: it admits, or it refuses with a Kubernetes error whose every cause
  names the field at fault (a path that exists in what was sent);
- what the API server admits, the operator's model admits too (the CRD and the models agree),
  with one documented exception the schema cannot express (see `MODEL_ONLY_LIMITS`);
- for what both admit, the reconcilers plan without raising, the status they write passes the
  status schema, and every object they create passes the API server (a refusal there would
  leave the object retried on every resync).
"""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import celpy
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from proctor.api.v1alpha1 import Experiment, ValidationPyramid
from proctor.cluster import crvalidation
from proctor.cluster.errors import ApiError
from proctor.cluster.store import Store
from proctor.controller.experiment_reconcile import Observed, reconcile_experiment
from proctor.controller.pyramid_reconcile import reconcile_pyramid
from proctor.controller.settings import ControllerSettings
from tests.fuzz.examples import examples
from tests.fuzz.manifests import KINDS, SCHEMAS, SEEDS, manifests, nested
from tests.support.crd_schema import load_crd

celpy.Environment()  # cel-python raises the recursion limit when first used; not mid-example
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
SETTINGS = ControllerSettings()
MODELS = {"Experiment": Experiment, "ValidationPyramid": ValidationPyramid}

MODEL_ONLY_LIMITS = ("spec.code.config",)
"""Fields whose limits only the model can check: the CRD keeps `code.config` free-form
(x-kubernetes-preserve-unknown-fields), so neither its schema nor CEL can see how deep it nests
or how large it is. An object past those limits is admitted and then ends Failed/SpecInvalid."""


@pytest.fixture(scope="module")
def store() -> Store:
    store = Store()
    crds = store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    for plural in KINDS.values():
        store.create(crds, "", load_crd(plural))
    return store


def _wire(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the server decodes: the manifest through JSON (as Python's clients send it)."""
    decoded: dict[str, Any] = json.loads(json.dumps(manifest))
    return decoded


def _admit(store: Store, manifest: dict[str, Any], strict: bool) -> dict[str, Any] | ApiError:
    kind = manifest.get("kind")
    plural = KINDS[kind if isinstance(kind, str) and kind in KINDS else "Experiment"]
    rt = store.type("proctor.dev", "v1alpha1", plural)
    try:
        return store.create(rt, "default", _wire(manifest), dry_run=True, strict=strict)
    except ApiError as refused:
        return refused


def _exists(manifest: Any, field: str, required: bool = False) -> bool:
    """Whether `field` (spec.code.env[1].name) names something sent, or, for a `required`
    field, something missing from what was sent. Map keys may hold dots (nvidia.com/gpu)."""
    node, rest = manifest, field
    while rest:
        if isinstance(node, list):
            match = re.match(r"\[(\d+)\]", rest)
            if match is None or int(match[1]) >= len(node):
                return False
            node, rest = node[int(match[1])], rest[match.end() :]
        elif isinstance(node, dict):
            rest = rest.removeprefix(".")
            keys = [k for k in node if rest == k or rest.startswith((f"{k}.", f"{k}["))]
            if not keys:
                return required or not re.search(r"[.\[]", rest)
            key = max(keys, key=len)
            node, rest = node[key], rest[len(key) :]
        else:
            return False
    return True


def _assert_names_fields(refusal: ApiError, sent: dict[str, Any]) -> None:
    if refusal.code == 422:
        causes = (refusal.details or {}).get("causes") or []
        assert causes, f"a 422 without causes: {refusal.message}"
        for cause in causes:
            assert cause["message"], cause
            assert cause["field"] not in ("", "<root>"), cause
            required = cause["reason"] == "FieldValueRequired"
            assert _exists(sent, cause["field"], required), f"{cause} names no field sent"
        return
    assert refusal.code == 400, f"refused with {refusal.code}: {refusal.message}"
    unknown = re.findall(r'unknown field "([^"]*)"', refusal.message)
    if unknown:
        for field in unknown:
            assert _exists(sent, field), f"{field!r} is not in the manifest"
    else:
        assert "metadata" in refusal.message, refusal.message


def _status_refusals(kind: str, status: dict[str, Any]) -> list[str]:
    schema = SCHEMAS[kind]["properties"]["status"]
    return [str(c) for c in crvalidation.validate(schema, copy.deepcopy(status), None)]


def _children_refusals(store: Store, children: list[dict[str, Any]]) -> list[str]:
    refusals = []
    for child in children:
        api_version = child["apiVersion"]
        group, _, version = api_version.rpartition("/")
        plural = {
            "ValidationPyramid": "validationpyramids",
            "Job": "jobs",
            "Service": "services",
            "ServiceAccount": "serviceaccounts",
            "Role": "roles",
            "RoleBinding": "rolebindings",
            "Secret": "secrets",
        }[child["kind"]]
        rt = store.type(group, version, plural)
        name = f"{child['kind']} {child['metadata'].get('name')}"
        try:
            store.create(rt, "default", _wire(child), dry_run=True, strict=True)
        except ApiError as refused:
            refusals.append(f"{name}: {refused.message}")
        # Built-in kinds are checked only loosely by the emulator; a real API server decodes
        # every integer of a Job or pod as int64 and refuses what does not fit.
        refusals += [f"{name}: {path} = {value} overflows int64" for path, value in _big(child)]
    return refusals


def _big(value: Any) -> list[tuple[str, int]]:
    found, todo = [], [("", value)]
    while todo:
        path, node = todo.pop()
        if isinstance(node, dict):
            todo += [(f"{path}.{k}", v) for k, v in node.items()]
        elif isinstance(node, list):
            todo += [(f"{path}[{i}]", v) for i, v in enumerate(node)]
        elif isinstance(node, int) and not -(2**63) <= node < 2**63:
            found.append((path, node))
    return found


def _passed_pyramid(name: str) -> dict[str, Any]:
    layers = [
        {"layer": layer, "phase": "Passed", "attempts": 1, "checks": [], "message": "ok"}
        for layer in ("L0", "L1", "L2", "L3")
    ]
    return {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": "ValidationPyramid",
        "metadata": {"name": name, "namespace": "default", "uid": "uid-vp", "generation": 1},
        "status": {"phase": "Passed", "currentLayer": "L3", "layers": layers},
    }


def _model_refusal(kind: str, obj: dict[str, Any]) -> ValidationError | None:
    try:
        MODELS[kind].model_validate(obj)
    except ValidationError as refused:
        return refused
    return None


def _check(store: Store, kind: str, manifest: dict[str, Any], strict: bool) -> None:
    note(f"manifest: {json.dumps(manifest, default=repr)[:3000]}")
    outcome = _admit(store, manifest, strict)
    if isinstance(outcome, ApiError):
        note(f"refused: {outcome.message[:1000]}")
        _assert_names_fields(outcome, _wire(manifest))
        return
    admitted = outcome
    refused = _model_refusal(kind, admitted)
    if refused is not None:
        fields = {".".join(str(p) for p in e["loc"]) for e in refused.errors()}
        assert all(f.startswith(MODEL_ONLY_LIMITS) for f in fields), (
            f"the API server admitted what the model refuses: {refused}"
        )
        return
    if kind == "Experiment":
        plans = [
            reconcile_experiment(admitted, Observed(), NOW, SETTINGS),
            reconcile_experiment(
                admitted,
                Observed(pyramid=_passed_pyramid(admitted["metadata"]["name"])),
                NOW,
                SETTINGS,
            ),
        ]
    else:
        plans = [reconcile_pyramid(admitted, [], NOW, SETTINGS)]
    for plan in plans:
        assert _status_refusals(kind, plan.status) == []
        assert _children_refusals(store, plan.create) == []


@settings(max_examples=examples(700))
@given(manifest=manifests("Experiment"), strict=st.booleans())
def test_experiments_are_refused_with_a_field_or_admitted_and_planned(store, manifest, strict):
    _check(store, "Experiment", manifest, strict)


@settings(max_examples=examples(400))
@given(manifest=manifests("ValidationPyramid"), strict=st.booleans())
def test_pyramids_are_refused_with_a_field_or_admitted_and_planned(store, manifest, strict):
    _check(store, "ValidationPyramid", manifest, strict)


# ---- what the fuzzing found, pinned ----------------------------------------------------------


def _digits(**spec_changes: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(SEEDS["Experiment"][0])
    for dotted, value in spec_changes.items():
        node = manifest["spec"]
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return manifest


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        # An integer past int64 crashed admission (cel-python: ValueError overflow); the real
        # server decodes it as a float64, which an integer field refuses.
        ({"training__budget__maxSteps": 2**64}, "spec.training.budget.maxSteps", "integer"),
        ({"code__config": {"seed": 2**64}}, None, None),  # free-form: a float, admitted
        # NaN and Infinity are not JSON; Python's decoder reads them, and they slipped past
        # every bound (NaN compares false with both).
        (
            {"watchdog__thresholds": {"minMfuRatio": math.nan}},
            "spec.watchdog.thresholds.minMfuRatio",
            "NaN",
        ),
        ({"code__config": {"lr": math.inf}}, "spec.code.config.lr", "Infinity"),
        # RE2's `$` is the end of the text; Python's also matched before a final newline.
        ({"code__entrypoint": "digits_mlp:setup\n"}, "spec.code.entrypoint", "should match"),
        ({"training__resources__cpu": "1\n"}, "spec.training.resources.cpu", "should match"),
        # A list-type map's keys are unique: two env entries named A were admitted.
        (
            {"code__env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "spec.code.env[1]",
            "Duplicate value",
        ),
        # In CEL a null field is absent: `{secretKeyRef: null}` passed "exactly one source".
        (
            {"code__env": [{"name": "A", "valueFrom": {"secretKeyRef": None}}]},
            "spec.code.env[0].valueFrom",
            "exactly one",
        ),
        ({"training__budget": {"maxSteps": None}}, "spec.training.budget", "unbounded"),
        # A non-nullable null is dropped (or defaulted), not refused as the wrong type.
        ({"watchdog": None}, None, None),
        ({"validation__layers__l0__steps": None}, None, None),
        # Lone surrogates become U+FFFD: CEL's RE2 could not encode them and crashed.
        (
            {"conclusion": {"verdict": "effective", "evidence": "\ud800 1", "learnings": "x"}},
            None,
            None,
        ),
        # Quantities were unbounded in the CRD, 64 characters in the model.
        ({"training__resources__memory": "1" * 65}, "spec.training.resources.memory", "Too long"),
        # The queue name becomes a label value (63 characters); a longer one made the API
        # server refuse the training Job after the whole pyramid had run.
        ({"training__queueName": "q" * 64}, "spec.training.queueName", "Too long"),
        # A duration past Go's (and the watchdog's timers') range.
        (
            {"training__budget__maxDuration": "9" * 20 + "h"},
            "spec.training.budget.maxDuration",
            "at most 2562047h",
        ),
        ({"training__budget__maxDuration": "2562047h"}, None, None),
    ],
)
def test_what_the_fuzzing_found_is_admitted_or_refused_by_field(store, changes, field, words):
    manifest = _digits(**changes)
    outcome = _admit(store, manifest, strict=True)
    if field is None:
        assert isinstance(outcome, dict), outcome
        assert _model_refusal("Experiment", outcome) is None
        return
    assert isinstance(outcome, ApiError), f"admitted: {outcome}"
    causes = (outcome.details or {}).get("causes") or []
    assert any(c["field"] == field and words in c["message"] for c in causes), causes


def test_the_decoded_values_are_what_a_go_server_would_store(store):
    manifest = _digits(
        watchdog=None,
        validation__layers__l0__steps=None,
        code__config={"big": 2**64, "text": "a\ud800b"},
        hypothesis__statement="\ud83e\udd16 \udfff",
    )
    admitted = _admit(store, manifest, strict=True)
    assert isinstance(admitted, dict), admitted
    assert "watchdog" not in admitted["spec"]  # dropped: the model's defaults apply
    assert admitted["spec"]["validation"]["layers"]["l0"]["steps"] == 20  # defaulted
    assert admitted["spec"]["code"]["config"] == {"big": float(2**64), "text": "a\ufffdb"}
    assert admitted["spec"]["hypothesis"]["statement"] == "\U0001f916 \ufffd"


def test_metadata_maps_that_are_not_maps_are_refused_and_null_ones_are_empty(store):
    manifest = _digits()
    manifest["metadata"]["labels"] = ""
    refused = _admit(store, manifest, strict=True)
    assert isinstance(refused, ApiError)
    assert [c["field"] for c in refused.details["causes"]] == ["metadata.labels"]
    manifest["metadata"]["labels"] = None
    admitted = _admit(store, manifest, strict=True)
    assert isinstance(admitted, dict), admitted
    assert Experiment.model_validate(admitted).metadata.labels == {}


@pytest.mark.parametrize(
    ("config", "words"),
    [
        # Deeper than pydantic serialises (255): every reconcile raised ValueError and retried.
        ({"bomb": nested(300)}, "nests 301 levels deep"),
        # PROCTOR_CONFIG over 128 KiB: Linux refuses to start any container of the Experiment.
        ({"bomb": "x" * 200_000}, "bytes as JSON"),
    ],
)
def test_a_config_the_pods_cannot_carry_fails_spec_invalid_not_in_a_loop(store, config, words):
    admitted = _admit(store, _digits(code__config=config), strict=True)
    assert isinstance(admitted, dict), "the API server cannot see inside the free-form config"
    with pytest.raises(ValidationError, match=words) as refused:
        reconcile_experiment(admitted, Observed(), NOW, SETTINGS)
    [error] = refused.value.errors()
    assert error["loc"] == ("spec", "code", "config")
    assert "PROCTOR_CONFIG" in error["msg"]
