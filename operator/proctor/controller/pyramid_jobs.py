"""The Job that runs one layer of a ValidationPyramid: `proctor pyramid run --layer Lk` in the
code's image, with the layer's compact result as the pod's termination message."""

from __future__ import annotations

import json
from typing import Any

from proctor.api.v1alpha1 import LayerName, ValidationPyramid, duration_seconds
from proctor.controller import names, podspec

LAYER_CONTAINER = "layer"


def layer_job(
    pyramid: ValidationPyramid, owner: dict[str, Any], layer: LayerName, attempt: int
) -> dict[str, Any]:
    """The Job of `layer`'s `attempt` (1 for the first try, more after infrastructure trouble);
    `owner` is the pyramid as the API server returned it (name, namespace, uid).

    backoffLimit is 0: the operator retries itself, and only for infrastructure trouble, since a
    failed check fails again. The layer's timeout is the Job's activeDeadlineSeconds, so the
    cluster enforces it even while the operator is down.
    """
    spec = pyramid.spec
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    settings = getattr(spec.layers, layer.value.lower())
    labels = names.managed_labels(
        names.VALIDATION,
        **{names.PYRAMID: name, names.LAYER: layer.value, names.ATTEMPT: str(attempt)},
    )
    volumes, mounts = podspec.shared_memory(spec.resources)
    env = [
        {"name": "PROCTOR_ENTRYPOINT", "value": spec.code.entrypoint},
        {"name": "PROCTOR_CONFIG", "value": json.dumps(spec.code.config, sort_keys=True)},
        {"name": "PROCTOR_LAYERS", "value": json.dumps(spec.layers.to_wire(), sort_keys=True)},
        *podspec.code_env(spec.code),
        *podspec.secret_env_names(spec.code),
    ]
    container: dict[str, Any] = {
        "name": LAYER_CONTAINER,
        **podspec.image_fields(spec.code),
        "command": [
            "proctor",
            "pyramid",
            "run",
            "--layer",
            layer.value,
            "--termination-log",
            podspec.TERMINATION_LOG,
        ],
        "env": env,
        "resources": podspec.compute(spec.resources),
        "terminationMessagePath": podspec.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": podspec.container_security(),
    }
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the code under test needs no Kubernetes API
        "enableServiceLinks": False,
        "securityContext": podspec.pod_security(),
        "containers": [container],
        **podspec.placement(spec.scheduling),
        **podspec.pull_secrets(spec.code),
    }
    if volumes:
        pod_spec["volumes"] = volumes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": names.layer_job_name(name, layer, attempt),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [podspec.owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": duration_seconds(settings.timeout),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
