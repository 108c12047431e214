"""The operator's metrics, observed through the real Reconciler over an in-memory API server: what
a scrape shows after each pass, after a refused status write, a resync, a restart and a delete."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from proctor.api.anomaly_events import anomaly_event
from proctor.api.v1alpha1 import Anomaly, AnomalyKind, ExperimentStatus
from proctor.api.v1alpha1.experiment import Severity
from proctor.controller.metrics import OperatorMetrics, phase_entered
from proctor.controller.reconciler import Reconciler
from proctor.controller.settings import ControllerSettings
from proctor.kube import KubeError
from tests.unit.controller.objects import NAMESPACE, experiment

CREATED = "2026-03-04T11:00:00Z"
STARTED = datetime(2026, 3, 4, 11, 5, tzinfo=UTC)
SINCE = "proctor_operator_experiment_phase_since_timestamp_seconds"


class FakeKube:
    """The API server calls the Reconciler makes, over dicts; `refuse_status` makes the next
    status writes fail as a stale (409) write does."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.refuse_status = 0
        self.status_writes = 0
        self._versions = itertools.count(1)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta.setdefault("resourceVersion", str(next(self._versions)))
        meta.setdefault("uid", f"uid-{obj['kind']}-{meta['name']}")
        meta.setdefault("creationTimestamp", CREATED)
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def select(
        self, api_version: str, kind: str, namespace: str, selector: dict[str, str | None]
    ) -> list[dict[str, Any]]:
        def matches(obj: dict[str, Any]) -> bool:
            labels = obj["metadata"].get("labels") or {}
            return all(k in labels and (v is None or labels[k] == v) for k, v in selector.items())

        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind and ns == namespace and matches(o)
        ]

    def create(self, obj: dict[str, Any]) -> bool:
        if (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]) in self.objects:
            return False
        self.add(obj)
        return True

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.objects.pop((kind, namespace, name), None)

    def patch_status(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_status:
            self.refuse_status -= 1
            raise KubeError("409 Conflict: the object has been modified")
        meta = obj["metadata"]
        stored = self.objects[(obj["kind"], meta["namespace"], meta["name"])]
        stored["status"] = copy.deepcopy(status)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.status_writes += 1
        return copy.deepcopy(stored)

    def post_event(self, obj: dict[str, Any], reason: str, message: str, type: str) -> None:
        pass


def _sample(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _since_series(metrics: OperatorMetrics) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == SINCE
    ]


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Run:
    """One Experiment (validation skipped, 4 GPUs x 2 nodes) driven through the Reconciler."""

    def __init__(self) -> None:
        self.kube = FakeKube()
        self.settings = ControllerSettings(progress_seconds=1e-9)  # read anomalies on every pass
        self.metrics = OperatorMetrics(CollectorRegistry())
        self.reconciler = Reconciler(self.kube, self.settings, self.metrics)  # type: ignore[arg-type]
        training = copy.deepcopy(experiment()["spec"]["training"])
        training["resources"]["gpus"] = 4
        training["nodes"] = 2
        self.obj = self.kube.add(
            experiment(
                validation={"skip": {"reason": "a rerun of checked code"}}, training=training
            )
        )

    def reconcile(self) -> None:
        self.reconciler.experiment(NAMESPACE, "exp")

    def restart(self) -> None:
        """A new operator process: fresh metrics and reconciler, the same API server."""
        self.metrics = OperatorMetrics(CollectorRegistry())
        self.reconciler = Reconciler(self.kube, self.settings, self.metrics)  # type: ignore[arg-type]

    @property
    def status(self) -> dict[str, Any]:
        return self.kube.objects[("Experiment", NAMESPACE, "exp")].get("status") or {}

    def job(self) -> dict[str, Any]:
        [job] = [o for (kind, _, _), o in self.kube.objects.items() if kind == "Job"]
        return job

    def start_job(self) -> None:
        self.job()["status"] = {"active": 2, "startTime": _stamp(STARTED)}

    def fail_job(self, after: timedelta) -> None:
        finished = _stamp(STARTED + after)
        self.job()["status"] = {
            "startTime": _stamp(STARTED),
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "lastTransitionTime": finished,
                }
            ],
        }

    def report(self, kind: AnomalyKind, severity: Severity, minute: int) -> None:
        anomaly = Anomaly(
            kind=kind,
            severity=severity,
            time=STARTED + timedelta(minutes=minute),
            message=f"{kind.value} at minute {minute}",
        )
        self.kube.add(anomaly_event(self.obj, anomaly, f"exp.{kind.value.lower()}.{minute}"))


@pytest.fixture
def run() -> Run:
    return Run()


def test_the_phase_since_gauge_reports_when_training_started(run: Run) -> None:
    run.reconcile()  # creates the Job
    run.start_job()
    run.reconcile()
    assert run.status["phase"] == "Training"
    value = _sample(run.metrics, SINCE, namespace=NAMESPACE, experiment="exp", phase="Training")
    assert value == STARTED.timestamp()


def test_the_phase_since_gauge_is_the_same_after_a_restart(run: Run) -> None:
    run.reconcile()
    run.start_job()
    run.reconcile()
    before = (
        _since_series(run.metrics),
        _sample(run.metrics, SINCE, namespace=NAMESPACE, experiment="exp", phase="Training"),
    )
    run.restart()
    run.reconcile()
    after = (
        _since_series(run.metrics),
        _sample(run.metrics, SINCE, namespace=NAMESPACE, experiment="exp", phase="Training"),
    )
    assert after == before
    assert after[1] is not None


def test_a_new_experiment_is_pending_since_its_creation(run: Run) -> None:
    run.kube.refuse_status = 1  # the first pass's write fails: the status stays empty
    run.reconcile()
    created = datetime.fromisoformat(CREATED).timestamp()
    assert _sample(run.metrics, SINCE, namespace=NAMESPACE, experiment="exp", phase="Pending") == (
        created
    )
    assert _sample(run.metrics, "proctor_operator_experiments", phase="Pending") == 1


def test_deleting_the_experiment_removes_its_series(run: Run) -> None:
    run.reconcile()
    run.start_job()
    run.report(AnomalyKind.LOW_MFU, Severity.WARNING, 1)
    run.reconcile()
    assert _since_series(run.metrics)
    run.kube.delete("proctor.dev/v1alpha1", "Experiment", NAMESPACE, "exp")
    run.reconciler.forget("Experiment", NAMESPACE, "exp")
    assert _since_series(run.metrics) == []
    assert (
        _sample(
            run.metrics,
            "proctor_operator_anomalies_total",
            namespace=NAMESPACE,
            experiment="exp",
            kind="LowMFU",
            severity="Warning",
        )
        is None
    )
    assert _sample(run.metrics, "proctor_operator_experiments", phase="Training") == 0


def _anomalies(metrics: OperatorMetrics, kind: str, severity: str) -> float | None:
    return _sample(
        metrics,
        "proctor_operator_anomalies_total",
        namespace=NAMESPACE,
        experiment="exp",
        kind=kind,
        severity=severity,
    )


def test_each_anomaly_counts_once_when_its_status_write_succeeds(run: Run) -> None:
    run.reconcile()
    run.start_job()
    run.reconcile()
    run.report(AnomalyKind.LOW_MFU, Severity.WARNING, 1)
    run.report(AnomalyKind.STALL, Severity.CRITICAL, 2)
    run.kube.refuse_status = 1
    run.reconcile()  # the write is refused: nothing was mirrored, nothing is counted
    assert _anomalies(run.metrics, "LowMFU", "Warning") is None
    run.reconcile()
    assert _anomalies(run.metrics, "LowMFU", "Warning") == 1
    assert _anomalies(run.metrics, "Stall", "Critical") == 1
    run.reconcile()  # a resync adds nothing to the status
    run.report(AnomalyKind.LOW_MFU, Severity.WARNING, 3)
    run.reconcile()
    assert _anomalies(run.metrics, "LowMFU", "Warning") == 2
    assert _anomalies(run.metrics, "Stall", "Critical") == 1
    assert len(run.status["anomalies"]) == 3


def test_anomalies_already_in_the_status_are_not_counted_after_a_restart(run: Run) -> None:
    run.reconcile()
    run.start_job()
    run.report(AnomalyKind.STALL, Severity.CRITICAL, 2)
    run.reconcile()
    assert _anomalies(run.metrics, "Stall", "Critical") == 1
    run.restart()
    run.reconcile()
    assert _anomalies(run.metrics, "Stall", "Critical") is None


def test_gpu_seconds_are_counted_once_when_the_run_ends(run: Run) -> None:
    run.reconcile()
    run.start_job()
    run.reconcile()
    assert _sample(run.metrics, "proctor_operator_gpu_seconds_total", outcome="Failed") is None
    run.fail_job(after=timedelta(minutes=10))
    run.kube.refuse_status = 1
    run.reconcile()  # refused: the run has not ended as far as the status says
    assert _sample(run.metrics, "proctor_operator_gpu_seconds_total", outcome="Failed") is None
    run.reconcile()
    assert run.status["phase"] == "Failed"
    # 4 GPUs per node x 2 nodes x 600 s of wall time
    assert _sample(run.metrics, "proctor_operator_gpu_seconds_total", outcome="Failed") == 4800
    run.report(AnomalyKind.TRAINER_GONE, Severity.CRITICAL, 11)
    run.reconcile()  # a later write (a late anomaly) to an ended run adds no GPU time
    assert run.kube.status_writes == 4
    assert _sample(run.metrics, "proctor_operator_gpu_seconds_total", outcome="Failed") == 4800
    run.restart()
    run.reconcile()
    assert _sample(run.metrics, "proctor_operator_gpu_seconds_total", outcome="Failed") is None


def test_the_failed_phase_dates_from_the_training_failure(run: Run) -> None:
    run.reconcile()
    run.start_job()
    run.reconcile()
    run.fail_job(after=timedelta(minutes=10))
    run.reconcile()
    status = ExperimentStatus.model_validate(run.status)
    trained = next(c for c in status.conditions if c.type == "Trained")
    value = _sample(run.metrics, SINCE, namespace=NAMESPACE, experiment="exp", phase="Failed")
    assert value == trained.last_transition_time.timestamp()


def test_each_phase_dates_from_its_own_mark() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)

    def at(minute: int) -> str:
        return _stamp(created + timedelta(minutes=minute))

    def condition(kind: str, state: str, minute: int) -> dict[str, Any]:
        reason = "Marked"
        return {"type": kind, "status": state, "reason": reason, "lastTransitionTime": at(minute)}

    cases: dict[str, tuple[dict[str, Any], int]] = {
        "Pending": ({}, 0),
        "Validating": ({"conditions": [condition("Validated", "Unknown", 1)]}, 1),
        "Queued": (
            {"conditions": [condition("Validated", "True", 3), condition("Trained", "Unknown", 4)]},
            4,
        ),
        "Training": (
            {
                "conditions": [condition("Trained", "Unknown", 4)],
                "training": {"startTime": at(9)},
            },
            9,
        ),
        "Succeeded": ({"conditions": [condition("Trained", "True", 20)]}, 20),
        "Failed": (
            {
                "conditions": [
                    condition("Validated", "False", 5),
                    condition("Concluded", "False", 30),
                    condition("Blocked", "False", 31),
                ]
            },
            5,
        ),
        "Concluded": (
            {"conditions": [condition("Trained", "True", 20), condition("Concluded", "True", 40)]},
            40,
        ),
    }
    for phase, (status, minute) in cases.items():
        parsed = ExperimentStatus.model_validate({"phase": phase, **status})
        assert phase_entered(parsed, created) == created + timedelta(minutes=minute), phase
