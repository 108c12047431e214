"""Names and labels of everything the operator creates.

Names are deterministic (a function of the owner and, for layers, the attempt), so an operator
restarted at any moment finds what it created before and never creates a duplicate: a second create
of the same name is answered 409 by the API server.
"""

from __future__ import annotations

from proctor.api.v1alpha1 import LayerName

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "proctor"
COMPONENT = "app.kubernetes.io/component"
EXPERIMENT = "proctor.dev/experiment"
PYRAMID = "proctor.dev/pyramid"
LAYER = "proctor.dev/layer"
ATTEMPT = "proctor.dev/attempt"
ANOMALY = "proctor.dev/anomaly"
"""Label of the Events the watchdog posts about an anomaly (its value is the anomaly kind)."""

VALIDATION = "validation"
TRAINING = "training"

WATCHDOG_ACCOUNT = "proctor-watchdog"
WATCHDOG_TOKEN_SECRET = "proctor-watchdog-token"


def managed_labels(component: str, **labels: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, COMPONENT: component, **labels}


def layer_job_name(pyramid: str, layer: LayerName, attempt: int) -> str:
    """`digits-l0-1`: at most 50 + 6 characters, so pod names stay under 63."""
    return f"{pyramid}-{layer.value.lower()}-{attempt}"


def pyramid_name(experiment: str) -> str:
    """An Experiment's pyramid has the Experiment's name (another kind, so no clash)."""
    return experiment


def training_job_name(experiment: str) -> str:
    return f"{experiment}-train"


def training_service_name(experiment: str) -> str:
    """The headless Service of a multi-node run. Service names must start with a letter
    (RFC 1035), while Experiment names may start with a digit."""
    name = training_job_name(experiment)
    return name if name[0].isalpha() else f"x{name}"
