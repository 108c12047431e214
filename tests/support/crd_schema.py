"""The generated CRDs, read back for tests, and the API server's own admission applied to them.

Admission is `proctor.cluster.crvalidation`, the code the emulated API server runs, so the tests
judge manifests exactly as a `kubectl apply` against the emulated cluster would.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from proctor.cluster import crvalidation

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


def admission_errors(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """What a strict `kubectl apply` would be told: unknown fields, then schema and CEL causes."""
    admitted = copy.deepcopy(obj)
    unknown = crvalidation.prune_and_default(schema, admitted)
    causes = crvalidation.validate(schema, admitted, None)
    return [f'{path}: unknown field "{path}"' for path in unknown] + [str(c) for c in causes]


def cel_errors(schema: dict[str, Any], obj: Any, old: Any = None) -> list[str]:
    """Only the CEL rules' messages, for partial objects that would fail the schema first."""
    return [str(c) for c in crvalidation.cel_causes(schema, obj, old)]
