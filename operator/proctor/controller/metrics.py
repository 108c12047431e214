"""The operator's own Prometheus metrics (`proctor_operator_*`)."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from proctor.api.v1alpha1 import ExperimentPhase


class PhaseCollector(Collector):
    """Experiments by phase, counted at scrape time from what the operator last saw."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def observe(self, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            if phase is None:
                self._phases.pop((namespace, name), None)
            else:
                self._phases[(namespace, name)] = phase

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            counts = Tally(self._phases.values())
        family = GaugeMetricFamily(
            "proctor_operator_experiments", "Experiments by phase.", labels=["phase"]
        )
        for phase in ExperimentPhase:
            family.add_metric([phase.value], counts.get(phase.value, 0))
        yield family


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
