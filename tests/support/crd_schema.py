"""Check objects against a generated CRD the way the API server would, without an API server.

The OpenAPI part runs through jsonschema (Draft 4 semantics, which OpenAPI v3.0 schemas follow) with
unknown fields refused, as `kubectl apply`'s strict field validation does. CEL rules
(`x-kubernetes-validations`) are evaluated with cel-python at the node they are declared on.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]


def load_crd(plural: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "crds" / f"{plural}.proctor.dev.yaml").read_text())


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (`.spec.code.env[]`)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def schema_errors(schema: dict[str, Any], obj: Any) -> list[str]:
    """OpenAPI violations of `obj`, as `path: message`, with unknown fields refused."""
    validator = jsonschema.Draft4Validator(_strict(copy.deepcopy(schema)))
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


def cel_errors(schema: dict[str, Any], obj: Any, old: Any = None, path: str = "") -> list[str]:
    """Messages of the CEL rules `obj` breaks; transition rules only when `old` is given."""
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is None:
            continue
        activation = {"self": celpy.json_to_cel(obj)}
        if uses_old:
            activation["oldSelf"] = celpy.json_to_cel(old)
        env = celpy.Environment()
        if not env.program(env.compile(rule["rule"])).evaluate(activation):
            errors.append(f"{path or '.'}: {rule['message']}")
    if isinstance(obj, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in obj:
                sub_old = old.get(name) if isinstance(old, dict) else None
                errors += cel_errors(sub, obj[name], sub_old, f"{path}.{name}")
    if isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            errors += cel_errors(schema["items"], item, None, f"{path}[{i}]")
    return errors


def _strict(node: dict[str, Any]) -> dict[str, Any]:
    if node.get("nullable") and "anyOf" in node:
        node["anyOf"] = [*node["anyOf"], {"type": "null"}]
    elif node.get("nullable"):
        node["type"] = [node["type"], "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    for sub in node.get("properties", {}).values():
        _strict(sub)
    if isinstance(node.get("additionalProperties"), dict):
        _strict(node["additionalProperties"])
    if "items" in node:
        _strict(node["items"])
    return node
