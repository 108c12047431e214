"""Pieces every pod the operator builds shares: compute, node selection, environment, the
security baseline. Pure functions from API models to Kubernetes dicts."""

from __future__ import annotations

import copy
from typing import Any

from proctor.api.redaction import SECRET_ENV_NAMES
from proctor.api.v1alpha1 import CodeSpec, Resources, Scheduling

TERMINATION_LOG = "/dev/termination-log"
SHM_VOLUME = "dshm"


def owner_reference(obj: dict[str, Any]) -> dict[str, Any]:
    """Makes `obj` the controller of what carries this: deleting it deletes them (GC).

    No blockOwnerDeletion: nothing here relies on foreground deletion, and where the
    OwnerReferencesPermissionEnforcement admission plugin runs (OpenShift, hardened clusters)
    setting it would need `update` on the owner's finalizers, which the operator does not hold."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
    }


def compute(resources: Resources) -> dict[str, Any]:
    """Requests equal limits (Guaranteed QoS when CPU and memory are both set), so timing
    checks and training are not disturbed by neighbours; GPUs are limits, as extended resources
    must be."""
    amounts: dict[str, Any] = {}
    if resources.cpu is not None:
        amounts["cpu"] = str(resources.cpu)
    if resources.memory is not None:
        amounts["memory"] = str(resources.memory)
    if resources.gpus:
        amounts[resources.gpu_resource_name] = str(resources.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def shared_memory(resources: Resources) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A memory-backed /dev/shm of the requested size: (volumes, mounts)."""
    if resources.shared_memory is None:
        return [], []
    volume = {
        "name": SHM_VOLUME,
        "emptyDir": {"medium": "Memory", "sizeLimit": str(resources.shared_memory)},
    }
    return [volume], [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]


def placement(scheduling: Scheduling) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if scheduling.node_selector:
        spec["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        spec["tolerations"] = [t.to_wire() for t in scheduling.tolerations]
    if scheduling.priority_class_name:
        spec["priorityClassName"] = scheduling.priority_class_name
    return spec


def code_env(code: CodeSpec) -> list[dict[str, Any]]:
    """The user's variables; Secret and ConfigMap references stay references (the value is never
    read by the operator)."""
    return [var.to_wire() for var in code.env]


def secret_env_names(code: CodeSpec) -> list[dict[str, Any]]:
    """PROCTOR_SECRET_ENV: the names (never the values) of the user's Secret-held variables, so
    the trainer and the pyramid runner, which see the values, cut them out of the termination
    messages the operator copies into status and Events. Set after the user's variables: it is
    Proctor's to set."""
    held = [
        var.name
        for var in code.env
        if var.value_from is not None and var.value_from.secret_key_ref is not None
    ]
    return [{"name": SECRET_ENV_NAMES, "value": ",".join(held)}] if held else []


def image_fields(code: CodeSpec) -> dict[str, Any]:
    fields: dict[str, Any] = {"image": code.image}
    if code.image_pull_policy is not None:
        fields["imagePullPolicy"] = code.image_pull_policy.value
    return fields


def pull_secrets(code: CodeSpec) -> dict[str, Any]:
    if not code.image_pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": name} for name in code.image_pull_secrets]}


# The security baseline of every pod Proctor builds: the Pod Security Standard "restricted"
# profile, so the pods are admitted in a namespace that enforces it, and nothing a spec says
# can loosen it (no spec field reaches a securityContext, a volume, a host namespace or a port's
# hostPort; tests/security proves it over generated specs). GPUs need no exception: the device
# plugin hands a container its devices without privileges or added capabilities.
# runAsNonRoot makes the kubelet refuse an image whose USER is root or not numeric (the pod
# waits with CreateContainerConfigError, which the operator reports); Proctor's images run as
# 10001, and images built FROM the runner inherit that.
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def container_security(**extra: Any) -> dict[str, Any]:
    """A container's securityContext: the baseline above plus `extra` (readOnlyRootFilesystem),
    a fresh copy each time, so no built Job shares a dict with another or with this module."""
    return {**copy.deepcopy(CONTAINER_SECURITY), **extra}


def pod_security() -> dict[str, Any]:
    """The pod's securityContext, a fresh copy."""
    return copy.deepcopy(POD_SECURITY)
