"""The three patch formats kubectl and kopf send: JSON merge, JSON patch, strategic merge.

Strategic merge patch is approximated: JSON merge semantics, except that lists of objects keyed by
`name` (containers, env, volumes, ports...) merge element by element, `$patch: delete` removes an
element, and the other `$` directives kubectl adds are dropped. That covers what kubectl apply
sends for the built-in objects Proctor uses. Server-side apply (what helm 4 sends) creates the
object or merges the applied fields into it, without tracking field ownership.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class PatchError(ValueError):
    """A patch that cannot be applied to the object; becomes a 422."""


class UnsupportedPatchTypeError(PatchError):
    """A Content-Type that is not a patch format; becomes a 415."""


def apply_patch(target: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """`target` with `patch` applied; `target` itself is not modified."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in (MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH) and not isinstance(patch, dict):
        raise PatchError("a merge patch is a JSON object")
    if kind in (MERGE_PATCH, APPLY_PATCH):
        # Server-side apply is approximated as a merge of the applied fields: field ownership
        # (managedFields) is not tracked, so fields dropped from the applied config are kept.
        merged: dict[str, Any] = _merge(copy.deepcopy(target), patch, strategic=False)
        return merged
    if kind == STRATEGIC_MERGE_PATCH:
        strategic: dict[str, Any] = _merge(copy.deepcopy(target), patch, strategic=True)
        return strategic
    if kind == JSON_PATCH:
        if not isinstance(patch, list):
            raise PatchError("a JSON patch is a list of operations")
        try:
            result: dict[str, Any] = jsonpatch.apply_patch(target, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise PatchError(f"the JSON patch cannot be applied: {exc}") from None
        return result
    raise UnsupportedPatchTypeError(
        f"unsupported patch type {content_type!r}: use {MERGE_PATCH}, {JSON_PATCH}, "
        f"{STRATEGIC_MERGE_PATCH} or {APPLY_PATCH}"
    )


def _merge(target: Any, patch: Any, strategic: bool) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            target.pop(key, None)
        elif strategic and _keyed_list(value) and _keyed_list(target.get(key)):
            target[key] = _merge_by_name(target[key], value)
        else:
            target[key] = _merge(target.get(key), value, strategic)
    return target


def _keyed_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value)


def _merge_by_name(current: list[dict[str, Any]], patch: list[dict[str, Any]]) -> list[Any]:
    merged = {item["name"]: item for item in current}
    order = [item["name"] for item in current]
    for item in patch:
        name = item["name"]
        if item.get("$patch") == "delete":
            merged.pop(name, None)
            continue
        merged[name] = _merge(merged.get(name, {}), item, strategic=True)
        if name not in order:
            order.append(name)
    return [merged[name] for name in order if name in merged]
