"""The operator's own Prometheus metrics (`proctor_operator_*`).

What the alerts and dashboards read, and where each value comes from:

- `proctor_operator_experiments{phase}` and
  `proctor_operator_experiment_phase_since_timestamp_seconds{namespace,experiment,phase}`: computed
  at scrape time from the Experiments the operator last saw. The time a phase was entered is read
  back from the status (conditions' lastTransitionTime, the training start time, the creation
  time), never from the operator's memory, so a restarted operator reports the same value.
- `proctor_operator_anomalies_total` and `proctor_operator_gpu_seconds_total`: counted from what a
  successful status write adds to the status it replaces. The status on the API server is the
  memory: an anomaly already there, or a phase already ended, counts nothing on a resync, a
  refused (stale) write counts nothing, and a restarted operator counts nothing twice.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import ValidationError

from proctor.api.v1alpha1 import (
    Anomaly,
    ConditionStatus,
    Experiment,
    ExperimentConditionType,
    ExperimentPhase,
    ExperimentStatus,
    LayerName,
    find_condition,
)

_RUN_ENDED = (ExperimentPhase.SUCCEEDED, ExperimentPhase.FAILED)
_ENDED = (*_RUN_ENDED, ExperimentPhase.CONCLUDED)


@dataclass(frozen=True)
class _Seen:
    phase: str
    since: float | None


class PhaseCollector(Collector):
    """Experiments by phase, and when each entered its phase, at scrape time from what the
    operator last saw. `observe(..., None)` forgets a deleted experiment (its series go)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._lock = threading.Lock()

    def observe(
        self, namespace: str, name: str, phase: str | None, since: float | None = None
    ) -> None:
        with self._lock:
            if phase is None:
                self._seen.pop((namespace, name), None)
            else:
                self._seen[(namespace, name)] = _Seen(phase, since)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            seen = dict(self._seen)
        counts = Tally(s.phase for s in seen.values())
        family = GaugeMetricFamily(
            "proctor_operator_experiments", "Experiments by phase.", labels=["phase"]
        )
        for phase in ExperimentPhase:
            family.add_metric([phase.value], counts.get(phase.value, 0))
        yield family
        since = GaugeMetricFamily(
            "proctor_operator_experiment_phase_since_timestamp_seconds",
            "Unix time the experiment entered its current phase, from its status.",
            labels=["namespace", "experiment", "phase"],
        )
        for (namespace, name), entry in sorted(seen.items()):
            if entry.since is not None:
                since.add_metric([namespace, name, entry.phase], entry.since)
        yield since


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.phases = PhaseCollector()
        self.registry.register(self.phases)
        self.layer_seconds = Histogram(
            "proctor_operator_layer_duration_seconds",
            "Wall time of a pyramid layer's Job, from start to outcome.",
            ["layer", "outcome"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600),
            registry=self.registry,
        )
        # Every (layer, outcome) series exists from the start at 0, so increase() over a window
        # counts a series' first run too (a series born at 1 reads as no increase).
        for layer in LayerName:
            for outcome in ("Passed", "Failed"):
                self.layer_seconds.labels(layer.value, outcome)
        self.checks = Counter(
            "proctor_operator_checks",
            "Pyramid check outcomes.",
            ["layer", "check", "verdict"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "proctor_operator_reconcile_errors",
            "Reconciles that failed, by resource and kind (transient, rejected, internal).",
            ["resource", "kind"],
            registry=self.registry,
        )
        self.reconciles = Counter(
            "proctor_operator_reconciles",
            "Reconciles run, by resource.",
            ["resource"],
            registry=self.registry,
        )
        self.anomalies = Counter(
            "proctor_operator_anomalies",
            "Watchdog anomalies newly recorded in an Experiment's status.",
            ["namespace", "experiment", "kind", "severity"],
            registry=self.registry,
        )
        self.gpu_seconds = Counter(
            "proctor_operator_gpu_seconds",
            "GPU-seconds of training runs (GPUs per node x nodes x wall time), counted when the "
            "run ends, by outcome (Succeeded or Failed).",
            ["outcome"],
            registry=self.registry,
        )
        # Which anomaly series each experiment has, so that deleting it removes them (bounded
        # cardinality: a counter per experiment must not outlive the experiment).
        self._anomaly_series: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._anomaly_lock = threading.Lock()

    def observe_experiment(self, obj: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        """Note the experiment's phase and when it entered it; `status` defaults to the object's."""
        meta = obj["metadata"]
        status = obj.get("status") if status is None else status
        parsed = _status(status)
        if parsed is None:
            return
        phase = parsed.phase or ExperimentPhase.PENDING
        entered = phase_entered(parsed, _time(meta.get("creationTimestamp")))
        since = entered.timestamp() if entered is not None else None
        self.phases.observe(meta["namespace"], meta["name"], phase.value, since)

    def status_written(self, obj: dict[str, Any], written: dict[str, Any]) -> None:
        """Count what the successful write of `written` over `obj`'s status added: new anomalies,
        and the run's GPU-seconds when this write ends it."""
        meta = obj["metadata"]
        old, new = _status(obj.get("status")), _status(written)
        if new is None:
            return
        old = old or ExperimentStatus()
        for anomaly in new_anomalies(old, new):
            key = (anomaly.kind.value, anomaly.severity.value)
            self.anomalies.labels(meta["namespace"], meta["name"], *key).inc()
            with self._anomaly_lock:
                self._anomaly_series.setdefault((meta["namespace"], meta["name"]), set()).add(key)
        if new.phase in _RUN_ENDED and old.phase not in _ENDED:
            self.gpu_seconds.labels(new.phase.value).inc(run_gpu_seconds(obj, new))

    def forget_experiment(self, namespace: str, name: str) -> None:
        """The experiment is gone: its per-experiment series go with it."""
        self.phases.observe(namespace, name, None)
        with self._anomaly_lock:
            series = self._anomaly_series.pop((namespace, name), set())
        for kind, severity in series:
            self.anomalies.remove(namespace, name, kind, severity)


def phase_entered(status: ExperimentStatus, created: datetime | None) -> datetime | None:
    """When the experiment entered `status.phase`, read from the status alone (restart-safe).

    Each phase has a mark the reconciler leaves when it enters it: Validating sets Validated to
    Unknown, Queued sets Trained to Unknown, Training records the Job's start (Kubernetes resets
    a Job's startTime when Kueue admits it), a run's end moves Trained (or, for a pyramid or spec
    failure, Validated) to True or False, and a conclusion sets Concluded. Pending has none: it
    lasts from creation. A Training pass preempted back to Queued keeps Trained Unknown, so its
    Queued time is the first admission wait's start; the stuck-phase alert may then fire early.
    """
    phase = status.phase or ExperimentPhase.PENDING

    def transition(kind: ExperimentConditionType) -> datetime | None:
        condition = find_condition(status.conditions, kind)
        return condition.last_transition_time if condition else None

    training = status.training
    found: datetime | None
    if phase == ExperimentPhase.BLOCKED:
        found = transition(ExperimentConditionType.BLOCKED)
    elif phase == ExperimentPhase.VALIDATING:
        found = transition(ExperimentConditionType.VALIDATED)
    elif phase == ExperimentPhase.QUEUED:
        found = transition(ExperimentConditionType.TRAINED)
    elif phase == ExperimentPhase.TRAINING:
        found = (training.start_time if training else None) or transition(
            ExperimentConditionType.TRAINED
        )
    elif phase == ExperimentPhase.SUCCEEDED:
        found = transition(ExperimentConditionType.TRAINED)
    elif phase == ExperimentPhase.FAILED:
        failed = [
            c.last_transition_time
            for c in status.conditions
            if c.status == ConditionStatus.FALSE
            and c.type in (ExperimentConditionType.VALIDATED, ExperimentConditionType.TRAINED)
        ]
        found = max(failed, default=None)
    elif phase == ExperimentPhase.CONCLUDED:
        found = transition(ExperimentConditionType.CONCLUDED)
    else:
        found = None
    return found or created


def new_anomalies(old: ExperimentStatus, new: ExperimentStatus) -> list[Anomaly]:
    """Anomalies in `new` that `old` did not hold. The list keeps the last 20, so more than 20
    new ones in a single write are counted as the 20 the status keeps."""
    known = {(a.kind, a.time) for a in old.anomalies}
    return [a for a in new.anomalies if (a.kind, a.time) not in known]


def run_gpu_seconds(obj: dict[str, Any], status: ExperimentStatus) -> float:
    """GPUs per node x nodes x the run's wall time (start to completion); 0 when no training
    ran (a failed pyramid, an invalid spec) or the spec cannot be read."""
    training = status.training
    if training is None or training.start_time is None or training.completion_time is None:
        return 0.0
    try:
        spec = Experiment.model_validate(obj).spec.training
    except ValidationError:
        return 0.0
    wall = (training.completion_time - training.start_time).total_seconds()
    return max(wall, 0.0) * spec.resources.gpus * spec.nodes


def _status(status: dict[str, Any] | None) -> ExperimentStatus | None:
    try:
        return ExperimentStatus.model_validate(status or {})
    except ValidationError:
        return None  # not ours to report on; the reconcile says what is wrong with it


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
