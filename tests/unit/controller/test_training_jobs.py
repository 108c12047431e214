"""The training Job: the trainer, the read-only watchdog sidecar, multi-node and Kueue."""

from __future__ import annotations

import json

from proctor.api.v1alpha1 import Experiment
from proctor.controller.settings import ControllerSettings
from proctor.controller.training_jobs import (
    rendezvous_service,
    trainer_metrics_url,
    training_job,
    watchdog_access,
)
from tests.unit.controller.objects import experiment

SETTINGS = ControllerSettings(
    watchdog_image="proctor/watchdog:test", deadline_allowance_seconds=120
)


def _job(obj: dict, settings: ControllerSettings = SETTINGS) -> dict:
    return training_job(Experiment.model_validate(obj), obj, settings)


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def _trainer(job: dict) -> dict:
    [trainer] = _pod(job)["containers"]
    assert trainer["name"] == "trainer"
    return trainer


def _env(container: dict) -> dict[str, str]:
    return {var["name"]: var.get("value") for var in container["env"]}


def test_a_single_node_run_is_a_plain_job_running_proctor_train():
    job = _job(experiment("exp"))
    assert job["metadata"]["name"] == "exp-train"
    assert _trainer(job)["command"] == ["proctor", "train"]
    assert "completionMode" not in job["spec"]
    assert "subdomain" not in _pod(job)
    assert job["spec"]["backoffLimit"] == 3
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Experiment", "exp", True)


def test_the_trainer_environment_carries_budget_and_checkpoints_under_the_experiment():
    env = _env(_trainer(_job(experiment("exp"))))
    assert env["PROCTOR_CHECKPOINT_URI"] == "s3://ckpts/runs/ml/exp"
    assert env["PROCTOR_MAX_STEPS"] == "300"
    assert env["PROCTOR_MAX_DURATION"] == "10m"
    assert env["PROCTOR_CHECKPOINT_EVERY_STEPS"] == "50"
    assert env["PROCTOR_EXPERIMENT"] == "exp"
    assert env["PROCTOR_NAMESPACE"] == "ml"
    assert env["PROCTOR_ENTRYPOINT"] == "digits_mlp:setup"
    assert json.loads(env["PROCTOR_CONFIG"]) == {"hidden": 256, "lr": 0.003}
    assert "NNODES" not in env
    assert "MASTER_ADDR" not in env


def test_unset_budget_and_checkpoint_values_are_left_out_not_empty():
    obj = experiment(training={"budget": {"maxSteps": 10}})
    env = _env(_trainer(_job(obj)))
    assert "PROCTOR_MAX_DURATION" not in env
    assert "PROCTOR_CHECKPOINT_URI" not in env
    assert None not in env.values()


def test_the_watchdog_is_a_native_sidecar_and_the_only_container_with_a_token():
    job = _job(experiment())
    pod = _pod(job)
    [watchdog] = pod["initContainers"]
    assert watchdog["name"] == "watchdog"
    assert watchdog["restartPolicy"] == "Always"
    assert watchdog["image"] == "proctor/watchdog:test"
    assert pod["automountServiceAccountToken"] is False
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    [token] = [m for m in watchdog["volumeMounts"] if m["mountPath"] == token_dir]
    assert token["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == token["name"]]
    assert volume["secret"]["secretName"] == "proctor-watchdog-token"
    trainer_mounts = {m["mountPath"] for m in _trainer(job)["volumeMounts"]}
    assert token_dir not in trainer_mounts
    assert token["name"] not in {m["name"] for m in _trainer(job)["volumeMounts"]}
    metrics = [m for m in watchdog["volumeMounts"] if m["name"] == "proctor-metrics"]
    assert metrics[0]["readOnly"] is True, "the watchdog only reads the trainer's metrics"


def test_the_watchdog_knows_where_to_write_bundles():
    obj = experiment(recovery={"bundleURI": "s3://bundles/x/", "onAnomaly": "StopTraining"})
    [watchdog] = _pod(_job(obj))["initContainers"]
    env = _env(watchdog)
    assert env["PROCTOR_BUNDLE_URI"] == "s3://bundles/x/ml/exp"
    assert "PROCTOR_STOP_ON_ANOMALY" not in env, (
        "stopping is the operator's job, not the watchdog's"
    )
    assert json.loads(env["PROCTOR_BUDGET"]) == {"maxSteps": 300, "maxDuration": "10m"}


def test_disabling_the_watchdog_removes_the_sidecar_and_its_token():
    pod = _pod(_job(experiment(watchdog={"enabled": False})))
    assert pod["initContainers"] == []
    assert all("secret" not in v for v in pod["volumes"])


def test_the_deadline_is_max_duration_plus_the_allowance_and_absent_without_it():
    assert _job(experiment())["spec"]["activeDeadlineSeconds"] == 600 + 120
    unbounded = _job(experiment(training={"budget": {"maxSteps": 5}}))
    assert "activeDeadlineSeconds" not in unbounded["spec"]


def test_two_nodes_make_an_indexed_job_behind_the_headless_service():
    obj = experiment("exp", training={"budget": {"maxSteps": 5}, "nodes": 2})
    job = _job(obj)
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    service = rendezvous_service(obj, SETTINGS)
    assert _pod(job)["subdomain"] == service["metadata"]["name"] == "exp-train"
    command = _trainer(job)["command"]
    assert command[:3] == ["python", "-m", "torch.distributed.run"]
    assert "--nnodes=2" in command
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in command
    assert "--master-addr=exp-train-0.exp-train" in command
    assert "--master-port=29500" in command
    env = _env(_trainer(job))
    assert env["NNODES"] == "2"
    assert env["MASTER_ADDR"] == "exp-train-0.exp-train"
    assert env["MASTER_PORT"] == "29500"
    [rank] = [v for v in _trainer(job)["env"] if v["name"] == "NODE_RANK"]
    assert "job-completion-index" in rank["valueFrom"]["fieldRef"]["fieldPath"]


def test_the_service_of_an_experiment_named_with_a_digit_starts_with_a_letter():
    obj = experiment("7b-run", training={"budget": {"maxSteps": 5}, "nodes": 2})
    service = rendezvous_service(obj, SETTINGS)
    assert service["metadata"]["name"] == "x7b-run-train"
    assert _pod(_job(obj))["subdomain"] == "x7b-run-train"
    assert "--master-addr=7b-run-train-0.x7b-run-train" in _trainer(_job(obj))["command"]


def test_the_rendezvous_service_is_headless_and_selects_the_training_pods():
    service = rendezvous_service(experiment("exp"), SETTINGS)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {
        "proctor.dev/experiment": "exp",
        "app.kubernetes.io/component": "training",
    }
    labels = _job(experiment("exp"))["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_a_queue_name_labels_the_job_for_kueue_and_suspends_it():
    job = _job(experiment(training={"budget": {"maxSteps": 5}, "queueName": "gpu-queue"}))
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["suspend"] is True
    plain = _job(experiment())
    assert "suspend" not in plain["spec"]
    assert "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]


def test_bad_config_and_spent_budget_fail_at_once_and_disruptions_do_not_count():
    rules = _job(experiment())["spec"]["podFailurePolicy"]["rules"]
    fail = [r for r in rules if r["action"] == "FailJob"]
    assert [r["onExitCodes"] for r in fail] == [
        {"containerName": "trainer", "operator": "In", "values": [2]}
    ]
    ignore = [r for r in rules if r["action"] == "Ignore"]
    assert [r["onPodConditions"] for r in ignore] == [[{"type": "DisruptionTarget"}]]


def test_the_watchdog_role_can_only_read_and_post_events():
    objects = watchdog_access("ml")
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "Secret"]
    assert all(o["metadata"]["namespace"] == "ml" for o in objects)
    [role] = [o for o in objects if o["kind"] == "Role"]
    allowed = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert allowed == {
        ("", "pods", "get"),
        ("", "pods/log", "get"),
        ("proctor.dev", "experiments", "get"),
        ("proctor.dev", "validationpyramids", "get"),
        ("", "events", "create"),
    }
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "proctor-watchdog"
    }
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_trainer_metrics_port_comes_from_the_spec_for_trainer_watchdog_and_operator():
    obj = experiment("exp", watchdog={"metricSources": {"trainerMetricsPort": 9200}})
    job = _job(obj)
    trainer = _trainer(job)
    assert trainer["ports"] == [{"name": "metrics", "containerPort": 9200}]
    assert _env(trainer)["PROCTOR_METRICS_PORT"] == "9200"
    [watchdog] = _pod(job)["initContainers"]
    assert _env(watchdog)["PROCTOR_METRICS_URL"] == "http://127.0.0.1:9200/metrics"
    assert trainer_metrics_url(Experiment.model_validate(obj), "10.0.0.7") == (
        "http://10.0.0.7:9200/metrics"
    )


def test_the_watchdog_gets_the_trainers_secret_values_to_redact_never_the_spec():
    code = {
        "image": "img:1",
        "entrypoint": "m:setup",
        "env": [
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            {"name": "DATA_DIR", "value": "/data"},
        ],
    }
    [watchdog] = _pod(_job(experiment("exp", code=code)))["initContainers"]
    redact = [v for v in watchdog["env"] if v["name"].startswith("PROCTOR_REDACT_")]
    assert redact == [
        {
            "name": "PROCTOR_REDACT_0",
            "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token", "optional": True}},
        }
    ]
