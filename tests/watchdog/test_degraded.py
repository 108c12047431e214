"""Prometheus unreachable: the watchdog goes on judging from the trainer's own metrics and says
so, once, in a WatchdogDegraded Event on the Experiment (silence must not read as health).
Against the emulated API server with the real Kubernetes client."""

from __future__ import annotations

import pytest
from kubernetes import config as config_loader

from proctor.api.v1alpha1.experiment import WatchdogSpec
from proctor.kube import KubeClient
from proctor.watchdog.runner import Watchdog, WatchdogConfig
from tests.support.cluster import running_cluster
from tests.support.operator import apply, digits_experiment, free_port, get

pytestmark = pytest.mark.kubectl


def test_an_unreachable_prometheus_is_said_once_in_an_event(tmp_path):
    with running_cluster(tmp_path / "cluster", pods=False) as cluster:
        cluster.kubectl("apply", "-f", "crds/")
        apply(cluster, digits_experiment("blind", tmp_path))
        nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        config = WatchdogConfig(
            experiment="blind",
            namespace="default",
            pod="blind-train-0",
            metrics_url=f"{nowhere}/metrics",
            metrics_file=None,
            bundle_uri=None,
            checkpoint_uri=None,
            spool_dir=tmp_path / "spool",
            spec=WatchdogSpec.model_validate({"metricSources": {"prometheusURL": nowhere}}),
        )
        api = config_loader.new_client_from_config(config_file=str(cluster.kubeconfig))
        watchdog = Watchdog(config, KubeClient(api, "proctor-watchdog"))
        for _ in range(3):
            watchdog.check()  # judging goes on; no exception from the missing source

        events = [
            e
            for e in get(cluster, "events")["items"]
            if e["reason"] == "WatchdogDegraded" and e["involvedObject"]["name"] == "blind"
        ]
        assert len(events) == 1, events  # once, not once per check
        [event] = events
        assert event["type"] == "Warning"
        assert "GPU metrics unavailable" in event["message"]
        assert "judging from the trainer's own metrics" in event["message"]
        assert "dcgm" in watchdog.notes  # and into the bundles' notes
