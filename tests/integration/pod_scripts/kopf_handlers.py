"""A minimal kopf operator for the compatibility test: marks new Experiments and posts an Event."""

import kopf


@kopf.on.create("proctor.dev", "v1alpha1", "experiments")
def experiment_created(body, name, patch, **_):
    patch.status["phase"] = "Pending"
    kopf.info(body, reason="Seen", message=f"kopf saw {name}")
