"""The emulated API server's state and write semantics, without any HTTP.

Everything the real server does to an object on the way in lives here: uid, a monotonic
resourceVersion per write, generation bumped on spec changes only, creationTimestamp, optimistic
concurrency, the status subresource split, finalizers and deletionTimestamp, ownerReference garbage
collection (background, foreground, orphan), namespace termination, CRD registration, CR admission
(pruning, defaults, schema, CEL) and a bounded event history for watches (410 Gone when too old).

It is synchronous and single-threaded on purpose: the HTTP layer calls it from one event loop, so
every write is atomic and events come out in resourceVersion order.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import copy
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from proctor.cluster import crvalidation, errors
from proctor.cluster.catalog import BUILTINS, ResourceType, from_crd
from proctor.cluster.meta import name_suffix, now_rfc3339
from proctor.cluster.patches import PatchError, UnsupportedPatchTypeError, apply_patch
from proctor.cluster.selectors import Predicate

Object = dict[str, Any]
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NOT_SPEC = {"metadata", "status", "apiVersion", "kind"}
FOREGROUND = "foregroundDeletion"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
_CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
# Built-in kinds whose metadata.generation the real server tracks (custom resources always).
_GENERATION_KINDS = {
    ("batch", "jobs"),
    ("", "pods"),
    ("apps", "deployments"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
}
ORPHAN = "orphan"


@dataclass(frozen=True)
class WatchEvent:
    """One change, as a watch stream delivers it."""

    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    key: tuple[str, str]  # (group, plural)
    namespace: str
    object: Object
    previous: Object | None = None  # the object before a MODIFIED, for selector transitions


def check_shape(obj: Any) -> Object:
    """`obj`, if it and its metadata are JSON objects; else 400, as the real server's decoder."""
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
        raise errors.bad_request("the body must be a JSON object whose metadata is an object")
    return obj


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names become DNS labels (hostnames), so they allow no dots and 63 characters.
_DNS_LABEL_KINDS = {("", "namespaces"), ("", "services")}


def _check_metadata(rt: ResourceType, meta: dict[str, Any]) -> None:
    """Names, label keys and values as the real server checks them (422 with the field)."""
    causes = []
    name = str(meta.get("name", ""))
    label_kind = rt.key in _DNS_LABEL_KINDS
    pattern, limit = (_DNS_LABEL, 63) if label_kind else (_DNS_SUBDOMAIN, 253)
    if len(name) > limit or not pattern.match(name):
        rule = "RFC 1123 label" if label_kind else "RFC 1123 subdomain"
        allowed = "'-'" if label_kind else "'-' or '.'"
        message = (
            f'Invalid value: "{name}": a lowercase {rule} must consist of lower case '
            f"alphanumeric characters, {allowed}, start and end with an alphanumeric character, "
            f"and be at most {limit} characters"
        )
        causes.append({"reason": "FieldValueInvalid", "field": "metadata.name", "message": message})
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        labels = {}
        causes.append(
            {
                "reason": "FieldValueTypeInvalid",
                "field": "metadata.labels",
                "message": "Invalid value: labels must be a map of strings",
            }
        )
    for key, value in labels.items():
        prefix, _, label_name = str(key).rpartition("/")
        key_ok = (
            0 < len(label_name) <= 63
            and _LABEL_NAME.match(label_name)
            and (not prefix or (len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix)))
        )
        if not key_ok:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.labels",
                    "message": f'Invalid value: "{key}": not a valid label key',
                }
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.labels",
                    "message": f'Invalid value: "{value}": a label value is at most 63 '
                    "alphanumeric characters, '-', '_' or '.', starting and ending "
                    "alphanumeric",
                }
            )
    if causes:
        raise errors.invalid(rt, name, causes)


def _has_containers(pod_spec: Any) -> bool:
    containers = pod_spec.get("containers") if isinstance(pod_spec, dict) else None
    return (
        isinstance(containers, list)
        and bool(containers)
        and all(isinstance(c, dict) and c.get("name") for c in containers)
    )


class Store:
    """Objects of every served resource, and what happens when they change."""

    def __init__(self, history: int = 10_000) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Object]] = {}
        self._rv = 0
        self._history: deque[WatchEvent] = deque()
        self._history_limit = history
        self._compacted_rv = 0
        self._listeners: list[Callable[[WatchEvent], None]] = []
        # Indexes that keep garbage collection and cleanup off full scans of the store.
        self._owned: dict[str, set[tuple[tuple[str, str], str, str]]] = {}  # owner uid -> objects
        self._terminating: set[tuple[tuple[str, str], str, str]] = set()  # deletionTimestamp set
        self._by_key: dict[tuple[str, str], ResourceType] = {}
        # (resource key, label key, label value) -> the (namespace, name) that carry the label:
        # a LIST by label selector reads its candidates, not every object of the type.
        self._labelled: dict[tuple[tuple[str, str], str, str], set[tuple[str, str]]] = {}
        for rt in BUILTINS:
            self._register(rt)
        namespaces = self.type("", "v1", "namespaces")
        for name in DEFAULT_NAMESPACES:
            self.create(namespaces, "", {"metadata": {"name": name}})

    # ---- resource types ----------------------------------------------------------------------

    def types(self) -> builtins.list[ResourceType]:
        return list(self._types.values())

    def type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self._types.get((group, version, plural))
        if rt is None:
            where = f"{group}/{version}" if group else version
            raise errors.ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({where} {plural})",
            )
        return rt

    def _register(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        self._by_key[rt.key] = rt
        self._objects.setdefault(rt.key, {})

    # ---- reads -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, rt: ResourceType, namespace: str, name: str) -> Object:
        obj = self._objects[rt.key].get((self._ns(rt, namespace), name))
        if obj is None:
            raise errors.not_found(rt, name)
        return self._view(rt, obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str,
        matches: Predicate = lambda obj: True,
        *,
        shared: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[Object]:
        """Objects of `rt` in `namespace` ("" = all namespaces) that `matches`, by name.

        `shared`: shallow views whose nested data is the store's own, for in-process readers
        that only read (the pod runner scans every Job and pod on each change; deep copies of
        all of them made that O(n) copies per event).
        `labels`: labels every match carries (a selector's equality terms; `matches` still
        decides), so only the objects that carry them are looked at."""
        view = self._shallow_view if shared else self._view
        objects = self._objects[rt.key]
        if labels:
            keys = set.intersection(
                *(self._labelled.get((rt.key, k, v), set()) for k, v in labels.items())
            )
            candidates = [(key, objects[key]) for key in keys if key in objects]
        else:
            candidates = list(objects.items())
        found = [
            (key, obj)
            for key, obj in candidates
            if (not namespace or key[0] == namespace) and matches(obj)
        ]
        return [view(rt, obj) for _, obj in sorted(found, key=lambda item: item[0])]

    def events_since(self, rt: ResourceType, resource_version: int) -> builtins.list[WatchEvent]:
        """Changes of `rt` after `resource_version`; 410 Gone if history no longer reaches it."""
        if resource_version < self._compacted_rv:
            raise errors.gone(
                f"too old resource version: {resource_version} ({self._compacted_rv})"
            )
        return [
            event
            for event in self._history
            if event.resource_version > resource_version and event.key == rt.key
        ]

    def add_listener(self, listener: Callable[[WatchEvent], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[WatchEvent], None]) -> None:
        self._listeners.remove(listener)

    def compact(self) -> None:
        """Forget all history, as etcd compaction does; older watches then get 410 Gone."""
        self._compacted_rv = self._rv
        self._history.clear()

    # ---- writes ------------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Object,
        *,
        dry_run: bool = False,
        strict: bool = False,
    ) -> Object:
        check_shape(body)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        ns = self._ns(rt, namespace or meta.get("namespace", ""))
        if rt.namespaced:
            self._check_namespace(rt, ns, meta.get("name", ""))
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise errors.invalid(
                    rt,
                    "",
                    [
                        {
                            "reason": "FieldValueRequired",
                            "message": "name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                )
            meta["name"] = prefix + name_suffix()
        name = meta["name"]
        _check_metadata(rt, meta)
        if rt.schema is not None and self._crd_terminating(rt):
            raise errors.ApiError(
                405,
                "MethodNotAllowed",
                f"create not allowed while custom resource definition {rt.describe()} "
                "is terminating",
            )
        if (ns, name) in self._objects[rt.key]:
            raise errors.already_exists(rt, name)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if rt.has_status:
            obj.pop("status", None)  # status is written through /status only
        self._initial_status(rt, obj)
        for key in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        if rt.schema is not None or rt.key in _GENERATION_KINDS:
            meta["generation"] = 1
        self._admit(rt, obj, None, strict)
        if dry_run:
            return obj
        self._commit(rt, ns, name, obj, "ADDED")
        if rt.key == ("", "namespaces"):
            # What the service-account controller does for every new namespace.
            service_accounts = self.type("", "v1", "serviceaccounts")
            self.create(service_accounts, name, {"metadata": {"name": "default"}})
        return self._view(rt, obj)

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Object,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> Object:
        check_shape(body)
        old = self._stored(rt, namespace, name)
        sent_rv = body.get("metadata", {}).get("resourceVersion")
        if not sent_rv and rt.schema is not None:  # custom resources need it on replace
            raise errors.invalid(
                rt,
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "field": "metadata.resourceVersion",
                        "message": "Invalid value: 0x0: must be specified for an update",
                    }
                ],
            )
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        new = self._merge_subresource(rt, old, copy.deepcopy(body), subresource)
        return self._write(rt, old, new, dry_run=dry_run, strict=strict)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
    ) -> Object:
        old = self._stored(rt, namespace, name)
        try:
            patched = apply_patch(old, patch, content_type)
        except UnsupportedPatchTypeError as exc:
            raise errors.ApiError(415, "UnsupportedMediaType", str(exc)) from None
        except PatchError as exc:
            raise errors.ApiError(422, "Invalid", str(exc)) from None
        sent_rv = (
            (patch.get("metadata") or {}).get("resourceVersion")
            if isinstance(patch, dict)
            else None
        )
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        check_shape(patched)
        new = self._merge_subresource(rt, old, patched, subresource)
        return self._write(rt, old, new, dry_run=dry_run, strict=strict)

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        dry_run: bool = False,
    ) -> Object:
        obj = self._stored(rt, namespace, name)
        if dry_run:
            return self._view(rt, obj)
        policy = (propagation or self._default_propagation(rt)).lower()
        meta = obj["metadata"]
        if rt.key == ("", "namespaces"):
            return self._terminate_namespace(rt, obj)
        if rt.key == _CRDS:
            return self._terminate_crd(rt, obj)
        finalizers = list(meta.get("finalizers") or [])
        # The garbage collector's own finalizers: foreground waits for dependents to go;
        # orphan (with other finalizers pending) releases them once the object is finally removed.
        system = FOREGROUND if policy == "foreground" else ORPHAN if policy == ORPHAN else None
        if system and finalizers and system not in finalizers:
            finalizers.append(system)
        elif (
            system == FOREGROUND and self._dependents(meta["uid"]) and FOREGROUND not in finalizers
        ):
            finalizers.append(FOREGROUND)
        if finalizers:
            if meta.get("deletionTimestamp") and meta.get("finalizers") == finalizers:
                return self._view(rt, obj)
            updated = copy.deepcopy(obj)
            updated["metadata"].update(
                finalizers=finalizers, deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0
            )
            self._commit(rt, self._ns(rt, namespace), name, updated, "MODIFIED")
            if policy == "foreground":
                for dep_rt, dep in self._dependents(meta["uid"]):
                    self._delete_quietly(dep_rt, dep, "background")
            self._settle()
            return self._view(rt, updated)
        self._remove(rt, obj, policy)
        return self._view(rt, obj)

    # ---- internals ---------------------------------------------------------------------------

    def _write(
        self, rt: ResourceType, old: Object, new: Object, *, dry_run: bool, strict: bool
    ) -> Object:
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
            "generation",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if "generation" in old_meta and self._spec_of(new) != self._spec_of(old):
            meta["generation"] = old_meta["generation"] + 1
        self._admit(rt, new, old, strict)
        if dry_run:
            return new
        meta["resourceVersion"] = old_meta.get("resourceVersion")
        if new == old:
            return self._view(rt, old)  # a no-op write keeps its resourceVersion, as the real one
        ns = self._ns(rt, meta.get("namespace", ""))
        if meta.get("deletionTimestamp") and set(meta.get("finalizers") or []) <= {ORPHAN}:
            orphan = ORPHAN in (meta.get("finalizers") or [])
            meta.pop("finalizers", None)
            self._remove(rt, new, ORPHAN if orphan else "background")
            return self._view(rt, new)
        self._commit(rt, ns, meta["name"], new, "MODIFIED")
        self._settle()
        return self._view(rt, new)

    def _merge_subresource(
        self, rt: ResourceType, old: Object, new: Object, subresource: str | None
    ) -> Object:
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            return merged
        if subresource is not None:
            raise errors.ApiError(
                405, "MethodNotAllowed", f"the subresource {subresource!r} cannot be written"
            )
        if rt.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    def _admit(self, rt: ResourceType, obj: Object, old: Object | None, strict: bool) -> None:
        if rt.key == ("", "secrets") and "stringData" in obj:
            # As the real server: stringData is write-only, folded into data (base64).
            encoded = {
                k: base64.b64encode(str(v).encode()).decode()
                for k, v in obj.pop("stringData").items()
            }
            obj["data"] = {**(obj.get("data") or {}), **encoded}
        if rt.schema is None:
            if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._check_crd(rt, obj)
            self._check_workload(rt, obj)
            return
        name = obj["metadata"].get("name", "")
        dropped = crvalidation.prune_and_default(rt.schema, obj)
        if dropped and strict:
            listed = ", ".join(f'unknown field "{path}"' for path in dropped)
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f"strict decoding error: {listed}"
            )
        causes = crvalidation.validate(rt.schema, obj, old)
        if causes:
            raise errors.invalid(rt, name, [c.to_dict() for c in causes])

    @staticmethod
    def _check_workload(rt: ResourceType, obj: Object) -> None:
        """Jobs and pods need containers: the one part of their schema everything relies on."""
        paths = {("batch", "jobs"): ("spec", "template", "spec"), ("", "pods"): ("spec",)}
        if rt.key not in paths:
            return
        pod_spec: Any = obj
        for part in paths[rt.key]:
            pod_spec = pod_spec.get(part) if isinstance(pod_spec, dict) else None
        if not _has_containers(pod_spec):
            field = ".".join((*paths[rt.key], "containers"))
            raise errors.invalid(
                rt,
                obj["metadata"].get("name", ""),
                [{"reason": "FieldValueRequired", "field": field, "message": "Required value"}],
            )

    def _check_crd(self, rt: ResourceType, crd: Object) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        try:
            served = from_crd(crd)
        except (KeyError, TypeError, AttributeError) as exc:
            raise errors.invalid(
                rt,
                crd["metadata"].get("name", ""),
                [
                    {
                        "reason": "FieldValueRequired",
                        "field": f"spec.{exc}".strip("'"),
                        "message": "Required value: a CRD needs spec.group, spec.names (plural, "
                        "kind) and spec.versions (name, served, storage, schema)",
                    }
                ],
            ) from None
        if not served:
            raise errors.invalid(
                rt,
                crd["metadata"].get("name", ""),
                [
                    {
                        "reason": "FieldValueRequired",
                        "field": "spec.versions",
                        "message": "Required value: at least one served version",
                    }
                ],
            )
        expected = f"{names.get('plural')}.{spec.get('group')}"
        if crd["metadata"].get("name") != expected:
            raise errors.invalid(
                rt,
                crd["metadata"].get("name", ""),
                [
                    {
                        "reason": "FieldValueInvalid",
                        "field": "metadata.name",
                        "message": f'Invalid value: "{crd["metadata"].get("name")}": '
                        'must be spec.names.plural+"."+spec.group',
                    }
                ],
            )

    def _initial_status(self, rt: ResourceType, obj: Object) -> None:
        if rt.key == ("", "pods"):
            obj["status"] = {"phase": "Pending"}
        elif rt.key == ("", "namespaces"):
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
                "metadata"
            ]["name"]
        elif rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            names = obj.get("spec", {}).get("names", {})
            conditions = [
                {
                    "type": t,
                    "status": "True",
                    "reason": r,
                    "message": m,
                    "lastTransitionTime": now_rfc3339(),
                }
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ]
            obj["status"] = {
                "acceptedNames": names,
                "conditions": conditions,
                "storedVersions": [
                    v["name"] for v in obj.get("spec", {}).get("versions", []) if v.get("storage")
                ],
            }

    def _commit(self, rt: ResourceType, namespace: str, name: str, obj: Object, kind: str) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        previous = self._objects[rt.key].get((namespace, name))
        self._objects[rt.key][(namespace, name)] = obj
        self._index(rt, namespace, name, previous, obj)
        self._emit(
            WatchEvent(
                self._rv,
                kind,
                rt.key,
                namespace,
                copy.deepcopy(obj),
                copy.deepcopy(previous) if previous is not None else None,
            )
        )
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            for served in from_crd(obj):
                self._register(served)

    def _remove(self, rt: ResourceType, obj: Object, policy: str) -> None:
        meta = obj["metadata"]
        ns = self._ns(rt, meta.get("namespace", ""))
        stored = self._objects[rt.key].pop((ns, meta["name"]), None)
        if stored is None:
            return
        self._index(rt, ns, meta["name"], stored, None)
        self._rv += 1
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(WatchEvent(self._rv, "DELETED", rt.key, ns, final))
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._unregister_crd(obj)
        for dep_rt, dep in self._dependents(meta["uid"]):
            if policy == ORPHAN:
                self._orphan(dep_rt, dep, meta["uid"])
            else:
                self._delete_quietly(dep_rt, dep, "background")
        self._settle()

    def _unregister_crd(self, crd: Object) -> None:
        for served in from_crd(crd):
            for obj in list(self._objects.get(served.key, {}).values()):
                self._remove(served, obj, "background")
            self._types.pop((served.group, served.version, served.plural), None)
        spec = crd.get("spec", {})
        self._objects.pop((spec.get("group", ""), spec.get("names", {}).get("plural", "")), None)

    def _index(
        self, rt: ResourceType, ns: str, name: str, old: Object | None, new: Object | None
    ) -> None:
        ident = (rt.key, ns, name)
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            for label in (obj["metadata"].get("labels") or {}).items():
                members = self._labelled.setdefault((rt.key, *label), set())
                if add:
                    members.add((ns, name))
                else:
                    members.discard((ns, name))
            for ref in obj["metadata"].get("ownerReferences") or []:
                owned = self._owned.setdefault(ref.get("uid", ""), set())
                if add:
                    owned.add(ident)
                else:
                    owned.discard(ident)
        if new is not None and new["metadata"].get("deletionTimestamp"):
            self._terminating.add(ident)
        else:
            self._terminating.discard(ident)

    def _dependents(self, uid: str) -> builtins.list[tuple[ResourceType, Object]]:
        found = []
        for key, ns, name in sorted(self._owned.get(uid, ())):
            obj = self._objects.get(key, {}).get((ns, name))
            if obj is not None:
                found.append((self._by_key[key], obj))
        return found

    def _orphan(self, rt: ResourceType, obj: Object, owner_uid: str) -> None:
        updated = copy.deepcopy(obj)
        refs = [
            r for r in updated["metadata"].get("ownerReferences", []) if r.get("uid") != owner_uid
        ]
        updated["metadata"]["ownerReferences"] = refs
        ns = self._ns(rt, updated["metadata"].get("namespace", ""))
        self._commit(rt, ns, updated["metadata"]["name"], updated, "MODIFIED")

    def _delete_quietly(self, rt: ResourceType, obj: Object, policy: str) -> None:
        meta = obj["metadata"]
        with contextlib.suppress(errors.ApiError):  # already gone: removed by another path
            self.delete(rt, meta.get("namespace", ""), meta["name"], propagation=policy)

    def _settle(self) -> None:
        """Finish foreground deletions whose dependents are gone, and terminating namespaces
        that are empty. Only objects being deleted are looked at."""
        namespaces = ("", "namespaces")
        for key, ns, name in sorted(self._terminating):
            rt, obj = self._by_key.get(key), self._objects.get(key, {}).get((ns, name))
            if rt is None or obj is None:
                continue  # removed earlier in this pass
            meta = obj["metadata"]
            if key == namespaces:
                if not self._in_namespace(name):
                    self._remove(rt, obj, "background")
            elif key == _CRDS and CRD_CLEANUP in (meta.get("finalizers") or []):
                if not any(self._objects.get(t.key) for t in from_crd(obj)):
                    updated = copy.deepcopy(obj)
                    updated["metadata"]["finalizers"].remove(CRD_CLEANUP)
                    if updated["metadata"]["finalizers"]:
                        self._commit(rt, "", name, updated, "MODIFIED")
                    else:
                        self._remove(rt, updated, "background")
            elif FOREGROUND in (meta.get("finalizers") or []) and not self._dependents(meta["uid"]):
                updated = copy.deepcopy(obj)
                updated["metadata"]["finalizers"] = [
                    f for f in meta["finalizers"] if f != FOREGROUND
                ]
                if updated["metadata"]["finalizers"]:
                    self._commit(rt, ns, name, updated, "MODIFIED")
                else:
                    self._remove(rt, updated, "background")

    def _terminate_crd(self, rt: ResourceType, crd: Object) -> Object:
        """As the real server: the CRD waits (CRD_CLEANUP) until each of its objects is deleted,
        finalizers included, so operators' deletion handlers still run."""
        name = crd["metadata"]["name"]
        if not crd["metadata"].get("deletionTimestamp"):
            crd = copy.deepcopy(crd)
            finalizers = [*(crd["metadata"].get("finalizers") or []), CRD_CLEANUP]
            crd["metadata"].update(finalizers=finalizers, deletionTimestamp=now_rfc3339())
            self._commit(rt, "", name, crd, "MODIFIED")
        for served in from_crd(crd):
            for obj in list(self._objects.get(served.key, {}).values()):
                self._delete_quietly(served, obj, "background")
        self._settle()
        return self._view(rt, crd)

    def _crd_terminating(self, rt: ResourceType) -> bool:
        crd = self._objects[_CRDS].get(("", f"{rt.plural}.{rt.group}"))
        return bool(crd and crd["metadata"].get("deletionTimestamp"))

    def _terminate_namespace(self, rt: ResourceType, obj: Object) -> Object:
        name = obj["metadata"]["name"]
        if not obj["metadata"].get("deletionTimestamp"):
            updated = copy.deepcopy(obj)
            updated["metadata"]["deletionTimestamp"] = now_rfc3339()
            updated["status"] = {"phase": "Terminating"}
            self._commit(rt, "", name, updated, "MODIFIED")
            obj = updated
        for inner_rt, inner in self._in_namespace(name):
            self._delete_quietly(inner_rt, inner, "background")
        self._settle()
        return self._view(rt, obj)

    def _in_namespace(self, namespace: str) -> builtins.list[tuple[ResourceType, Object]]:
        return [
            (rt, obj)
            for rt in self._unique_types()
            if rt.namespaced
            for (ns, _), obj in self._objects[rt.key].items()
            if ns == namespace
        ]

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self._objects[("", "namespaces")].get(("", namespace))
        if ns is None:
            raise errors.ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                rt,
                name,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def _unique_types(self) -> Iterator[ResourceType]:
        seen = set()
        for rt in list(self._types.values()):
            if rt.key not in seen:
                seen.add(rt.key)
                yield rt

    def _stored(self, rt: ResourceType, namespace: str, name: str) -> Object:
        obj = self._objects[rt.key].get((self._ns(rt, namespace), name))
        if obj is None:
            raise errors.not_found(rt, name)
        return copy.deepcopy(obj)

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self._compacted_rv = self._history.popleft().resource_version
        for listener in list(self._listeners):
            listener(event)

    @staticmethod
    def _ns(rt: ResourceType, namespace: str) -> str:
        return namespace if rt.namespaced else ""

    @staticmethod
    def _spec_of(obj: Object) -> Object:
        return {k: v for k, v in obj.items() if k not in _NOT_SPEC}

    @staticmethod
    def _default_propagation(rt: ResourceType) -> str:
        # batch/v1 Jobs orphan their pods by default through the API; kubectl asks for background.
        return ORPHAN if rt.key == ("batch", "jobs") else "background"

    @staticmethod
    def _view(rt: ResourceType, obj: Object) -> Object:
        view = copy.deepcopy(obj)
        view["apiVersion"], view["kind"] = rt.api_version, rt.kind
        return view

    @staticmethod
    def _shallow_view(rt: ResourceType, obj: Object) -> Object:
        return {**obj, "apiVersion": rt.api_version, "kind": rt.kind}
