"""The per-experiment dashboard: one training run's loss, speed, GPUs and checkpoints, with the
watchdog's anomalies marked on every panel."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

from dashboards import panels
from dashboards.panels import query
from dashboards.promql import EXPERIMENT, events, selector

UID = "proctor-experiment"
ANOMALIES = selector("proctor_operator_anomalies_total", EXPERIMENT)
# The fields Grafana's Prometheus annotation query reads beyond `expr`: the SDK types only the
# fields every data source shares, so these are added to the JSON when it is written.
ANOMALY_ANNOTATION_FIELDS = {
    "titleFormat": "{{kind}} ({{severity}})",
    "textFormat": "The watchdog reported {{kind}}; the bundle is in the Experiment's "
    "status.anomalies.",
    "tagKeys": "kind,severity",
    "useValueForTime": False,
}


def _variable(name: str, label: str, query_text: str) -> dashboard.QueryVariable:
    # Values come from the trainer's own series: an experiment appears once it trains.
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(panels.DATASOURCE)
        .query(query_text)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def _trainer(metric: str) -> str:
    """A per-rank trainer series summed over the experiment's pods."""
    return f"sum({selector(metric, EXPERIMENT)})"


def build() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("Proctor / Experiment")
        .uid(UID)
        .description("One experiment's training run: loss, throughput, MFU, GPUs, checkpoints.")
        .tags(["proctor"])
        .time("now-6h", "now")
        .refresh("30s")
        .with_variable(panels.datasource_variable())
        .with_variable(
            _variable("namespace", "Namespace", "label_values(proctor_train_step, namespace)")
        )
        .with_variable(
            _variable(
                "experiment",
                "Experiment",
                'label_values(proctor_train_step{namespace="$namespace"}, experiment)',
            )
        )
        .annotation(
            dashboard.AnnotationQuery()
            .name("Anomalies")
            .datasource(panels.DATASOURCE)
            .enable(True)
            .icon_color("red")
            .expr(f"sum by (kind, severity) ({events(ANOMALIES, '$__rate_interval')}) > 0")
        )
        .with_panel(
            panels.time_series(
                "Loss",
                "Training loss at the latest logged step, per pod (ranks of one run agree).",
                "short",
                query(selector("proctor_train_loss", EXPERIMENT), "{{pod}}"),
            )
        )
        .with_panel(
            panels.time_series(
                "Throughput",
                "Samples and tokens per second over the trainer's last logging window, summed "
                "over the run's pods.",
                "short",
                query(_trainer("proctor_train_samples_per_second"), "samples/s"),
                query(_trainer("proctor_train_tokens_per_second"), "tokens/s"),
            )
        )
        .with_panel(
            panels.time_series(
                "MFU",
                "Model FLOPs utilisation: achieved FLOP/s over the hardware's peak (PaLM's "
                "definition).",
                "percentunit",
                query(selector("proctor:experiment_mfu:ratio", EXPERIMENT), "MFU"),
            ).min(0)
        )
        .with_panel(
            panels.time_series(
                "GPU utilisation and tensor activity",
                "From dcgm-exporter, joined to the training pods: the share of time a kernel "
                "ran, and the share of cycles the tensor cores were busy. High utilisation with "
                "low tensor activity means the GPU runs, but not matrix maths.",
                "percentunit",
                query(
                    selector("proctor:experiment_gpu_utilization:ratio", EXPERIMENT),
                    "utilisation {{pod}} GPU {{gpu}}",
                ),
                query(
                    selector("proctor:experiment_tensor_active:ratio", EXPERIMENT),
                    "tensor activity {{pod}} GPU {{gpu}}",
                ),
            )
            .min(0)
            .max(1)
        )
        .with_panel(
            panels.time_series(
                "GPU memory",
                "Share of the GPUs' framebuffer in use, from dcgm-exporter.",
                "percentunit",
                query(
                    selector("proctor:experiment_framebuffer_used:ratio", EXPERIMENT),
                    "{{pod}} GPU {{gpu}}",
                ),
            )
            .min(0)
            .max(1)
        )
        .with_panel(
            panels.single_value(
                "Checkpoint age",
                "Time since the newest complete checkpoint. A run with none yet shows no value.",
                "s",
                # The gauge reads 0 until the first checkpoint: `> 0` keeps that from showing
                # as an age of 56 years.
                query(
                    "time() - max("
                    f"{selector('proctor_train_last_checkpoint_timestamp_seconds', EXPERIMENT)}"
                    " > 0)",
                    "age",
                ),
                [(None, "green"), (3600, "orange"), (4 * 3600, "red")],
            )
        )
    )
