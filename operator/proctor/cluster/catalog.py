"""The resource types the emulated API server knows: built-ins Proctor and kopf use, plus CRDs.

A ResourceType is what discovery advertises and what the store keys objects by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the API and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Printer columns (CRDs) as additionalPrinterColumns entries; built-ins use Name and Age.
    columns: tuple[dict[str, Any], ...] = ()
    # The CRD's structural schema (openAPIV3Schema), None for built-ins.
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Objects are stored per (group, plural): one storage version per resource."""
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def describe(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _core(plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, singular=kind.lower(), **kw)


BUILTINS: tuple[ResourceType, ...] = (
    _core(
        "namespaces", "Namespace", namespaced=False, short_names=("ns",), subresources=("status",)
    ),
    _core("pods", "Pod", short_names=("po",), categories=("all",), subresources=("status", "log")),
    _core("events", "Event", short_names=("ev",)),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("secrets", "Secret"),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core(
        "services", "Service", short_names=("svc",), categories=("all",), subresources=("status",)
    ),
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "Job",
        True,
        singular="job",
        categories=("all",),
        subresources=("status",),
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, singular="lease"),
    ResourceType(
        "events.k8s.io", "v1", "events", "Event", True, singular="event", short_names=("ev",)
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        singular="customresourcedefinition",
        short_names=("crd", "crds"),
        subresources=("status",),
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, singular="role"),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        True,
        singular="rolebinding",
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        False,
        singular="clusterrole",
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        singular="clusterrolebinding",
    ),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        singular="deployment",
        short_names=("deploy",),
        categories=("all",),
        subresources=("status",),
    ),
)


def from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves (one per served version)."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                subresources=tuple(version.get("subresources", {})),
                columns=tuple(version.get("additionalPrinterColumns", ())),
                schema=version.get("schema", {}).get("openAPIV3Schema"),
            )
        )
    return types
