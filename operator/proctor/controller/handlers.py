"""The kopf handlers: thin. Each turns a watch event or a timer tick into a reconcile of the
object it concerns; the Reconciler and the pure reconcilers decide everything.

Run with `proctor operator` (which sets the options below from flags) or
`kopf run -m proctor.controller.handlers` (options from PROCTOR_* variables).

No change handlers and no finalizers: kopf keeps no state on the objects, the status is the whole
record, and deletion is Kubernetes garbage collection through ownerReferences, so an Experiment can
be deleted even while the operator is down.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from proctor.api.anomaly_events import ANOMALY_LABEL, EXPERIMENT_LABEL
from proctor.api.v1alpha1 import GROUP, VERSION
from proctor.controller import names
from proctor.controller.kube import KubeClient
from proctor.controller.metrics import OperatorMetrics
from proctor.controller.reconciler import Reconciler
from proctor.controller.settings import ControllerSettings

logger = logging.getLogger(__name__)
SETTINGS = ControllerSettings.from_env()  # timers take their interval when this module loads
MANAGED = {names.MANAGED_BY: names.MANAGER}


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    return reconciler


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Watch only what Proctor made (and the watchdog's anomaly Events), filtered by the server.
    settings.watching.label_selectors["jobs"] = f"{names.MANAGED_BY}={names.MANAGER}"
    settings.watching.label_selectors["pods"] = f"{names.MANAGED_BY}={names.MANAGER}"
    settings.watching.label_selectors["events"] = ANOMALY_LABEL
    settings.posting.enabled = False  # Proctor posts its own Events, one per transition
    metrics = OperatorMetrics()
    port = memo.get("metrics_port")
    if port:
        start_http_server(int(port), registry=metrics.registry)
        logger.info("operator metrics on :%s/metrics", port)
    controller_settings = memo.get("settings") or SETTINGS
    memo.reconciler = Reconciler(KubeClient.from_environment(), controller_settings, metrics)
    memo.metrics = metrics


@kopf.on.event(GROUP, VERSION, "validationpyramids")
def pyramid_changed(
    type: str, namespace: str | None, name: str, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    reconciler = _reconciler(memo)
    if type == "DELETED":
        reconciler.forget("ValidationPyramid", namespace or "", name)
        return
    reconciler.pyramid(namespace, name)
    if names.EXPERIMENT in labels:  # the owning Experiment mirrors the pyramid's progress
        reconciler.experiment(namespace, labels[names.EXPERIMENT])


@kopf.on.event(GROUP, VERSION, "experiments")
def experiment_changed(type: str, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    reconciler = _reconciler(memo)
    if type == "DELETED":
        reconciler.forget("Experiment", namespace or "", name)
        return
    reconciler.experiment(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def job_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
    _owner_changed(_reconciler(memo), namespace, labels)


@kopf.on.event("", "v1", "pods", labels=MANAGED)
def pod_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
    _owner_changed(_reconciler(memo), namespace, labels)


@kopf.on.event("", "v1", "events", labels={ANOMALY_LABEL: kopf.PRESENT})
def anomaly_reported(
    type: str, namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    if type != "DELETED" and EXPERIMENT_LABEL in labels:
        _reconciler(memo).experiment(namespace, labels[EXPERIMENT_LABEL], anomalies=True)


def _pyramid_unfinished(status: Mapping[str, Any], **_: Any) -> bool:
    return status.get("phase") not in ("Passed", "Failed")


def _experiment_unfinished(status: Mapping[str, Any], **_: Any) -> bool:
    return status.get("phase") not in ("Succeeded", "Failed", "Concluded")


@kopf.timer(
    GROUP, VERSION, "validationpyramids", interval=SETTINGS.resync_seconds, when=_pyramid_unfinished
)
def pyramid_resync(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Retries after backoff, and anything a lost watch event left behind."""
    _reconciler(memo).pyramid(namespace, name)


@kopf.timer(
    GROUP, VERSION, "experiments", interval=SETTINGS.resync_seconds, when=_experiment_unfinished
)
def experiment_resync(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Training progress and anomalies at a bounded rate, and anything a lost event left."""
    _reconciler(memo).experiment(namespace, name)


def _owner_changed(
    reconciler: Reconciler, namespace: str | None, labels: Mapping[str, str]
) -> None:
    component = labels.get(names.COMPONENT)
    if component == names.VALIDATION and names.PYRAMID in labels:
        reconciler.pyramid(namespace, labels[names.PYRAMID])
    elif component == names.TRAINING and names.EXPERIMENT in labels:
        reconciler.experiment(namespace, labels[names.EXPERIMENT])
