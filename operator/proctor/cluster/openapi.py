"""The OpenAPI v3 documents kubectl reads: `kubectl explain` walks them to print field
descriptions, and `kubectl apply` checks them for server-side field validation support.

Custom resources get their CRD's schema; built-ins get an open object schema (this emulator does
not carry the Kubernetes API's own schemas).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from proctor.cluster.catalog import ResourceType

_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force")


def group_version_paths(types: list[ResourceType]) -> dict[str, Any]:
    """`/openapi/v3`: one entry per group/version, pointing at its document."""
    paths = {}
    for gv in sorted({_gv_path(rt) for rt in types}):
        document = group_version_document([rt for rt in types if _gv_path(rt) == gv])
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


def group_version_document(types: list[ResourceType]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group/version."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for rt in types:
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        name = _schema_name(rt, rt.kind)
        schema = (
            dict(rt.schema)
            if rt.schema
            else {
                "type": "object",
                "description": f"{rt.kind} (schema not carried by the emulated cluster).",
                "x-kubernetes-preserve-unknown-fields": True,
            }
        )
        schema["x-kubernetes-group-version-kind"] = [gvk]
        schemas[name] = schema
        schemas[_schema_name(rt, rt.kind + "List")] = {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}
            },
            "x-kubernetes-group-version-kind": [{**gvk, "kind": rt.kind + "List"}],
        }
        prefix = f"/{_gv_path(rt)}" + ("/namespaces/{namespace}" if rt.namespaced else "")
        operation = {
            "parameters": [
                {"name": p, "in": "query", "schema": {"type": "string"}} for p in _QUERY
            ],
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-group-version-kind": gvk,
        }
        paths[f"{prefix}/{rt.plural}"] = {"post": operation}
        paths[f"{prefix}/{rt.plural}/{{name}}"] = {"put": operation, "patch": operation}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Proctor emulated cluster", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _gv_path(rt: ResourceType) -> str:
    return f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"


def _schema_name(rt: ResourceType, kind: str) -> str:
    reversed_group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{reversed_group}.{rt.version}.{kind}"
