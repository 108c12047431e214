"""The few panel shapes Proctor's dashboards use, so both dashboards look and behave alike."""

from __future__ import annotations

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    timeseries,
)
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as dashboard_model

# Every query goes to the Prometheus the viewer picks in the `datasource` variable: an installer's
# Prometheus data source has no uid we could know in advance.
DATASOURCE = dashboard_model.DataSourceRef(type_val="prometheus", uid="${datasource}")
HEIGHT = 8
HALF = 12  # of Grafana's 24 grid columns


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def query(expr: str, legend: str = "", *, instant: bool = False) -> prometheus.Dataquery:
    """A Prometheus target; `instant` for panels that show one value per series (bar gauges)."""
    target = prometheus.Dataquery().expr(expr).datasource(DATASOURCE).ref_id("A")
    if legend:
        target = target.legend_format(legend)
    return target.instant() if instant else target.range()


def time_series(
    title: str, description: str, unit: str, *targets: prometheus.Dataquery
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(HEIGHT)
        .span(HALF)
        .legend(
            common.VizLegendOptions()
            .display_mode(common_model.LegendDisplayMode.LIST)
            .placement(common_model.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    for index, target in enumerate(targets):
        panel = panel.with_target(target.ref_id(chr(ord("A") + index)))
    return panel


def stacked() -> common.StackingConfig:
    return common.StackingConfig().mode(common_model.StackingMode.NORMAL)


def bars_per_series(
    title: str, description: str, unit: str, target: prometheus.Dataquery
) -> bargauge.Panel:
    """One bar per series of an instant query (a layer, an outcome)."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(HEIGHT)
        .span(HALF)
        .min(0)
        .display_mode(common_model.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_model.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(target)
    )


def single_value(
    title: str,
    description: str,
    unit: str,
    target: prometheus.Dataquery,
    thresholds: list[tuple[float | None, str]],
) -> stat.Panel:
    """A big number coloured by `thresholds`: (lower bound, colour), the first bound None."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(HEIGHT)
        .span(HALF)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common_model.BigValueColorMode.BACKGROUND)
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode(dashboard_model.ThresholdsMode.ABSOLUTE)
            .steps([dashboard_model.Threshold(value=v, color=c) for v, c in thresholds])
        )
        .with_target(target)
    )
