"""What a cluster's installation fills in where an Experiment leaves a choice open: a Kueue queue,
the Prometheus server that has the GPUs' DCGM series, and policy thresholds (an MFU floor, a
checkpoint age). The platform team sets them once (Helm values -> PROCTOR_* variables); an
Experiment that states its own value always wins."""

from __future__ import annotations

from proctor.api.v1alpha1 import Experiment
from proctor.api.v1alpha1.experiment import WatchdogThresholds
from proctor.controller.settings import ControllerSettings


def with_operator_defaults(experiment: Experiment, settings: ControllerSettings) -> Experiment:
    """`experiment` with the installation's defaults in the fields it leaves empty. Only fields
    with no default of their own in the API can take one: the API server has already filled
    the others, so an explicit value could not be told from a defaulted one."""
    spec = experiment.spec
    training = spec.training
    if training.queue_name is None and settings.default_queue:
        training = training.model_copy(update={"queue_name": settings.default_queue})
    sources = spec.watchdog.metric_sources
    if (
        settings.prometheus_url
        and sources.prometheus_url is None
        and sources.dcgm_exporter_url is None
    ):
        sources = sources.model_copy(update={"prometheus_url": settings.prometheus_url})
    thresholds = spec.watchdog.thresholds
    defaults = WatchdogThresholds.model_validate(settings.default_thresholds)
    unset = {
        field: getattr(defaults, field)
        for field in defaults.model_fields_set
        if getattr(thresholds, field) is None
    }
    if unset:
        thresholds = thresholds.model_copy(update=unset)
    watchdog = spec.watchdog.model_copy(
        update={"metric_sources": sources, "thresholds": thresholds}
    )
    return experiment.model_copy(
        update={"spec": spec.model_copy(update={"training": training, "watchdog": watchdog})}
    )
