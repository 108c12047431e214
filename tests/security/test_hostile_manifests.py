"""Promise: a manifest cannot smuggle privileges into a pod. Fields the API does not have
(spec.code.securityContext, spec.podTemplate, volumes, host namespaces, hostPorts) are refused by
the API server under strict field validation, naming each one, and pruned otherwise, so they never
reach the Job the real operator creates on the emulated cluster; that Job is read back and held
to the Pod Security Standard "restricted". What the API has but must not take (a store URI that
steps out of its prefix, an env source other than a Secret or ConfigMap) is refused with a
message that says what to write instead.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.security.pss import violations
from tests.support.operator import DIGITS_DIR, get, wait_for

pytestmark = [pytest.mark.kubectl, pytest.mark.slow, pytest.mark.timeout(180)]

SMUGGLED = {
    ("code", "securityContext"): {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
    ("podTemplate",): {"spec": {"hostNetwork": True, "hostPID": True, "hostIPC": True}},
    ("training", "volumes"): [{"name": "root", "hostPath": {"path": "/"}}],
    ("training", "volumeMounts"): [{"name": "root", "mountPath": "/host"}],
    ("training", "hostNetwork"): True,
    ("training", "ports"): [{"containerPort": 22, "hostPort": 22}],
    ("training", "scheduling", "hostPID"): True,
    ("training", "resources", "privileged"): True,
    ("watchdog", "metricSources", "hostPort"): 9108,
}
# Words that would betray a smuggled field anywhere in a pod template (outside PROCTOR_CONFIG,
# which carries spec.code.config, free-form by design, as one JSON string).
MARKERS = ["privileged", "hostNetwork", "hostPID", "hostIPC", "hostPath", "SYS_ADMIN", "hostPort"]


def _hostile(name: str, kind: str = "Experiment") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "code": {
            "image": "registry.example/digits:1.0",
            "entrypoint": "digits_mlp:setup",
            # Free-form, so kept: it must reach the pod only as the PROCTOR_CONFIG string.
            "config": {"securityContext": {"privileged": True}, "hostPath": "/"},
            "env": [{"name": "PYTHONPATH", "value": str(DIGITS_DIR), "privileged": True}],
        },
    }
    if kind == "Experiment":
        spec.update(
            hypothesis={
                "statement": "A hostile manifest gains nothing.",
                "expectedOutcome": "0 privileged pods",
                "inspiredBy": [{"kind": "Note", "ref": "issue 11"}],
                "independentVariable": "code.config.securityContext",
                "controls": ["seed 0"],
            },
            validation={"skip": {"reason": "the training Job is what is inspected"}},
            training={
                "budget": {"maxSteps": 1},
                "resources": {"gpus": 0},
                "command": ["python", "-c", "print('nothing to train')"],
                "scheduling": {},
            },
            watchdog={"metricSources": {}},
        )
        for path, value in SMUGGLED.items():
            *parents, leaf = path
            node = spec
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = copy.deepcopy(value)
    else:
        spec["code"]["securityContext"] = SMUGGLED[("code", "securityContext")]
        spec["podTemplate"] = SMUGGLED[("podTemplate",)]
        spec["volumes"] = SMUGGLED[("training", "volumes")]
        spec["layers"] = {layer: {"enabled": False} for layer in ("l1", "l2", "l3")}
    annotations = {"container.apparmor.security.beta.kubernetes.io/trainer": "unconfined"}
    return {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }


def _pod_template_without_config(job: dict[str, Any]) -> str:
    template = copy.deepcopy(job["spec"]["template"])
    for container in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]:
        container["env"] = [v for v in container.get("env", []) if v["name"] != "PROCTOR_CONFIG"]
    return json.dumps(template)


def _job(cluster, name: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        result = cluster.kubectl("get", "job", name, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    job: dict[str, Any] = wait_for(found, 60, f"the Job {name}")
    return job


def test_strict_field_validation_refuses_every_smuggled_field(installation):
    cluster, _ = installation
    result = cluster.kubectl(
        "apply", "-f", "-", input=json.dumps(_hostile("hostile-strict")), check=False
    )
    assert result.returncode != 0
    for path in SMUGGLED:
        assert f'unknown field "spec.{".".join(path)}"' in result.stderr, (path, result.stderr)
    assert 'unknown field "spec.code.env[0].privileged"' in result.stderr
    assert "NotFound" in cluster.kubectl("get", "exp/hostile-strict", check=False).stderr


def test_pruned_fields_never_reach_the_job_the_operator_creates(installation):
    cluster, _ = installation
    for manifest in (_hostile("hostile-pruned"), _hostile("hostile-vp", "ValidationPyramid")):
        cluster.kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(manifest))
    stored = get(cluster, "exp/hostile-pruned")["spec"]
    assert "podTemplate" not in stored
    assert "securityContext" not in stored["code"]
    assert stored["code"]["config"]["securityContext"] == {"privileged": True}  # free-form

    for job_name in ("hostile-pruned-train", "hostile-vp-l0-1"):
        job = _job(cluster, job_name)
        template = job["spec"]["template"]
        assert violations(template, "restricted") == [], job_name
        text = _pod_template_without_config(job)
        assert [m for m in MARKERS if m in text] == [], job_name
        assert "apparmor" not in json.dumps(template["metadata"]), "annotations stay put"
        configs = [
            var["value"]
            for c in [*template["spec"].get("initContainers", []), *template["spec"]["containers"]]
            for var in c.get("env", [])
            if var["name"] == "PROCTOR_CONFIG"
        ]
        assert configs, "the config reached the code as PROCTOR_CONFIG, and only there"
    cluster.kubectl("delete", "exp/hostile-pruned", "vp/hostile-vp", "--wait=false")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {"recovery": {"bundleURI": "s3://bundles/proctor/../other-team"}},
            "spec.recovery.bundleURI",
            "without '.' or '..' segments",
        ),
        (
            {"training": {"checkpoint": {"uri": "file:///var/lib/ckpt/%2e%2e/other"}}},
            "spec.training.checkpoint.uri",
            "without '.' or '..' segments",
        ),
    ],
)
def test_a_store_uri_that_steps_out_is_refused_naming_the_field(
    installation, tmp_path, change, field, message
):
    manifest = _hostile("hostile-uri")
    spec = manifest["spec"]
    for path in SMUGGLED:  # a valid manifest but for the URI
        *parents, leaf = path
        node = spec
        for key in parents:
            node = node[key]
        node.pop(leaf)
    spec["code"]["env"][0].pop("privileged")
    for key, value in change.items():
        spec[key] = {**spec.get(key, {}), **value}
    cluster, _ = installation
    refused = cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=False)
    assert refused.returncode != 0
    assert field in refused.stderr, refused.stderr  # the API server names the field
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(manifest))
    offline = subprocess.run(
        [sys.executable, "-m", "proctor.cli.main", "validate", str(path)],
        capture_output=True,
        text=True,
    )
    assert offline.returncode != 0
    assert message in offline.stdout + offline.stderr, offline  # the model teaches the fix


def test_an_env_source_other_than_a_secret_or_configmap_is_refused(installation):
    cluster, _ = installation
    manifest = _hostile("hostile-env")
    manifest["spec"]["code"]["env"] = [
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    ]
    refused = cluster.kubectl(
        "apply", "--validate=false", "-f", "-", input=json.dumps(manifest), check=False
    )
    assert refused.returncode != 0
    assert "set exactly one of secretKeyRef or configMapKeyRef" in refused.stderr, refused.stderr
    apply_result = cluster.kubectl("get", "exp/hostile-env", check=False)
    assert "NotFound" in apply_result.stderr
