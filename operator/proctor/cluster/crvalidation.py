"""Custom-resource admission as the real API server does it, against a CRD's structural schema:
prune unknown fields (or refuse them under strict field validation), apply defaults, validate the
OpenAPI schema, then evaluate the CEL rules (`x-kubernetes-validations`) with cel-python.

Errors come back as Kubernetes `StatusCause`s (reason, message, field) so the 422 body matches what
kubectl prints from a real cluster. Not emulated: CEL cost estimation and CEL type-checking at CRD
creation (cel-python has neither), and ratcheting of unchanged invalid fields.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema  # type: ignore[import-untyped]
from celpy import CELEvalError, json_to_cel  # type: ignore[attr-defined]

_METADATA_KEYS = {"apiVersion", "kind", "metadata"}


@dataclass(frozen=True)
class Cause:
    """One invalid field, as metav1.StatusCause."""

    reason: str
    message: str
    field: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def prune_and_default(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """Drop fields the schema does not know and fill defaults, in place; returns dropped paths."""
    dropped: list[str] = []
    _prune(schema, obj, "", dropped, root=True)
    return dropped


def validate(
    schema: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None
) -> list[Cause]:
    """Every schema and CEL violation of `obj` (with `old` for transition rules on update)."""
    causes = [_cause(error) for error in _validator(schema).iter_errors(obj)]
    if causes:
        return causes  # CEL rules assume a well-typed object
    return cel_causes(schema, obj, old)


def cel_causes(schema: dict[str, Any], obj: Any, old: Any = None) -> list[Cause]:
    """Only the CEL rules' violations (transition rules when `old` is given)."""
    return _cel(schema, obj, old, "")


def _prune(schema: dict[str, Any], value: Any, path: str, dropped: list[str], root: bool) -> None:
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            for key in list(value):
                if key in properties:
                    continue
                if root and key in _METADATA_KEYS:
                    continue
                if not schema.get("x-kubernetes-preserve-unknown-fields"):
                    dropped.append(f"{path}.{key}".lstrip("."))
                    del value[key]
            for key, sub in properties.items():
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value and not (root and key == "metadata"):
                    _prune(sub, value[key], f"{path}.{key}", dropped, root=False)
        elif isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                _prune(schema["additionalProperties"], item, f"{path}.{key}", dropped, root=False)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _prune(schema["items"], item, f"{path}[{index}]", dropped, root=False)


# Compiled validators by schema identity: a CRD's schema object lives as long as its resource
# type, and serialising it on every request to key a cache cost more than validating.
_VALIDATORS: dict[int, tuple[dict[str, Any], jsonschema.Draft4Validator]] = {}


def _validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, jsonschema.Draft4Validator(_as_json_schema(schema)))
        _VALIDATORS[id(schema)] = cached
    return cached[1]


def _as_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3.0 `nullable` in JSON Schema Draft 4 terms."""
    node = dict(node)
    if node.get("nullable"):
        if "anyOf" in node:
            node["anyOf"] = [*node["anyOf"], {"type": "null"}]
        elif "type" in node:
            node["type"] = [node["type"], "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    if "properties" in node:
        node["properties"] = {k: _as_json_schema(v) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _as_json_schema(node["additionalProperties"])
    if "items" in node:
        node["items"] = _as_json_schema(node["items"])
    return node


def _field(path: Any) -> str:
    field = ""
    for part in path:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field


def _cause(error: jsonschema.ValidationError) -> Cause:
    field = _field(error.absolute_path)
    value = error.instance
    shown = json.dumps(value) if not isinstance(value, dict | list) else f'"{type(value).__name__}"'
    match error.validator:
        case "required":
            missing = error.message.split("'")[1]
            return Cause("FieldValueRequired", "Required value", f"{field}.{missing}".lstrip("."))
        case "enum":
            supported = ", ".join(json.dumps(v) for v in error.validator_value if v is not None)
            return Cause(
                "FieldValueNotSupported",
                f"Unsupported value: {shown}: supported values: {supported}",
                field,
            )
        case "type":
            expected = error.validator_value
            expected = expected[0] if isinstance(expected, list) else expected
            return Cause(
                "FieldValueTypeInvalid",
                f"Invalid value: {shown}: {field} in body must be of type {expected}: {shown}",
                field,
            )
        case "maxLength" | "maxItems" | "maxProperties":
            unit = {"maxLength": "bytes", "maxItems": "items", "maxProperties": "properties"}
            return Cause(
                "FieldValueTooLong" if error.validator == "maxLength" else "FieldValueTooMany",
                f"Too long: may not be more than {error.validator_value} "
                f"{unit[str(error.validator)]}",
                field,
            )
    detail = {
        "minimum": f"should be greater than or equal to {error.validator_value}",
        "maximum": f"should be less than or equal to {error.validator_value}",
        "minLength": f"should be at least {error.validator_value} chars long",
        "minItems": f"should have at least {error.validator_value} items",
        "pattern": f"should match '{error.validator_value}'",
    }.get(str(error.validator), error.message)
    if error.validator in ("minimum", "maximum") and error.schema.get(
        "exclusive" + str(error.validator).capitalize()
    ):
        detail = detail.replace(" or equal to", "")
    return Cause("FieldValueInvalid", f"Invalid value: {shown}: {field} in body {detail}", field)


@functools.lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel(schema: dict[str, Any], value: Any, old: Any, path: str) -> list[Cause]:
    causes = []
    converted: dict[str, Any] = {}  # each side converted once, however many rules read it
    unchanged = old is not None and value == old
    for rule in schema.get("x-kubernetes-validations", ()):
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is None:
            continue  # transition rules run only on update
        if unchanged and not uses_old:
            # Validation ratcheting (Kubernetes 1.30+): a rule that does not read oldSelf does
            # not block an update that leaves its value as it was. It also spares every status
            # write the spec's rules, which cel-python takes milliseconds to evaluate.
            continue
        if "self" not in converted:
            converted["self"] = json_to_cel(value)
        activation = {"self": converted["self"]}
        if uses_old:
            if "oldSelf" not in converted:
                converted["oldSelf"] = json_to_cel(old)
            activation["oldSelf"] = converted["oldSelf"]
        try:
            ok = bool(_program(rule["rule"]).evaluate(activation))
        except CELEvalError as exc:  # e.g. a field the rule reads is absent
            ok, message = False, f"{rule['message']} (rule could not be evaluated: {exc})"
        else:
            message = rule.get("message") or f"failed rule: {rule['rule']}"
        if not ok:
            field = (rule.get("fieldPath") or path or ".").lstrip(".") or "<root>"
            causes.append(Cause("FieldValueInvalid", f'Invalid value: "object": {message}', field))
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                sub_old = old.get(key) if isinstance(old, dict) else None
                causes += _cel(sub, value[key], sub_old, f"{path}.{key}")
        if isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                causes += _cel(schema["additionalProperties"], item, None, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            causes += _cel(schema["items"], item, None, f"{path}[{index}]")
    return causes
