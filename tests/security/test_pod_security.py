"""Promise: the operator never builds a pod more privileged than a namespace that enforces the
Pod Security Standard "restricted" admits, whatever a valid spec says.

No field of either resource reaches a securityContext, a volume source, a host namespace or a
hostPort: the models forbid unknown fields and the API server prunes them (test_hostile_manifests
shows that on the emulated cluster), and the builders copy only named fields into fixed places.
These properties hold that shut over generated specs and installations, through the same
functions the operator runs: the pure reconcilers (which create an Experiment's pyramid or
training Job) and the Job builders for every layer.

GPU pods need no exception and get none: the device plugin hands a container its GPUs without
privileges, host namespaces or added capabilities, so `restricted` is asserted for them too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from pydantic import ValidationError

from proctor.api.v1alpha1 import Experiment, LayerName, ValidationPyramid
from proctor.controller.defaults import with_operator_defaults
from proctor.controller.experiment_reconcile import Observed, reconcile_experiment
from proctor.controller.pyramid_jobs import layer_job
from proctor.controller.pyramid_reconcile import reconcile_pyramid
from proctor.controller.training_jobs import training_job
from tests.security import specs
from tests.security.pss import pod_templates, violations

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
PROPERTY = settings(
    max_examples=120,
    deadline=None,  # a shared 2-core machine has no stable per-example time
    derandomize=True,  # CI sees the same examples every run; a failure seen once is seen again
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Everything the builders may put in a pod: a field outside these lists would be a way in for
# whatever a future change copies from a spec wholesale.
POD_FIELDS = {
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "securityContext",
    "initContainers",
    "containers",
    "volumes",
    "nodeSelector",
    "tolerations",
    "priorityClassName",
    "imagePullSecrets",
    "serviceAccountName",
    "subdomain",
}
CONTAINER_FIELDS = {
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "env",
    "envFrom",
    "ports",
    "resources",
    "volumeMounts",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "securityContext",
    "restartPolicy",
}
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
WATCHDOG_SECURITY = {**CONTAINER_SECURITY, "readOnlyRootFilesystem": True}
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _valid(obj: dict[str, Any], model: type[Experiment] | type[ValidationPyramid]) -> None:
    """Only specs the operator would act on count; the model refuses the rest (SpecInvalid)."""
    try:
        model.model_validate(obj)
    except ValidationError:
        reject()


def _with_identity(child: dict[str, Any]) -> dict[str, Any]:
    """A created object as the API server returns it."""
    meta = {**child["metadata"], "uid": f"uid-{child['metadata']['name']}", "generation": 1}
    return {**child, "metadata": meta}


def _jobs_of_experiment(obj: dict[str, Any], installation: Any) -> list[dict[str, Any]]:
    """The Jobs an Experiment leads to: what its first reconcile creates (a pyramid, whose first
    reconcile creates a layer Job; or, validation skipped, the training Job), and the training
    Job it creates after validation."""
    made = list(reconcile_experiment(obj, Observed(), NOW, installation).create)
    for child in list(made):
        if child["kind"] == "ValidationPyramid":
            made += reconcile_pyramid(_with_identity(child), [], NOW, installation).create
    experiment = with_operator_defaults(Experiment.model_validate(obj), installation)
    made.append(training_job(experiment, obj, installation))
    return [job for job in made if job["kind"] == "Job"]


def _assert_locked_down(job: dict[str, Any]) -> None:
    [template] = pod_templates(job)
    assert violations(template, "restricted") == [], job["metadata"]["name"]
    pod = template["spec"]
    assert set(pod) <= POD_FIELDS, sorted(set(pod) - POD_FIELDS)
    assert pod["securityContext"] == POD_SECURITY
    assert pod["automountServiceAccountToken"] is False, "user code gets no Kubernetes token"
    for volume in pod.get("volumes") or []:
        assert set(volume) - {"name"} <= {"emptyDir", "secret"}, volume
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        assert set(container) <= CONTAINER_FIELDS, sorted(set(container) - CONTAINER_FIELDS)
        watchdog = container["name"] == "watchdog"
        expected = WATCHDOG_SECURITY if watchdog else CONTAINER_SECURITY
        assert container["securityContext"] == expected, container["name"]
        assert all("hostPort" not in port for port in container.get("ports") or [])
        mounts = {mount["mountPath"] for mount in container.get("volumeMounts") or []}
        assert watchdog or TOKEN_DIR not in mounts, "only the watchdog mounts a token"


@PROPERTY
@given(obj=specs.experiments(), installation=specs.settings())
def test_every_job_an_experiment_leads_to_meets_the_restricted_profile(obj, installation):
    _valid(obj, Experiment)
    jobs = _jobs_of_experiment(obj, installation)
    assert any(job["metadata"]["name"].endswith("-train") for job in jobs)
    for job in jobs:
        _assert_locked_down(job)


@settings(PROPERTY, max_examples=60)
@given(obj=specs.pyramids())
def test_every_layer_job_of_a_pyramid_meets_the_restricted_profile(obj):
    _valid(obj, ValidationPyramid)
    pyramid = ValidationPyramid.model_validate(obj)
    for layer in LayerName:
        _assert_locked_down(layer_job(pyramid, obj, layer, attempt=1))


def test_a_gpu_pod_meets_restricted_too():
    """The property above draws GPU counts; this pins the case explicitly (8 GPUs, 2 nodes)."""
    obj = specs._identity(
        "Experiment",
        "gpus",
        {
            "hypothesis": {
                "statement": "s",
                "expectedOutcome": "loss 0.1",
                "inspiredBy": [{"kind": "Note", "ref": "n"}],
                "independentVariable": "code.config.lr",
                "controls": ["seed 0"],
            },
            "code": {"image": "registry.example/m:1", "entrypoint": "m:setup"},
            "training": {
                "budget": {"maxSteps": 10},
                "resources": {"gpus": 8, "sharedMemory": "16Gi"},
                "nodes": 2,
            },
        },
    )
    installation = specs.ControllerSettings()
    [train] = [
        j for j in _jobs_of_experiment(obj, installation) if j["metadata"]["name"] == "gpus-train"
    ]
    assert train["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "nvidia.com/gpu": "8"
    }
    _assert_locked_down(train)


# ---- the checker itself can fail: each control it implements catches a pod that breaks it ----

_BAD_PODS = {
    "privileged": {"containers": [{"name": "c", "securityContext": {"privileged": True}}]},
    "hostNetwork": {"hostNetwork": True, "containers": [{"name": "c"}]},
    "hostPID": {"hostPID": True, "containers": [{"name": "c"}]},
    "hostPath": {"volumes": [{"name": "v", "hostPath": {"path": "/"}}], "containers": []},
    "added capability": {
        "containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]
    },
    "hostPort": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]},
    "unsafe sysctl": {"securityContext": {"sysctls": [{"name": "kernel.msgmax"}]}},
    "unconfined seccomp": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
}


@pytest.mark.parametrize("what", sorted(_BAD_PODS))
def test_the_checker_refuses_what_baseline_forbids(what):
    assert violations({"spec": _BAD_PODS[what]}, "baseline"), what


def test_the_checker_refuses_a_pod_restricted_forbids_but_baseline_admits():
    lax = {"spec": {"containers": [{"name": "c"}], "volumes": [{"name": "n", "nfs": {}}]}}
    assert violations(lax, "baseline") == []
    found = "\n".join(violations(lax, "restricted"))
    for control in ("Volume types", "Privilege escalation", "non-root", "Seccomp", "drop ALL"):
        assert control in found, control
