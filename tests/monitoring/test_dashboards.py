"""The Grafana dashboards: the committed JSON is what dashboards/ generates, the chart ships it to
the Grafana sidecar, and every query on them returns data from a real Prometheus that scrapes a
real training run, a real dcgm-exporter exposition and the real operator."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.generate import OUTPUT, render
from proctor.api.anomaly_events import anomaly_event
from proctor.api.v1alpha1 import Anomaly
from tests.support.cluster import BIN, running_cluster
from tests.support.crd_schema import REPO
from tests.support.operator import OperatorProcess, apply, digits_experiment, wait_for
from tests.support.prometheus import free_port, prometheus, serve_text

CHART = REPO / "charts" / "proctor"
RULES = CHART / "files" / "rules" / "proctor.rules.yaml"
# The DCGM fixtures describe GPUs of this pod; the experiment's trainer is scraped under its name
# (as a PodMonitor would label it) so the recording rules join the two.
POD, NAMESPACE, EXPERIMENT = "lr-warmup-2-train-0-x7k2p", "team-a", "lr-warmup-2"
# What Grafana puts in for its built-in variables; the rate window spans 4 of the 1 s scrapes.
RATE_INTERVAL = "10s"


def _fixtures_dir() -> Path:
    local = REPO.parent / "shared" / "fixtures" / "dcgm"
    return local if local.exists() else Path("/work/shared/fixtures/dcgm")


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(OUTPUT.glob("*.json"))}


def test_the_committed_dashboards_are_what_the_generator_writes():
    generated = render()
    assert sorted(generated) == ["proctor-experiment.json", "proctor-overview.json"]
    on_disk = {path.name: path.read_text() for path in OUTPUT.glob("*.json")}
    assert on_disk == generated, "the dashboards drifted: run `make generate` and commit them"


def _helm_template(*sets: str) -> list[dict[str, Any]]:
    helm = BIN / "helm"
    if not helm.exists():
        raise AssertionError(f"{helm} is missing: run `make setup` (scripts/install-kube-tools.sh)")
    args = [str(helm), "template", "proctor", str(CHART), "--namespace", "ml-platform"]
    for value in sets:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _dashboard_maps(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "ConfigMap"
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "dashboards"
    }


@pytest.mark.slow
def test_the_chart_ships_each_dashboard_as_a_configmap_for_the_grafana_sidecar():
    assert _dashboard_maps(_helm_template()) == {}, "dashboards are off by default"

    maps = _dashboard_maps(_helm_template("monitoring.dashboards.enabled=true"))
    assert sorted(maps) == ["proctor-dashboard-experiment", "proctor-dashboard-overview"]
    shipped = {}
    for configmap in maps.values():
        meta = configmap["metadata"]
        assert meta["namespace"] == "ml-platform"
        assert meta["labels"]["grafana_dashboard"] == "1"
        assert meta["labels"]["app.kubernetes.io/instance"] == "proctor"
        [(key, text)] = configmap["data"].items()
        shipped[key] = text
    committed = {path.name: path.read_text() for path in OUTPUT.glob("*.json")}
    assert shipped == {name: text.rstrip("\n") for name, text in committed.items()}

    maps = _dashboard_maps(
        _helm_template(
            "monitoring.dashboards.enabled=true",
            "monitoring.dashboards.namespace=grafana",
            "monitoring.dashboards.labels.team=ml",
            "monitoring.dashboards.annotations.grafana_folder=Proctor",
        )
    )
    for configmap in maps.values():
        meta = configmap["metadata"]
        assert meta["namespace"] == "grafana"
        assert meta["labels"]["team"] == "ml"
        assert meta["annotations"] == {"grafana_folder": "Proctor"}


# ---- every query against a real Prometheus ------------------------------------------------------


@contextmanager
def _dcgm_exporter() -> Iterator[int]:
    server, port = serve_text((_fixtures_dir() / "h100-healthy.prom").read_text())
    try:
        yield port
    finally:
        server.shutdown()


def _queries(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, target) for every panel target of `board`, rows' panels included."""
    panels = list(board.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"{board['title']} / {panel['title']} has no query"
        for target in panel["targets"]:
            yield f"{board['title']} / {panel['title']} / {target['refId']}", target


def _substitute(expr: str, values: dict[str, str]) -> str:
    # Longest name first, so a name that begins another ($name, $namespace) never clobbers it.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"a variable the test does not know is left in {expr}"
    return expr


def _finite(result: list[dict[str, Any]]) -> list[float]:
    samples = [s for series in result for s in series.get("values", [series.get("value")])]
    return [float(v) for _, v in samples if math.isfinite(float(v))]


def _experiment_manifest(tmp: Path, metrics_port: int) -> dict[str, Any]:
    manifest = digits_experiment(
        EXPERIMENT,
        tmp,
        # Only L0 runs: a real pyramid layer Job, without the minutes of the whole pyramid.
        validation={
            "layers": {
                "l1": {"enabled": False},
                "l2": {"enabled": False},
                "l3": {"enabled": False},
            }
        },
        # Long enough for many scrapes and several checkpoints, then the run ends (its GPU time
        # is counted by outcome).
        training={"budget": {"maxSteps": 10_000_000, "maxDuration": "20s"}},
        # The sidecar would spend the 2 cores this test shares; the anomaly is posted below.
        watchdog={"enabled": False, "metricSources": {"trainerMetricsPort": metrics_port}},
    )
    manifest["metadata"]["namespace"] = NAMESPACE
    return manifest


def _get(cluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        cluster.kubectl("get", *args, "-n", NAMESPACE, "-o", "json").stdout
    )
    return result


def _status(cluster) -> dict[str, Any]:
    return _get(cluster, f"exp/{EXPERIMENT}").get("status") or {}


def _trainer_address(cluster, metrics_port: int) -> str | None:
    """Where the experiment's trainer serves /metrics, once its pod runs."""
    pods = _get(cluster, "pods", "-l", f"job-name={EXPERIMENT}-train")["items"]
    running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
    if not running:
        return None
    return f"{running[0]['status'].get('podIP') or '127.0.0.1'}:{metrics_port}"


def _post_anomaly(cluster) -> None:
    """What the watchdog does on a finding: an anomaly Event on the Experiment."""
    experiment = _get(cluster, f"exp/{EXPERIMENT}")
    anomaly = Anomaly(
        kind="LossSpike",
        severity="Warning",
        time=datetime.now(UTC),
        step=int(experiment["status"]["training"]["step"]),
        message="loss jumped 8x over its recent median",
    )
    event = anomaly_event(experiment, anomaly, f"{EXPERIMENT}.lossspike.1")
    cluster.kubectl("create", "-f", "-", input=json.dumps(event))


@pytest.mark.slow
@pytest.mark.kubectl
@pytest.mark.timeout(180)
def test_every_dashboard_query_returns_data_from_a_real_prometheus(tmp_path):
    assert RULES.exists(), f"{RULES} is missing: the recording rules the dashboards read"
    start = time.time()
    metrics_port = free_port()
    for part in ("cluster", "prometheus"):
        (tmp_path / part).mkdir()
    trainer_targets = tmp_path / "trainer-targets.json"
    trainer_targets.write_text("[]")
    with (
        running_cluster(tmp_path / "cluster") as cluster,
        _dcgm_exporter() as dcgm_port,
    ):
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("create", "namespace", NAMESPACE)
        operator = OperatorProcess(cluster, tmp_path / "operator.log", "--namespace", NAMESPACE)
        operator.start()
        scrape_configs = [
            {
                "job_name": "dcgm-exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{dcgm_port}"]}],
            },
            # As the chart's ServiceMonitor scrapes it: the target carries the operator's own
            # namespace, and honor_labels keeps each series' experiment namespace.
            {
                "job_name": "proctor-operator",
                "honor_labels": True,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{operator.metrics_port}"],
                        "labels": {"namespace": "proctor-system", "pod": "proctor-operator-0"},
                    }
                ],
            },
            # Discovered once the pod runs, as Kubernetes discovery would, with the pod's labels.
            {
                "job_name": "proctor-trainer",
                "file_sd_configs": [{"files": [str(trainer_targets)], "refresh_interval": "1s"}],
            },
        ]
        try:
            with prometheus(
                tmp_path / "prometheus", [], scrape_configs=scrape_configs, rule_files=[RULES]
            ) as prom:
                apply(cluster, _experiment_manifest(tmp_path, metrics_port))
                address = wait_for(
                    lambda: _trainer_address(cluster, metrics_port), 90, "the trainer's pod"
                )
                trainer_targets.write_text(
                    json.dumps(
                        [{"targets": [address], "labels": {"namespace": NAMESPACE, "pod": POD}}]
                    )
                )
                wait_for(
                    lambda: (_status(cluster).get("training") or {}).get("step"),
                    60,
                    "training progress in status",
                )
                _post_anomaly(cluster)
                wait_for(
                    lambda: _status(cluster).get("phase") in ("Succeeded", "Failed"),
                    90,
                    "the run's end",
                )
                status = _status(cluster)
                assert status["phase"] == "Succeeded", (status, operator.output()[-3000:])
                assert status["anomalyCount"] == 1, status
                # The run's end reaches Prometheus (1 s scrapes), then the evaluation.
                prom.wait_for('proctor_operator_gpu_seconds_total{outcome="Succeeded"}', 15)
                prom.wait_for('proctor_operator_experiments{phase="Succeeded"} == 1', 15)
                time.sleep(2)  # so a range query's last 1 s step, too, falls after the run's end
                _evaluate_every_query(prom, start, time.time())
        finally:
            operator.stop()


def _evaluate_every_query(prom, start: float, end: float) -> None:
    window = f"{math.ceil(end - start)}s"
    values = {"__rate_interval": RATE_INTERVAL, "__interval": "1s", "__range": window}
    boards = _dashboards()

    # The per-experiment dashboard's variables, as Grafana resolves them: namespace first.
    experiment_board = boards["proctor-experiment.json"]
    variables = {v["name"]: v for v in experiment_board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for name, wanted in (("namespace", NAMESPACE), ("experiment", EXPERIMENT)):
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variables[name]["query"])
        assert found, variables[name]["query"]
        match, label = found.groups()
        options = prom.label_values(label, _substitute(match, values), start, end)
        assert wanted in options, (name, options)
        values[name] = wanted

    empty, evaluated = [], {}
    for board in boards.values():
        for where, target in _queries(board):
            expr = _substitute(target["expr"], values)
            if target.get("instant"):
                result = prom.query_at(expr, end)
            else:
                result = prom.query_range(expr, start, end, step=1)
            evaluated[where] = result
            if not _finite(result):
                empty.append(f"{where}: {expr}")
        for annotation in board.get("annotations", {}).get("list", []):
            if "expr" in annotation:
                expr = _substitute(annotation["expr"], values)
                result = prom.query_range(expr, start, end, step=1)
                evaluated[f"{board['title']} / annotation {annotation['name']}"] = result
                if not _finite(result):
                    empty.append(f"annotation {annotation['name']}: {expr}")
    assert not empty, "queries that returned no data:\n" + "\n".join(empty)

    # What the run should show, beyond "something": the layer passed, the run succeeded, the
    # posted anomaly is on the timeline and marked on the experiment's panels.
    def labels(where: str, label: str) -> set[str]:
        return {series["metric"].get(label, "") for series in evaluated[where]}

    pass_rate = evaluated["Proctor / Overview / Pyramid pass rate by layer / A"]
    assert {s["metric"]["layer"]: float(s["value"][1]) for s in pass_rate} == {"L0": 1.0}
    assert labels("Proctor / Overview / GPU hours by outcome / A", "outcome") == {"Succeeded"}
    anomalies = evaluated["Proctor / Overview / Anomalies over time / A"]
    assert labels("Proctor / Overview / Anomalies over time / A", "kind") == {"LossSpike"}
    assert max(_finite(anomalies)) == 1, "the one anomaly shows as one, even as a new series"
    assert labels("Proctor / Experiment / annotation Anomalies", "severity") == {"Warning"}
    phases = evaluated["Proctor / Overview / Experiments by phase / A"]
    succeeded = next(s for s in phases if s["metric"]["phase"] == "Succeeded")
    assert max(float(v) for _, v in succeeded["values"]) == 1, succeeded
    age = _finite(evaluated["Proctor / Experiment / Checkpoint age / A"])
    assert 0 <= min(age) < 60, "a checkpoint was written seconds before"
