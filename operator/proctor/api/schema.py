"""Turn a pydantic model's JSON Schema into a Kubernetes structural OpenAPI v3 schema.

Kubernetes accepts only "structural" schemas in CRDs: every node typed, no `$ref`, no free unions,
`nullable` instead of `anyOf [X, null]`, and free-form content only where
`x-kubernetes-preserve-unknown-fields` says so. This module does the translation and refuses what
cannot be translated, naming the field, so a model change that Kubernetes would reject fails here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DROPPED = frozenset({"title", "examples", "$defs"})
_SCALARS = (str, int, float, bool)
# Formats the API server validates with the same meaning pydantic gives them.
_FORMATS = frozenset({"date-time", "date", "byte", "int32", "int64", "float", "double", "uuid"})
_FIX_HINTS = {
    "prefixItems": "use a list of one item type (tuples are not expressible)",
    "uniqueItems": "use a list with x-kubernetes-list-type: set",
    "patternProperties": "use dict[str, X] and validate keys in the model",
    "propertyNames": "use dict[str, X] and validate keys in the model",
    "oneOf": "use one type, or separate optional fields with a CEL rule",
    "allOf": "use one model",
    "not": "express the rule in CEL with cel_rule(...)",
    "discriminator": "use separate optional fields with a CEL rule",
    "deprecated": "say so in the description instead",
}
# Key order in the output: what a reader looks for first comes first.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "nullable",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "anyOf",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
)
# Keywords copied as they are: what apiextensions/v1 JSONSchemaProps means the same way as JSON
# Schema. The structural ones are rebuilt by _convert; anything else pydantic emits is refused,
# naming the field, rather than passed through.
_COPIED = frozenset(_KEY_ORDER) - {
    "exclusiveMinimum",
    "exclusiveMaximum",
    "properties",
    "additionalProperties",
    "items",
}


class SchemaError(ValueError):
    """The model uses a construct a structural CRD schema cannot express."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of `model` as the API server would store it (camelCase names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}), model.__name__, ())


def _convert(
    node: dict[str, Any], defs: dict[str, Any], path: str, stack: tuple[str, ...]
) -> dict[str, Any]:
    node, stack = _inline_ref(node, defs, path, stack)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        node, stack = _collapse_nullable(node, defs, path, stack)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if key == "additionalProperties":
            if value is False:
                continue  # unknown fields are pruned by the API server; strict clients refuse them
            if value is True:
                if not node.get("x-kubernetes-preserve-unknown-fields"):
                    raise SchemaError(
                        f"{path}: free-form map; mark it FREE_FORM if arbitrary content is meant"
                    )
                continue
            out[key] = _convert(value, defs, f"{path}.*", stack)
        elif key == "properties":
            out[key] = {
                name: _convert(sub, defs, f"{path}.{name}", stack) for name, sub in value.items()
            }
        elif key == "items":
            out[key] = _convert(value, defs, f"{path}[]", stack)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            continue  # merged with minimum/maximum below
        elif key == "const":
            out["enum"] = [value]
        elif key == "default" and not isinstance(value, _SCALARS):
            continue  # object and list defaults stay in the model; the API server fills leaves
        elif key == "format" and value not in _FORMATS:
            raise SchemaError(
                f"{path}: format {value!r} means something else (or nothing) to the API server; "
                "use a plain string with a pattern"
            )
        elif key in _COPIED:
            out[key] = value
        else:
            hint = _FIX_HINTS.get(key, "remove it or express it in the description or a CEL rule")
            raise SchemaError(f"{path}: `{key}` has no equivalent in a CRD schema: {hint}")
    _merge_bound(out, node, "minimum", "exclusiveMinimum", tighter=max)
    _merge_bound(out, node, "maximum", "exclusiveMaximum", tighter=min)
    _check_typed(out, path)
    if "description" in out:
        out["description"] = " ".join(out["description"].split())
    if "default" in out:
        out["description"] = _with_default(out.get("description", ""), out["default"])
    return {key: out[key] for key in sorted(out, key=_key_rank)}


def _inline_ref(
    node: dict[str, Any], defs: dict[str, Any], path: str, stack: tuple[str, ...]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Replace `$ref` (or pydantic's `allOf: [$ref]`) with the definition, keeping field keys."""
    ref = node.get("$ref")
    if ref is None and len(node.get("allOf", ())) == 1 and "$ref" in node["allOf"][0]:
        ref = node["allOf"][0]["$ref"]
    if ref is None:
        return node, stack
    name = ref.rsplit("/", 1)[-1]
    if name in stack:
        raise SchemaError(f"{path}: {name} contains itself; CRD schemas cannot recurse")
    target, stack = _inline_ref(dict(defs[name]), defs, path, (*stack, name))
    siblings = {k: v for k, v in node.items() if k not in ("$ref", "allOf")}
    merged = {**target, **siblings}
    # The field says what it is for here; the model's docstring says what the object is.
    # `kubectl explain` shows one description, so it gets both.
    field_text, model_text = siblings.get("description"), target.get("description")
    if field_text and model_text and model_text not in field_text:
        merged["description"] = f"{field_text.rstrip()} {model_text}"
    merged_extensions = target.get("x-kubernetes-validations", []) + siblings.get(
        "x-kubernetes-validations", []
    )
    if merged_extensions:
        merged["x-kubernetes-validations"] = merged_extensions
    return merged, stack


def _collapse_nullable(
    node: dict[str, Any], defs: dict[str, Any], path: str, stack: tuple[str, ...]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """`anyOf: [X, {type: null}]` becomes X with `nullable: true`; other unions are refused."""
    branches = [b for b in node["anyOf"] if b.get("type") != "null"]
    if len(branches) != 1:
        raise SchemaError(f"{path}: a union of several types is not structural; use one type")
    siblings = {k: v for k, v in node.items() if k != "anyOf"}
    target, stack = _inline_ref(branches[0], defs, path, stack)
    collapsed = {**target, **siblings}
    if len(branches) < len(node["anyOf"]):
        collapsed["nullable"] = True
    return collapsed, stack


def _merge_bound(
    out: dict[str, Any], node: dict[str, Any], inclusive: str, exclusive: str, tighter: Any
) -> None:
    """JSON Schema's numeric `exclusiveMinimum: 0` becomes OpenAPI v3.0's `minimum: 0` plus
    `exclusiveMinimum: true`; with both `ge` and `gt`, the tighter bound wins."""
    open_bound = node.get(exclusive)
    if open_bound is None or isinstance(open_bound, bool):
        return
    closed_bound = node.get(inclusive)
    if (
        closed_bound is not None
        and closed_bound != open_bound
        and tighter(closed_bound, open_bound) == closed_bound
    ):
        return  # the inclusive bound, already copied, is the tighter one
    out[inclusive] = open_bound
    out[exclusive] = True


def _check_typed(node: dict[str, Any], path: str) -> None:
    if "type" in node or node.get("x-kubernetes-int-or-string"):
        return
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node["type"] = "object"
        return
    raise SchemaError(f"{path}: no type; give the field a concrete type (Any is not structural)")


def _with_default(description: str, default: Any) -> str:
    if default == "":
        return description
    shown = str(default).lower() if isinstance(default, bool) else str(default)
    sentence = f"Defaults to {shown}."
    if sentence in description:
        return description
    return f"{description} {sentence}".strip()


def _key_rank(key: str) -> tuple[int, str]:
    return (_KEY_ORDER.index(key), key) if key in _KEY_ORDER else (len(_KEY_ORDER), key)
