"""The training Job of an Experiment: the trainer (`proctor train`, or the spec's command), the
watchdog as a native sidecar, and for multi-node runs an Indexed Job behind a headless Service.

The watchdog is read-only by construction: the pod mounts no service account token at all
(`automountServiceAccountToken: false`), and only the watchdog container gets a token, that of the
`proctor-watchdog` account, whose Role can read its pod, pod logs and the Experiment and post
Events, nothing else. The trainer has no Kubernetes credentials.
"""

from __future__ import annotations

import json
from typing import Any

from proctor.api.layout import experiment_prefix
from proctor.api.redaction import REDACT_PREFIX
from proctor.api.v1alpha1 import Experiment, duration_seconds
from proctor.controller import names, podspec
from proctor.controller.settings import ControllerSettings

TRAINER_CONTAINER = "trainer"
WATCHDOG_CONTAINER = "watchdog"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
METRICS_DIR = "/var/run/proctor"
METRICS_FILE = f"{METRICS_DIR}/metrics.jsonl"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SPOOL_DIR = "/var/spool/proctor"
ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"  # read by boto3 itself, so any S3 client in user code too
ENDPOINT_VARIABLES = (ENDPOINT_VARIABLE, "AWS_ENDPOINT_URL_S3")
# The pod's index in an Indexed Job; read from its annotation, which (unlike the
# JOB_COMPLETION_INDEX variable the Job controller appends) other variables can reference.
COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
TRAINING_BACKOFF_LIMIT = 3
"""Pod failures (crashes) retried before the Job fails; each retry resumes from the newest
checkpoint. Preemption and eviction do not count; bad config (exit 2) fails at once, except under
torchrun, which reports every failing rank as 1 (then it is retried, and fails the same way)."""


def training_job(
    experiment: Experiment, owner: dict[str, Any], settings: ControllerSettings
) -> dict[str, Any]:
    """The training Job of `experiment`; `owner` is the Experiment as the API server returned
    it (name, namespace, uid)."""
    spec = experiment.spec
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    job_name = names.training_job_name(name)
    nodes = spec.training.nodes
    labels = names.managed_labels(names.TRAINING, **{names.EXPERIMENT: name})
    job_labels = dict(labels)
    if spec.training.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.training.queue_name
    shm_volumes, shm_mounts = podspec.shared_memory(spec.training.resources)
    trainer: dict[str, Any] = {
        "name": TRAINER_CONTAINER,
        **podspec.image_fields(spec.code),
        "command": _trainer_command(experiment, job_name, name, settings),
        "env": _trainer_env(experiment, name, namespace, settings),
        "ports": [{"name": "metrics", "containerPort": _metrics_port(experiment)}],
        "resources": podspec.compute(spec.training.resources),
        "volumeMounts": [{"name": "proctor-metrics", "mountPath": METRICS_DIR}, *shm_mounts],
        "terminationMessagePath": podspec.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": podspec.container_security(),
    }
    volumes: list[dict[str, Any]] = [{"name": "proctor-metrics", "emptyDir": {}}, *shm_volumes]
    init_containers = []
    if spec.watchdog.enabled:
        init_containers.append(_watchdog(experiment, name, namespace, settings))
        volumes.append(
            {
                "name": "watchdog-token",
                # optional: a missing token degrades the watchdog, it never blocks training
                "secret": {"secretName": names.WATCHDOG_TOKEN_SECRET, "optional": True},
            }
        )
        volumes.append({"name": "watchdog-spool", "emptyDir": {"sizeLimit": "1Gi"}})
        # The root filesystem is read-only; matplotlib (the bundle's plot) needs a scratch dir.
        volumes.append({"name": "watchdog-tmp", "emptyDir": {"sizeLimit": "64Mi"}})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Time for the trainer to checkpoint on SIGTERM and for the watchdog to upload what its
        # spool still holds (the spool is an emptyDir: it goes with the pod).
        "terminationGracePeriodSeconds": 120,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": podspec.pod_security(),
        "initContainers": init_containers,
        "containers": [trainer],
        "volumes": volumes,
        **podspec.placement(spec.training.scheduling),
        **podspec.pull_secrets(spec.code),
    }
    if spec.training.service_account_name:
        pod_spec["serviceAccountName"] = spec.training.service_account_name
    job_spec: dict[str, Any] = {
        "backoffLimit": TRAINING_BACKOFF_LIMIT,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": TRAINER_CONTAINER,
                        "operator": "In",
                        "values": [2],  # bad config: a retry cannot help
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if spec.training.budget.max_duration:
        job_spec["activeDeadlineSeconds"] = (
            duration_seconds(spec.training.budget.max_duration)
            + settings.deadline_allowance_seconds
        )
    if nodes > 1:
        pod_spec["subdomain"] = names.training_service_name(name)
        job_spec.update(completionMode="Indexed", completions=nodes, parallelism=nodes)
    if spec.training.queue_name:
        job_spec["suspend"] = True  # Kueue admits it by resuming it
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": namespace,
            "labels": job_labels,
            "ownerReferences": [podspec.owner_reference(owner)],
        },
        "spec": job_spec,
    }


def rendezvous_service(owner: dict[str, Any], settings: ControllerSettings) -> dict[str, Any]:
    """The headless Service that gives every pod of a multi-node run a DNS name
    (`<job>-<index>.<service>`), which torchrun's rendezvous uses."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": names.training_service_name(name),
            "namespace": namespace,
            "labels": names.managed_labels(names.TRAINING, **{names.EXPERIMENT: name}),
            "ownerReferences": [podspec.owner_reference(owner)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # rendezvous happens before anyone is ready
            "selector": {names.EXPERIMENT: name, names.COMPONENT: names.TRAINING},
            "ports": [{"name": "rendezvous", "port": settings.rendezvous_port}],
        },
    }


def checkpoint_uri(experiment: Experiment, name: str, namespace: str) -> str | None:
    checkpoint = experiment.spec.training.checkpoint
    return experiment_prefix(checkpoint.uri, namespace, name) if checkpoint else None


def bundle_uri(
    experiment: Experiment, name: str, namespace: str, settings: ControllerSettings
) -> str | None:
    base = experiment.spec.recovery.bundle_uri or settings.default_bundle_uri
    return experiment_prefix(base, namespace, name) if base else None


def _trainer_command(
    experiment: Experiment, job_name: str, name: str, settings: ControllerSettings
) -> list[str]:
    training = experiment.spec.training
    if training.command:
        return list(training.command)
    per_node = max(training.resources.gpus, 1)
    if training.nodes == 1 and per_node == 1:
        return ["proctor", "train"]
    launcher = ["python", "-m", "torch.distributed.run", f"--nproc-per-node={per_node}"]
    if training.nodes == 1:
        launcher.append("--standalone")
    else:
        service = names.training_service_name(name)
        launcher += [
            f"--nnodes={training.nodes}",
            "--node-rank=$(JOB_COMPLETION_INDEX)",
            f"--master-addr={job_name}-0.{service}",
            f"--master-port={settings.rendezvous_port}",
        ]
    return [*launcher, "-m", "proctor.cli.main", "train"]


def _trainer_env(
    experiment: Experiment, name: str, namespace: str, settings: ControllerSettings
) -> list[dict[str, Any]]:
    spec = experiment.spec
    values: dict[str, str | None] = {
        "PROCTOR_EXPERIMENT": name,
        "PROCTOR_NAMESPACE": namespace,
        "PROCTOR_ENTRYPOINT": spec.code.entrypoint,
        "PROCTOR_CONFIG": json.dumps(spec.code.config, sort_keys=True),
        "PROCTOR_MAX_STEPS": _str(spec.training.budget.max_steps),
        "PROCTOR_MAX_DURATION": spec.training.budget.max_duration,
        "PROCTOR_CHECKPOINT_URI": checkpoint_uri(experiment, name, namespace),
        "PROCTOR_METRICS_PORT": str(_metrics_port(experiment)),
        "PROCTOR_METRICS_FILE": METRICS_FILE,
        "PROCTOR_TERMINATION_LOG": podspec.TERMINATION_LOG,
    }
    checkpoint = spec.training.checkpoint
    if checkpoint is not None:
        values["PROCTOR_CHECKPOINT_EVERY_STEPS"] = _str(checkpoint.every_steps)
        values["PROCTOR_CHECKPOINT_EVERY"] = checkpoint.every_duration
        values["PROCTOR_KEEP_LAST"] = str(checkpoint.keep_last)
    if spec.training.nodes > 1:  # what torchrun (or a custom command) needs to rendezvous
        service = names.training_service_name(name)
        values["NNODES"] = str(spec.training.nodes)
        values["MASTER_ADDR"] = f"{names.training_job_name(name)}-0.{service}"
        values["MASTER_PORT"] = str(settings.rendezvous_port)
    if not any(var.name in ENDPOINT_VARIABLES for var in spec.code.env):  # the user's wins
        values[ENDPOINT_VARIABLE] = settings.storage_endpoint
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items() if v]
    if spec.training.nodes > 1:
        env.append(
            {
                "name": "NODE_RANK",
                "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX_FIELD}},
            }
        )
    return [*env, *podspec.code_env(spec.code), *podspec.secret_env_names(spec.code)]


def _watchdog(
    experiment: Experiment, name: str, namespace: str, settings: ControllerSettings
) -> dict[str, Any]:
    """The native sidecar: an init container that keeps running (restartPolicy Always), so the
    Job completes when the trainer exits and the watchdog is stopped after it."""
    spec = experiment.spec
    values: dict[str, str | None] = {
        "PROCTOR_EXPERIMENT": name,
        "PROCTOR_NAMESPACE": namespace,
        "PROCTOR_METRICS_URL": f"http://127.0.0.1:{_metrics_port(experiment)}/metrics",
        "PROCTOR_METRICS_FILE": METRICS_FILE,
        "PROCTOR_CHECKPOINT_URI": checkpoint_uri(experiment, name, namespace),
        "PROCTOR_BUNDLE_URI": bundle_uri(experiment, name, namespace, settings),
        "PROCTOR_SPOOL_DIR": SPOOL_DIR,
        "PROCTOR_WATCHDOG": json.dumps(spec.watchdog.to_wire(), sort_keys=True),
        "PROCTOR_BUDGET": json.dumps(spec.training.budget.to_wire(), sort_keys=True),
        "PROCTOR_CHECKPOINT": json.dumps(spec.training.checkpoint.to_wire(), sort_keys=True)
        if spec.training.checkpoint
        else None,
        ENDPOINT_VARIABLE: settings.storage_endpoint,
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items() if v]
    env.append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    # The trainer's Secret-held values, handed to the watchdog by the kubelet (it may not read
    # Secrets itself) so it can cut exactly those strings out of anything it writes.
    secret_refs = [
        var.value_from.secret_key_ref
        for var in spec.code.env
        if var.value_from is not None and var.value_from.secret_key_ref is not None
    ]
    for index, ref in enumerate(secret_refs):
        optional = ref.model_copy(update={"optional": True})  # never blocks the pod
        env.append(
            {"name": f"{REDACT_PREFIX}{index}", "valueFrom": {"secretKeyRef": optional.to_wire()}}
        )
    container: dict[str, Any] = {
        "name": WATCHDOG_CONTAINER,
        "image": settings.watchdog_image,
        "restartPolicy": "Always",
        "command": ["proctor", "watchdog"],
        "env": env,
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        "volumeMounts": [
            {"name": "proctor-metrics", "mountPath": METRICS_DIR, "readOnly": True},
            {"name": "watchdog-token", "mountPath": TOKEN_DIR, "readOnly": True},
            # writable: bundles spool here while object storage is unreachable
            {"name": "watchdog-spool", "mountPath": SPOOL_DIR},
            {"name": "watchdog-tmp", "mountPath": "/tmp"},
        ],
        "securityContext": podspec.container_security(readOnlyRootFilesystem=True),
    }
    if settings.watchdog_secret:
        # Optional: a namespace without the Secret still trains; the watchdog's uploads fail
        # and its bundles wait in the spool, which its log and the bundles' absence show.
        container["envFrom"] = [{"secretRef": {"name": settings.watchdog_secret, "optional": True}}]
    return container


def watchdog_access(namespace: str) -> list[dict[str, Any]]:
    """The watchdog's identity in a namespace, least privilege: read pods and their logs (a Role
    cannot name pods that do not exist yet, so it covers the namespace's pods; the watchdog reads
    only its own) and Experiments, post Events; a token Secret mounted only into the watchdog
    container. Shared by every Experiment of the namespace, so not owned by any: deleting one
    Experiment leaves it for the others."""
    account = names.WATCHDOG_ACCOUNT
    labels = names.managed_labels("watchdog")
    meta = {"name": account, "namespace": namespace, "labels": labels}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]},
                {
                    "apiGroups": ["proctor.dev"],
                    "resources": ["experiments", "validationpyramids"],
                    "verbs": ["get"],
                },
                {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                **meta,
                "name": names.WATCHDOG_TOKEN_SECRET,
                "annotations": {"kubernetes.io/service-account.name": account},
            },
        },
    ]


def _metrics_port(experiment: Experiment) -> int:
    """The trainer's Prometheus port, as spec.watchdog.metricSources says (a custom trainer may
    serve elsewhere); the watchdog and the operator read it there."""
    return experiment.spec.watchdog.metric_sources.trainer_metrics_port


def trainer_metrics_url(experiment: Experiment, pod_ip: str) -> str:
    return f"http://{pod_ip}:{_metrics_port(experiment)}/metrics"


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)
