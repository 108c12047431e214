"""The overview dashboard: what every experiment in the cluster is doing, for a platform team."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import DashboardLinkType

from dashboards import panels
from dashboards.panels import query
from dashboards.promql import events

UID = "proctor-overview"
LAYER_RUNS = "proctor_operator_layer_duration_seconds_count"
# `outcome` is the layer's final phase as the pyramid reconciler records it: Passed or Failed.
LAYER_PASSES = f'{LAYER_RUNS}{{outcome="Passed"}}'


def _pass_rate() -> str:
    passed = f"sum by (layer) ({events(LAYER_PASSES, '$__range')})"
    runs = f"sum by (layer) ({events(LAYER_RUNS, '$__range')})"
    # The operator starts every (layer, outcome) series at 0, so a layer that only failed reads
    # 0%; a layer that did not run in the range (no runs) is left off rather than shown as NaN.
    return f"{passed} / ({runs} > 0)"


def build() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("Proctor / Overview")
        .uid(UID)
        .description("Experiments, validation pyramids, anomalies and GPU time across the cluster.")
        .tags(["proctor"])
        .time("now-24h", "now")
        .refresh("1m")
        .with_variable(panels.datasource_variable())
        .link(
            dashboard.DashboardLink("Experiments")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(["proctor"])
            .as_dropdown(True)
            .keep_time(True)
        )
        .with_panel(
            panels.time_series(
                "Experiments by phase",
                "Experiments the operator knows, by status.phase.",
                "short",
                query("sum by (phase) (proctor_operator_experiments)", "{{phase}}"),
            ).stacking(panels.stacked())
        )
        .with_panel(
            panels.bars_per_series(
                "Pyramid pass rate by layer",
                "Share of the pyramid layers that finished in the time range and passed, by "
                "layer (L0 efficiency, L1 health, L2 overfit, L3 end to end).",
                "percentunit",
                query(_pass_rate(), "{{layer}}", instant=True),
            ).max(1)
        )
        .with_panel(
            panels.time_series(
                "Anomalies over time",
                "Anomalies the watchdogs reported, by kind and severity, in the trailing rate "
                "window at each point.",
                "short",
                query(
                    "sum by (kind, severity) "
                    f"({events('proctor_operator_anomalies_total', '$__rate_interval')})",
                    "{{kind}} ({{severity}})",
                ),
            ).stacking(panels.stacked())
        )
        .with_panel(
            panels.bars_per_series(
                "GPU hours by outcome",
                "GPU hours spent by training runs that ended in the time range, by outcome.",
                "h",
                query(
                    "sum by (outcome) "
                    f"({events('proctor_operator_gpu_seconds_total', '$__range')}) / 3600",
                    "{{outcome}}",
                    instant=True,
                ),
            )
        )
    )
