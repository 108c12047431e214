"""Server-side printing: the `Table` kubectl asks for (`Accept: ...;as=Table`) to show columns.

CRDs get a Name column and their additionalPrinterColumns; built-ins get the columns kubectl users
know for pods and jobs, and Name/Age for the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from proctor.cluster.catalog import ResourceType
from proctor.cluster.meta import parse_rfc3339

_AGE = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "Age",
}
_BUILTIN_COLUMNS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("", "pods"): [
        {"name": "Ready", "type": "string", "description": "Ready containers / all"},
        {"name": "Status", "type": "string", "jsonPath": ".status.phase", "description": "Phase"},
        {"name": "Restarts", "type": "integer", "description": "Container restarts"},
        _AGE,
    ],
    ("batch", "jobs"): [
        {
            "name": "Status",
            "type": "string",
            "description": "Complete, Failed, Running or Suspended",
        },
        {"name": "Completions", "type": "string", "description": "Succeeded / wanted"},
        _AGE,
    ],
}


def table(
    rt: ResourceType, objects: list[dict[str, Any]], resource_version: str, include: str
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `objects`."""
    columns = list(rt.columns) if rt.columns else _BUILTIN_COLUMNS.get(rt.key, [_AGE])
    definitions = [
        {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}
    ] + [
        {
            "name": c["name"],
            "type": c["type"],
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = []
    for obj in objects:
        cells = [obj["metadata"]["name"]] + [_cell(rt, obj, c) for c in columns]
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }


def _cell(rt: ResourceType, obj: dict[str, Any], column: dict[str, Any]) -> Any:
    if rt.key == ("", "pods") and column["name"] in ("Ready", "Restarts"):
        statuses = obj.get("status", {}).get("containerStatuses") or []
        if column["name"] == "Restarts":
            return sum(s.get("restartCount", 0) for s in statuses)
        wanted = len(obj.get("spec", {}).get("containers") or [])
        return f"{sum(1 for s in statuses if s.get('ready'))}/{wanted}"
    if rt.key == ("batch", "jobs") and column["name"] in ("Status", "Completions"):
        status = obj.get("status", {})
        if column["name"] == "Completions":
            return f"{status.get('succeeded', 0)}/{obj.get('spec', {}).get('completions', 1)}"
        done = [c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"]
        if obj.get("spec", {}).get("suspend"):
            return "Suspended"
        return done[-1] if done else "Running"
    value = json_path(obj, column["jsonPath"])
    if column["type"] == "date" and isinstance(value, str):
        try:
            return human_age(value)
        except ValueError:
            return value  # not an RFC 3339 timestamp: shown as it is
    return value


def json_path(obj: Any, path: str) -> Any:
    """The value at a simple JSONPath like `.status.training.step` (None when absent)."""
    value = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        value = value.get(part) if isinstance(value, dict) else None
    return value


def human_age(timestamp: str) -> str:
    """ "5m", "3h12m", "2d": the way kubectl shows ages."""
    then = parse_rfc3339(timestamp)
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours}h{minutes}m" if hours < 10 and minutes else f"{hours}h"
    return f"{seconds // 86400}d"
