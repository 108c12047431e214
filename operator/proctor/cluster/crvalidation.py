"""Custom-resource admission as the real API server does it, against a CRD's structural schema:
prune unknown fields (or refuse them under strict field validation), apply defaults, validate the
OpenAPI schema, then evaluate the CEL rules (`x-kubernetes-validations`) with cel-python.

Errors come back as Kubernetes `StatusCause`s (reason, message, field) so the 422 body matches what
kubectl prints from a real cluster. Not emulated: CEL cost estimation and CEL type-checking at CRD
creation (cel-python has neither), and ratcheting of unchanged invalid fields.

What the real server's Go JSON decoder and structural schemas do, and Python would not by itself:
- a number beyond int64 decodes as a float64 (so an integer field refuses it as not an integer),
  one beyond float64 is refused, and there is no NaN or Infinity in JSON;
- a lone UTF-16 surrogate decodes as U+FFFD;
- a null in a field that is not nullable is dropped, or replaced by the field's default;
- patterns are RE2, whose `$` is the end of the text (Python's also matches before a final
  newline), and so are CEL's `matches()`;
- list-type map and set items are unique (by their keys);
- in CEL a nullable field that is null counts as absent (`has()` is false).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema  # type: ignore[import-untyped]
import re2  # type: ignore[import-untyped]  # google-re2: cel-python's regex engine, RE2 as Go's
from celpy import CELEvalError, json_to_cel  # type: ignore[attr-defined]

_METADATA_KEYS = {"apiVersion", "kind", "metadata"}
_INT64 = (-(2**63), 2**63 - 1)
# How the real server names a value's type in a CEL rule's message.
_CEL_TYPE_NAMES = {
    "dict": "object",
    "list": "array",
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
}
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    """Drop fields the schema does not know and fill defaults, in place; returns dropped paths.
    Values are first made what the Go decoder would have read (see the module docstring)."""
    _as_decoded(obj)
    dropped: list[str] = []
    _prune(schema, obj, "", dropped, root=True)
    return dropped


def validate(
    schema: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None
) -> list[Cause]:
    """Every schema and CEL violation of `obj` (with `old` for transition rules on update)."""
    causes = _number_causes(obj) + _metadata_causes(obj)
    if causes:
        return causes  # not JSON a real server could have decoded
    causes = [_cause(error) for error in _validator(schema).iter_errors(obj)]
    causes += _duplicate_causes(schema, obj, "")
    if causes:
        return causes  # CEL rules assume a well-typed object
    return cel_causes(schema, obj, old)


def cel_causes(schema: dict[str, Any], obj: Any, old: Any = None) -> list[Cause]:
    """Only the CEL rules' violations (transition rules when `old` is given)."""
    return _cel(schema, obj, old, "")


def _walk(value: Any) -> Iterator[tuple[tuple[str | int, ...], Any, Any, str | int]]:
    """(path, container, key, value) of every value nested in `value`, without recursion (a
    free-form field may nest deeper than Python's stack)."""
    todo: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while todo:
        path, node = todo.pop()
        items: Any = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, item in list(items):
            yield (*path, key), node, key, item
            if isinstance(item, dict | list):
                todo.append(((*path, key), item))


def _as_decoded(obj: dict[str, Any]) -> None:
    """In place: what Go's decoder makes of the JSON Python's decoded. Integers beyond int64
    become float64 (those beyond float64 stay, for `_number_causes` to refuse), and lone
    surrogates, which Go cannot hold in a UTF-8 string, become U+FFFD."""
    for _, container, key, item in _walk(obj):
        if (
            isinstance(item, int)
            and not isinstance(item, bool)
            and not (_INT64[0] <= item <= _INT64[1])
        ):
            with contextlib.suppress(OverflowError):  # beyond float64: _number_causes
                container[key] = float(item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            container[key] = _SURROGATE.sub("\ufffd", item)
        if isinstance(container, dict) and isinstance(key, str) and _SURROGATE.search(key):
            container[_SURROGATE.sub("\ufffd", key)] = container.pop(key)


def _number_causes(obj: Any) -> list[Cause]:
    """Numbers no JSON decoder of the real server reads: NaN, infinities, beyond float64."""
    causes = []
    for path, _, _, item in _walk(obj):
        if isinstance(item, float) and not math.isfinite(item):
            shown = "NaN" if math.isnan(item) else "Infinity"
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > _INT64[1]:
            shown = f"an integer of {item.bit_length()} bits"
        else:
            continue
        causes.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: {shown}: JSON numbers are finite and fit a 64-bit float",
                _field(path),
            )
        )
    return causes


def _metadata_causes(obj: dict[str, Any]) -> list[Cause]:
    """ObjectMeta's maps, which the real server decodes into map[string]string (null is none)."""
    meta = obj.get("metadata")
    causes = []
    for key in ("labels", "annotations"):
        value = meta.get(key) if isinstance(meta, dict) else None
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            shown = json.dumps(value)[:200] if not isinstance(value, dict) else '"object"'
            causes.append(
                Cause(
                    "FieldValueTypeInvalid",
                    f"Invalid value: {shown}: metadata.{key} must be a map of strings",
                    f"metadata.{key}",
                )
            )
    return causes


def _duplicate_causes(schema: dict[str, Any], value: Any, path: str) -> list[Cause]:
    """Items repeated in a list-type map (by its keys) or set, as the real server refuses them."""
    causes = []
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                causes += _duplicate_causes(sub, value[key], f"{path}.{key}".lstrip("."))
        if isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                causes += _duplicate_causes(
                    schema["additionalProperties"], item, f"{path}.{key}".lstrip(".")
                )
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        list_type = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: set[str] = set()
        for index, item in enumerate(value):
            if list_type == "map" and isinstance(item, dict):
                identity = json.dumps({k: item.get(k) for k in keys if k in item}, sort_keys=True)
                shown = f"map[string]interface {{}}{identity}"
            elif list_type == "set":
                identity = shown = json.dumps(item, sort_keys=True)
            else:
                identity = ""
            if identity and identity in seen:
                causes.append(
                    Cause("FieldValueDuplicate", f"Duplicate value: {shown}", f"{path}[{index}]")
                )
            seen.add(identity)
            causes += _duplicate_causes(schema["items"], item, f"{path}[{index}]")
    return causes


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
                if key in value and value[key] is None and not sub.get("nullable"):
                    del value[key]  # a null where null is not allowed: dropped or defaulted
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value and not (root and key == "metadata"):
                    _prune(sub, value[key], f"{path}.{key}", dropped, root=False)
        elif isinstance(schema.get("additionalProperties"), dict):
            extra = schema["additionalProperties"]
            for key, item in list(value.items()):
                if item is None and not extra.get("nullable"):
                    if "default" in extra:
                        value[key] = copy.deepcopy(extra["default"])
                    else:
                        del value[key]
                    continue
                _prune(extra, item, f"{path}.{key}", dropped, root=False)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _prune(schema["items"], item, f"{path}[{index}]", dropped, root=False)


# Compiled validators by schema identity: a CRD's schema object lives as long as its resource
# type, and serialising it on every request to key a cache cost more than validating.
_VALIDATORS: dict[int, tuple[dict[str, Any], jsonschema.Draft4Validator]] = {}


def _re2_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """`pattern` as the API server reads it: RE2, whose `$` never matches before a newline."""
    if validator.is_type(instance, "string") and not re2.search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Draft4WithRE2 = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": _re2_pattern})


def _validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, _Draft4WithRE2(_as_json_schema(schema)))
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
            converted["self"] = json_to_cel(_without_nulls(schema, value))
        activation = {"self": converted["self"]}
        if uses_old:
            if "oldSelf" not in converted:
                converted["oldSelf"] = json_to_cel(_without_nulls(schema, old))
            activation["oldSelf"] = converted["oldSelf"]
        try:
            ok = bool(_program(rule["rule"]).evaluate(activation))
        except CELEvalError as exc:  # e.g. a field the rule reads is absent
            ok, message = False, f"{rule['message']} (rule could not be evaluated: {exc})"
        else:
            message = rule.get("message") or f"failed rule: {rule['rule']}"
        if not ok:
            field = (rule.get("fieldPath") or path or ".").lstrip(".") or "<root>"
            kind = _CEL_TYPE_NAMES.get(type(value).__name__, "object")
            causes.append(Cause("FieldValueInvalid", f'Invalid value: "{kind}": {message}', field))
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


def _without_nulls(schema: dict[str, Any], value: Any) -> Any:
    """`value` as CEL sees it: in an object with properties, a field that is null is absent
    (so `has()` is false), as in the real server's CEL values."""
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        return {
            key: _without_nulls(properties[key], item) if key in properties else item
            for key, item in value.items()
            if item is not None
        }
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: _without_nulls(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_without_nulls(schema["items"], item) for item in value]
    return value
