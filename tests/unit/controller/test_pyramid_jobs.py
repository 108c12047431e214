"""The Job of one pyramid layer: what runs, under which name and limits."""

from __future__ import annotations

import json

from proctor.api.v1alpha1 import LayerName, PyramidLayers, ValidationPyramid
from proctor.controller.pyramid_jobs import layer_job
from tests.unit.controller.objects import pyramid


def _job(obj: dict, layer: LayerName = LayerName.L0, attempt: int = 1) -> dict:
    return layer_job(ValidationPyramid.model_validate(obj), obj, layer, attempt)


def _container(job: dict) -> dict:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, dict]:
    return {var["name"]: var for var in container["env"]}


def test_the_name_is_a_function_of_pyramid_layer_and_attempt():
    obj = pyramid("digits")
    assert _job(obj)["metadata"]["name"] == "digits-l0-1"
    assert _job(obj, LayerName.L2, 3)["metadata"]["name"] == "digits-l2-3"
    assert _job(obj) == _job(obj), "the same inputs build the same Job"


def test_labels_name_the_manager_the_pyramid_the_layer_and_the_attempt():
    job = _job(pyramid("digits"), LayerName.L1, 2)
    assert job["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "proctor",
        "app.kubernetes.io/component": "validation",
        "proctor.dev/pyramid": "digits",
        "proctor.dev/layer": "L1",
        "proctor.dev/attempt": "2",
    }
    assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]
    assert job["metadata"]["namespace"] == "ml"


def test_the_pyramid_controls_the_job():
    [owner] = _job(pyramid("digits"))["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": "ValidationPyramid",
        "name": "digits",
        "uid": "uid-vp",
        "controller": True,
    }  # no blockOwnerDeletion: it would need `update` on pyramid finalizers where enforced


def test_the_cluster_never_retries_and_enforces_the_layer_timeout():
    obj = pyramid(layers={"l2": {"timeout": "2m30s"}})
    default = _job(obj, LayerName.L0)["spec"]
    assert default["backoffLimit"] == 0
    assert default["activeDeadlineSeconds"] == 600, "the default timeout is 10m"
    assert _job(obj, LayerName.L2)["spec"]["activeDeadlineSeconds"] == 150
    assert default["template"]["spec"]["restartPolicy"] == "Never"


def test_the_container_runs_its_layer_and_reports_through_the_termination_log():
    container = _container(_job(pyramid(), LayerName.L3))
    assert container["image"] == "registry.example/digits:1.0"
    command = " ".join(container["command"])
    assert "proctor pyramid run --layer L3 --termination-log /dev/termination-log" in command
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert "L0" not in command


def test_the_environment_carries_entrypoint_config_and_layer_settings():
    obj = pyramid(layers={"l1": {"steps": 7}, "l3": {"enabled": False}})
    obj["spec"]["code"]["config"] = {"lr": 0.01, "hidden": 64}
    env = _env(_container(_job(obj)))
    assert env["PROCTOR_ENTRYPOINT"]["value"] == "digits_mlp:setup"
    assert json.loads(env["PROCTOR_CONFIG"]["value"]) == {"lr": 0.01, "hidden": 64}
    layers = PyramidLayers.model_validate(json.loads(env["PROCTOR_LAYERS"]["value"]))
    assert layers.l1.steps == 7
    assert layers.l3.enabled is False
    assert layers.l0.enabled is True


def test_requests_equal_limits_and_gpus_are_an_extended_resource():
    obj = pyramid(resources={"cpu": "2", "memory": "4Gi", "gpus": 1})
    resources = _container(_job(obj))["resources"]
    assert resources["limits"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert resources["requests"] == resources["limits"]


def test_no_resources_asked_means_none_set():
    assert _container(_job(pyramid()))["resources"] == {}


def test_shared_memory_becomes_a_memory_backed_volume_on_dev_shm():
    without = _job(pyramid())
    assert "volumes" not in without["spec"]["template"]["spec"]
    assert "volumeMounts" not in _container(without)
    job = _job(pyramid(resources={"sharedMemory": "2Gi"}))
    [volume] = job["spec"]["template"]["spec"]["volumes"]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert _container(job)["volumeMounts"] == [{"name": volume["name"], "mountPath": "/dev/shm"}]


def test_user_env_keeps_secret_references_as_references():
    obj = pyramid()
    obj["spec"]["code"]["env"] = [
        {"name": "DATA_DIR", "value": "/data"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
    ]
    env = _env(_container(_job(obj)))
    assert env["DATA_DIR"] == {"name": "DATA_DIR", "value": "/data"}
    assert "value" not in env["HF_TOKEN"]
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hf",
        "key": "token",
        "optional": False,
    }


def test_the_code_under_test_gets_no_kubernetes_credentials():
    spec = _job(pyramid())["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert _container(_job(pyramid()))["securityContext"]["allowPrivilegeEscalation"] is False
