"""Hypothesis strategies for valid Experiment and ValidationPyramid objects, aimed at every field
that reaches a pod: the code (image, entrypoint, config, env, pull secrets and policy), compute
(CPU, memory, GPUs and their resource name, shared memory), scheduling, the service account,
nodes, queue, command, checkpoint and bundle stores and the watchdog's sources, plus the
installation's settings. Values lean hostile where the model lets them: text that spells pod
fields (`privileged: true`, `hostPath`), `$(VAR)` references, a config full of securityContext.

Each strategy returns the object as the API server would (camelCase, identity set); the tests
validate it with the models, as the operator does.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from proctor.controller.settings import ControllerSettings

NAMESPACE = "team-a"
HOSTILE_TEXT = [
    "privileged: true",
    '{"securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}',
    "hostNetwork=true hostPID=true hostIPC=true",
    "hostPath: /",
    "$(KUBERNETES_SERVICE_HOST)",
    "$(PROCTOR_BUNDLE_URI)/../../other-team",
    "../../../../etc/shadow",
    "--privileged",
    "\u202e\u0000\n",
]
HOSTILE_KEYS = [
    "securityContext",
    "privileged",
    "hostNetwork",
    "hostPID",
    "volumes",
    "hostPath",
    "capabilities",
    "podTemplate",
    "initContainers",
]

labels = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40))
quantity = st.one_of(
    st.integers(0, 64), st.sampled_from(["500m", "2", "16Gi", "1024Mi", "0.5", "1e3", "64Ki"])
)
storage_uri = st.one_of(
    st.builds(lambda b, p: f"s3://{b}/{p}", st.sampled_from(["ckpts", "team.bucket"]), labels),
    st.builds(lambda p: f"file:///var/lib/{p}", labels),
)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**31), 2**31), text)
config = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(HOSTILE_KEYS), labels), children, max_size=3),
    ),
    max_leaves=12,
).map(lambda value: value if isinstance(value, dict) else {"value": value})


def _env_var(name: str, kind: str, value: str, ref: str, optional: bool) -> dict[str, Any]:
    if kind == "value":
        return {"name": name, "value": value}
    source = "secretKeyRef" if kind == "secret" else "configMapKeyRef"
    return {"name": name, "valueFrom": {source: {"name": ref, "key": "k", "optional": optional}}}


env_var = st.builds(
    _env_var,
    st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True),
    st.sampled_from(["value", "secret", "configmap"]),
    text,
    labels,
    st.booleans(),
)
env = st.lists(env_var, max_size=5, unique_by=lambda var: var["name"])


@st.composite
def code(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": draw(st.sampled_from(["registry.example/team/model:1.4", "proctor/runner:0.1"])),
        "entrypoint": "pkg.module:setup",
        "config": draw(config),
        "env": draw(env),
    }
    if draw(st.booleans()):
        spec["imagePullSecrets"] = draw(st.lists(labels, max_size=2, unique=True))
    if draw(st.booleans()):
        spec["imagePullPolicy"] = draw(st.sampled_from(["Always", "IfNotPresent", "Never"]))
    return spec


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"gpus": draw(st.integers(0, 8))}
    for field in ("cpu", "memory", "sharedMemory"):
        if draw(st.booleans()):
            spec[field] = draw(quantity)
    if draw(st.booleans()):
        spec["gpuResourceName"] = draw(
            st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "amd.com/gpu"])
        )
    return spec


toleration = st.fixed_dictionaries(
    {"operator": st.sampled_from(["Exists", "Equal"])},
    optional={
        "key": st.sampled_from(["nvidia.com/gpu", "node-role.kubernetes.io/control-plane"]),
        "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "tolerationSeconds": st.integers(0, 3600),
    },
)
scheduling = st.fixed_dictionaries(
    {},
    optional={
        "nodeSelector": st.dictionaries(labels, labels, max_size=2),
        "tolerations": st.lists(toleration, max_size=2),
        "priorityClassName": st.sampled_from(["high", "system-node-critical"]),
    },
)
layers = st.fixed_dictionaries(
    {},
    optional={layer: st.fixed_dictionaries({"enabled": st.booleans()}) for layer in ["l0", "l1"]},
)


def _identity(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }


@st.composite
def experiments(draw: st.DrawFn) -> dict[str, Any]:
    training: dict[str, Any] = {
        "budget": draw(
            st.sampled_from(
                [{"maxSteps": 300}, {"maxDuration": "2h"}, {"maxSteps": 5, "maxDuration": "90s"}]
            )
        ),
        "resources": draw(resources()),
        "scheduling": draw(scheduling),
        "nodes": draw(st.integers(1, 4)),
    }
    if draw(st.booleans()):
        training["serviceAccountName"] = draw(
            st.sampled_from(["trainer", "proctor-watchdog", "default"])
        )
    if draw(st.booleans()):
        training["queueName"] = draw(labels)
    if draw(st.booleans()):
        training["command"] = draw(st.lists(text, min_size=1, max_size=4))
    if draw(st.booleans()):
        training["checkpoint"] = {"uri": draw(storage_uri), "everySteps": draw(st.integers(1, 100))}
    watchdog: dict[str, Any] = {
        "enabled": draw(st.booleans()),
        "metricSources": {"trainerMetricsPort": draw(st.integers(1, 65535))},
    }
    if draw(st.booleans()):
        watchdog["metricSources"]["prometheusURL"] = "http://prometheus.monitoring:9090"
    validation: dict[str, Any] = {"layers": draw(layers)}
    if draw(st.booleans()):
        validation["skip"] = {"reason": "the code is under test elsewhere"}
    if draw(st.booleans()):
        validation["resources"] = draw(resources())
    spec: dict[str, Any] = {
        "hypothesis": {
            "statement": "Wider layers learn faster.",
            "expectedOutcome": "loss below 0.2 at step 300",
            "inspiredBy": [{"kind": "Note", "ref": draw(text) or "a hunch"}],
            "independentVariable": "code.config.hidden",
            "controls": ["seed 0"],
        },
        "code": draw(code()),
        "validation": validation,
        "training": training,
        "watchdog": watchdog,
    }
    if draw(st.booleans()):
        spec["recovery"] = {
            "bundleURI": draw(storage_uri),
            "onAnomaly": draw(st.sampled_from(["Notify", "StopTraining"])),
        }
    return _identity("Experiment", draw(labels), spec)


@st.composite
def pyramids(draw: st.DrawFn) -> dict[str, Any]:
    spec = {
        "code": draw(code()),
        "layers": draw(layers),
        "resources": draw(resources()),
        "scheduling": draw(scheduling),
    }
    return _identity("ValidationPyramid", draw(labels), spec)


@st.composite
def settings(draw: st.DrawFn) -> ControllerSettings:
    """What an installation may set (Helm values); none of it comes from a spec."""
    return ControllerSettings(
        default_bundle_uri=draw(st.one_of(st.none(), storage_uri)),
        watchdog_secret=draw(st.one_of(st.none(), st.just("proctor-storage"))),
        storage_endpoint=draw(st.one_of(st.none(), st.just("http://minio.storage:9000"))),
        prometheus_url=draw(st.one_of(st.none(), st.just("http://prometheus.monitoring:9090"))),
        default_queue=draw(st.one_of(st.none(), st.just("gpu-queue"))),
    )
