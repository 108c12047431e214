"""An edit of the spec that lands between the operator's read and its first status write (while
the Experiment is still Pending, so the API server allows it) must not let the operator validate
the old spec and then freeze the new one: the record would describe what did not run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import config
from prometheus_client import CollectorRegistry

from proctor.api.v1alpha1 import API_VERSION
from proctor.controller.metrics import OperatorMetrics
from proctor.controller.reconciler import Reconciler
from proctor.controller.settings import ControllerSettings
from proctor.kube import KubeClient
from tests.unit.controller.objects import experiment

pytestmark = pytest.mark.kubectl


class EditedAfterRead(KubeClient):
    """The API server as the operator sees it, with a person editing the Experiment's spec
    right after the operator's first read of it."""

    def __init__(self, cluster: Any, edit: dict[str, Any]) -> None:
        super().__init__(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
        self.cluster, self.edit = cluster, edit

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = super().get(api_version, kind, namespace, name)
        if kind == "Experiment" and self.edit:
            patch, self.edit = self.edit, {}
            self.cluster.kubectl(
                "patch", f"experiment/{name}", "--type=merge", "-p", json.dumps(patch)
            )
        return found


def test_a_spec_edited_after_the_read_is_validated_as_edited(with_crds):
    obj = experiment("raced")
    obj["metadata"] = {"name": "raced", "namespace": "default"}
    with_crds.kubectl("apply", "-f", "-", input=json.dumps(obj))
    kube = EditedAfterRead(with_crds, {"spec": {"code": {"config": {"hidden": 999}}}})
    reconciler = Reconciler(kube, ControllerSettings(), OperatorMetrics(CollectorRegistry()))

    reconciler.experiment("default", "raced")  # read, edit lands, the guarded write is refused
    assert kube.get(API_VERSION, "ValidationPyramid", "default", "raced") is None
    reconciler.resync()  # the retry reads the edited spec

    pyramid = kube.get(API_VERSION, "ValidationPyramid", "default", "raced")
    assert pyramid is not None
    assert pyramid["spec"]["code"]["config"]["hidden"] == 999
    stored = kube.get(API_VERSION, "Experiment", "default", "raced")
    assert stored["status"]["phase"] == "Validating"
    assert stored["spec"]["code"]["config"]["hidden"] == 999
