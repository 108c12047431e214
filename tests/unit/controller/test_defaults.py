"""An installation's defaults fill only what an Experiment leaves open, and reach the Jobs."""

from __future__ import annotations

import json

import pytest

from proctor.api.v1alpha1 import Experiment
from proctor.controller.defaults import with_operator_defaults
from proctor.controller.settings import ControllerSettings
from proctor.controller.training_jobs import training_job
from tests.unit.controller.objects import experiment

INSTALLATION = ControllerSettings(
    default_queue="gpu-queue",
    prometheus_url="http://prometheus.monitoring:9090",
    storage_endpoint="http://minio.storage:9000",
    default_thresholds={"minMfuRatio": 0.3, "maxCheckpointAge": "2h"},
)


def _effective(obj: dict) -> Experiment:
    return with_operator_defaults(Experiment.model_validate(obj), INSTALLATION)


def test_an_experiment_that_leaves_them_open_gets_the_installation_defaults():
    spec = _effective(experiment()).spec
    assert spec.training.queue_name == "gpu-queue"
    assert spec.watchdog.metric_sources.prometheus_url == "http://prometheus.monitoring:9090"
    assert spec.watchdog.thresholds.min_mfu_ratio == 0.3
    assert spec.watchdog.thresholds.max_checkpoint_age == "2h"


def test_what_the_experiment_states_wins():
    obj = experiment(
        watchdog={
            "thresholds": {"minMfuRatio": 0.5},
            "metricSources": {"dcgmExporterURL": "http://node-exporter:9400/metrics"},
        }
    )
    obj["spec"]["training"]["queueName"] = "team-queue"
    spec = _effective(obj).spec
    assert spec.training.queue_name == "team-queue"
    assert spec.watchdog.thresholds.min_mfu_ratio == 0.5
    assert spec.watchdog.thresholds.max_checkpoint_age == "2h"
    # A direct exporter is a source: no Prometheus is added behind the user's back.
    assert spec.watchdog.metric_sources.prometheus_url is None


def test_without_defaults_the_experiment_is_unchanged():
    obj = experiment()
    plain = Experiment.model_validate(obj)
    assert with_operator_defaults(plain, ControllerSettings()) == plain


def test_the_training_job_carries_queue_prometheus_thresholds_and_the_storage_endpoint():
    obj = experiment()
    job = training_job(_effective(obj), obj, INSTALLATION)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["suspend"] is True
    pod = job["spec"]["template"]["spec"]
    [watchdog] = pod["initContainers"]
    [trainer] = pod["containers"]
    watchdog_env = {v["name"]: v.get("value") for v in watchdog["env"]}
    trainer_env = {v["name"]: v.get("value") for v in trainer["env"]}
    wire = json.loads(watchdog_env["PROCTOR_WATCHDOG"])
    assert wire["metricSources"]["prometheusURL"] == "http://prometheus.monitoring:9090"
    assert wire["thresholds"]["minMfuRatio"] == 0.3
    assert watchdog_env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert trainer_env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"


def test_a_user_endpoint_is_not_overridden():
    obj = experiment()
    obj["spec"]["code"]["env"] = [{"name": "AWS_ENDPOINT_URL_S3", "value": "http://mine:9000"}]
    job = training_job(_effective(obj), obj, INSTALLATION)
    [trainer] = job["spec"]["template"]["spec"]["containers"]
    names = [v["name"] for v in trainer["env"]]
    assert "AWS_ENDPOINT_URL" not in names
    assert "AWS_ENDPOINT_URL_S3" in names


@pytest.mark.parametrize(
    ("thresholds", "says"),
    [
        ({"stallFactor": 20}, "only ['minMfuRatio', 'maxCheckpointAge']"),
        ({"minMfuRatio": 3}, "less than or equal to 1"),
        ({"maxCheckpointAge": "two hours"}, "maxCheckpointAge"),
    ],
)
def test_bad_default_thresholds_are_refused_saying_why(thresholds, says):
    with pytest.raises(ValueError, match="default watchdog thresholds") as refused:
        ControllerSettings(default_thresholds=thresholds)
    assert says in str(refused.value)


def test_settings_come_from_the_variables_the_chart_sets(monkeypatch):
    monkeypatch.setenv("PROCTOR_DEFAULT_QUEUE", "gpu-queue")
    monkeypatch.setenv("PROCTOR_PROMETHEUS_URL", "http://prometheus:9090")
    monkeypatch.setenv("PROCTOR_STORAGE_ENDPOINT", "http://minio:9000")
    monkeypatch.setenv("PROCTOR_WATCHDOG_THRESHOLDS", '{"minMfuRatio": 0.25}')
    settings = ControllerSettings.from_env()
    assert settings.default_queue == "gpu-queue"
    assert settings.prometheus_url == "http://prometheus:9090"
    assert settings.storage_endpoint == "http://minio:9000"
    assert settings.default_thresholds == {"minMfuRatio": 0.25}


def test_thresholds_that_are_not_a_json_object_are_refused(monkeypatch):
    monkeypatch.setenv("PROCTOR_WATCHDOG_THRESHOLDS", "[0.3]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        ControllerSettings.from_env()


def test_the_storage_secret_reaches_the_watchdog_and_never_blocks_training():
    obj = experiment()
    settings = ControllerSettings(watchdog_secret="proctor-storage")
    job = training_job(_effective(obj), obj, settings)
    pod = job["spec"]["template"]["spec"]
    [watchdog] = pod["initContainers"]
    [trainer] = pod["containers"]
    assert watchdog["envFrom"] == [{"secretRef": {"name": "proctor-storage", "optional": True}}]
    assert "envFrom" not in trainer  # the trainer's credentials are the user's (spec.code.env)
