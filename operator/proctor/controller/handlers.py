"""The kopf handlers: thin. Each turns a watch event into a reconcile of the object it concerns;
the Reconciler and the pure reconcilers decide everything.

Run with `proctor operator` (which sets the options below from flags) or
`kopf run -m proctor.controller.handlers` (options from PROCTOR_* variables).

No change handlers, timers or daemons, and so no finalizers: kopf keeps no state on the objects
(its timers would add a finalizer to each), the status is the whole record, and deletion is
Kubernetes garbage collection through ownerReferences, so an Experiment can be deleted even while
the operator is down. Time-based work (a retry that comes due, training progress) is done by one
resync loop over the objects the watch events showed unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from proctor.api.anomaly_events import ANOMALY_LABEL, EXPERIMENT_LABEL
from proctor.api.v1alpha1 import GROUP, VERSION
from proctor.controller import names
from proctor.controller.metrics import OperatorMetrics
from proctor.controller.reconciler import Reconciler
from proctor.controller.settings import ControllerSettings
from proctor.kube import KubeClient

logger = logging.getLogger(__name__)
MANAGED = {names.MANAGED_BY: names.MANAGER}


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    return reconciler


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Watch only what Proctor made (and the watchdog's anomaly Events), filtered by the server.
    settings.watching.label_selectors["jobs"] = f"{names.MANAGED_BY}={names.MANAGER}"
    settings.watching.label_selectors["events"] = ANOMALY_LABEL
    settings.posting.enabled = False  # Proctor posts its own Events, one per transition
    # One cluster-wide peering object even when watching a list of namespaces: namespaced
    # peering would pause the whole operator while any watched namespace lacks its own object.
    settings.peering.clusterwide = True
    metrics = OperatorMetrics()
    port = memo.get("metrics_port") or os.environ.get("PROCTOR_METRICS_PORT")
    if port:
        start_http_server(int(port), registry=metrics.registry)
        logger.info("operator metrics on :%s/metrics", port)
    controller_settings = memo.get("settings") or ControllerSettings.from_env()
    reconciler = Reconciler(KubeClient.from_environment(), controller_settings, metrics)
    memo.reconciler = reconciler
    memo.resync = asyncio.create_task(_resync_forever(reconciler), name="proctor-resync")


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    reconciler = memo.get("reconciler")
    if reconciler is not None:
        reconciler.stop()  # a resync pass in its thread ends after the object it is on
    task = memo.get("resync")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _resync_forever(reconciler: Reconciler) -> None:
    """Reconcile every unfinished object (and any whose last pass failed) every
    `resync_seconds`: retries that came due, training progress, events a watch lost."""
    while True:
        await asyncio.sleep(reconciler.settings.resync_seconds)
        try:
            await asyncio.to_thread(reconciler.resync)
        except Exception:  # never let the loop die: it is what retries everything else
            logger.exception("resync pass failed; trying again at the next one")


@kopf.on.event(GROUP, VERSION, "validationpyramids")
def pyramid_changed(
    type: str,
    namespace: str | None,
    name: str,
    labels: Mapping[str, str],
    status: Mapping[str, Any],
    body: kopf.Body,
    memo: Any,
    **_: Any,
) -> None:
    reconciler = _reconciler(memo)
    if type == "DELETED":
        reconciler.forget("ValidationPyramid", namespace or "", name)
        return
    reconciler.track("ValidationPyramid", namespace, name, status.get("phase"))
    reconciler.pyramid(namespace, name, version=body.metadata.get("resourceVersion"))
    if names.EXPERIMENT in labels:  # the owning Experiment mirrors the pyramid's progress
        reconciler.experiment(namespace, labels[names.EXPERIMENT])


@kopf.on.event(GROUP, VERSION, "experiments")
def experiment_changed(
    type: str,
    namespace: str | None,
    name: str,
    status: Mapping[str, Any],
    body: kopf.Body,
    memo: Any,
    **_: Any,
) -> None:
    reconciler = _reconciler(memo)
    if type == "DELETED":
        reconciler.neighbours.gone(namespace or "", name, body.metadata.uid)
        reconciler.forget("Experiment", namespace or "", name)
        return
    reconciler.neighbours.seen(dict(body))  # kopf's Body is a read-only view: a plain copy
    reconciler.track("Experiment", namespace, name, status.get("phase"))
    reconciler.experiment(namespace, name, version=body.metadata.get("resourceVersion"))


# Pods are read, not watched: a Job's status follows its pods (active, succeeded, failed), so
# its events say when one ended, and what a pod alone shows (Pending and unschedulable, its IP)
# the resync reads. Watching them too doubled the events, and with 1,000 Experiments at once
# the operator's peak memory went from 243 to 321 MiB holding their bodies
# (bench/operator_scale.py).
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def job_changed(namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any) -> None:
    _owner_changed(_reconciler(memo), namespace, labels)


@kopf.on.event("", "v1", "events", labels={ANOMALY_LABEL: kopf.PRESENT})
def anomaly_reported(
    type: str, namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    if type != "DELETED" and EXPERIMENT_LABEL in labels:
        _reconciler(memo).experiment(namespace, labels[EXPERIMENT_LABEL], anomalies=True)


def _owner_changed(
    reconciler: Reconciler, namespace: str | None, labels: Mapping[str, str]
) -> None:
    component = labels.get(names.COMPONENT)
    if component == names.VALIDATION and names.PYRAMID in labels:
        reconciler.pyramid(namespace, labels[names.PYRAMID])
    elif component == names.TRAINING and names.EXPERIMENT in labels:
        reconciler.experiment(namespace, labels[names.EXPERIMENT], child=True)
