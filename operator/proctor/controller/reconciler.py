"""Carries out the pure reconcilers against the API server: read, decide, act, record.

One reconcile of an object at a time (a lock per object), since kopf delivers an object's own
events, its children's events and its timer concurrently. Each pass reads the object fresh, so a
decision is never taken on a status older than the last write; the status write is guarded by
resourceVersion, so a stale one is refused and the next pass redoes it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from proctor.api.anomaly_events import ANOMALY_LABEL, EXPERIMENT_LABEL, anomaly_from_event
from proctor.api.v1alpha1 import (
    API_VERSION,
    Condition,
    ConditionStatus,
    Experiment,
    ExperimentConditionType,
    ExperimentPhase,
    PyramidConditionType,
    PyramidPhase,
    Reason,
    set_condition,
)
from proctor.api.v1alpha1.conditions import ConditionType
from proctor.controller import names
from proctor.controller.experiment_reconcile import NOT_STARTED, Observed, reconcile_experiment
from proctor.controller.metrics import OperatorMetrics
from proctor.controller.neighbours import ExperimentIndex
from proctor.controller.observed import JobFacts, job_facts
from proctor.controller.plans import Event, Plan
from proctor.controller.progress import read_progress
from proctor.controller.pyramid_jobs import LAYER_CONTAINER
from proctor.controller.pyramid_reconcile import layer_durations, reconcile_pyramid
from proctor.controller.settings import ControllerSettings
from proctor.controller.studies import StudyDigests
from proctor.controller.training_jobs import TRAINER_CONTAINER, trainer_metrics_url
from proctor.kube import ForbiddenError, KubeClient, KubeError, RejectedError

logger = logging.getLogger(__name__)
PYRAMID_DONE = (PyramidPhase.PASSED.value, PyramidPhase.FAILED.value)
EXPERIMENT_DONE = ("Succeeded", "Failed", "Concluded")


class Reconciler:
    def __init__(
        self, kube: KubeClient, settings: ControllerSettings, metrics: OperatorMetrics
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.studies = StudyDigests(kube, settings)
        self.neighbours = ExperimentIndex(
            lambda namespace: kube.select(API_VERSION, "Experiment", namespace, {})
        )
        self._locks: defaultdict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._last_read: dict[tuple[str, str], float] = {}
        # What the resync loop revisits: objects the watch showed unfinished, and objects whose
        # last pass failed or left work to check (a retry due, a Job being stopped).
        self._unfinished: set[tuple[str, str, str]] = set()
        self._finished: set[tuple[str, str, str]] = set()
        self._retry: set[tuple[str, str, str]] = set()
        self._tracking = threading.Lock()
        self._stopping = threading.Event()
        # Reconciles asked for while one of the same object waits for its lock are dropped
        # (see _coalesced); anomaly reads they asked for are kept for the one that runs.
        self._waiting_guard = threading.Lock()
        self._waiting: set[tuple[str, str, str]] = set()
        self._absorbed: set[tuple[str, str, str]] = set()
        self._anomalies_due: set[tuple[str, str, str]] = set()
        # The resourceVersion of each object's last status write by this operator: the watch
        # event it causes brings nothing new.
        self._own_writes: dict[tuple[str, str, str], str] = {}

    def _lock(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks[key]

    def track(self, kind: str, namespace: str | None, name: str, phase: str | None) -> None:
        """Note whether an object is finished, as its latest watch event or status says."""
        if namespace is None:
            return
        done = PYRAMID_DONE if kind == "ValidationPyramid" else EXPERIMENT_DONE
        with self._tracking:
            if phase in done:
                self._unfinished.discard((kind, namespace, name))
                self._finished.add((kind, namespace, name))
                self._own_writes.pop((kind, namespace, name), None)
            else:
                self._unfinished.add((kind, namespace, name))
                self._finished.discard((kind, namespace, name))

    def resync(self) -> None:
        """One pass over every unfinished object and every object due a retry; it ends early
        once `stop()` is called (those not visited are kept for the next operator)."""
        with self._tracking:
            keys = sorted(self._unfinished | self._retry)
            self._retry.clear()
        for kind, namespace, name in keys:
            if self._stopping.is_set():
                return
            if kind == "ValidationPyramid":
                self.pyramid(namespace, name)
            else:
                self.experiment(namespace, name)

    def stop(self) -> None:
        """The operator is shutting down: a resync pass in flight ends after its current object.
        A pass over 1,000 unfinished objects on a loaded API server takes a minute, and the
        process cannot exit while the thread running it does (seen: no exit 60 s after
        SIGTERM in bench/operator_scale.py)."""
        self._stopping.set()

    def _again(self, kind: str, namespace: str, name: str) -> None:
        with self._tracking:
            self._retry.add((kind, namespace, name))

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """The object is gone: drop what is kept about it."""
        with self._tracking:
            self._unfinished.discard((kind, namespace, name))
            self._finished.discard((kind, namespace, name))
            self._retry.discard((kind, namespace, name))
        with self._locks_guard:
            self._locks.pop((kind, namespace, name), None)
        self._own_writes.pop((kind, namespace, name), None)
        if kind == "Experiment":
            self.metrics.forget_experiment(namespace, name)
            self._last_read.pop((namespace, name), None)

    # ---- ValidationPyramid ---------------------------------------------------------------

    def pyramid(self, namespace: str | None, name: str, version: str | None = None) -> None:
        if namespace is None:  # both resources are namespaced: nothing to do for anything else
            return
        key = ("ValidationPyramid", namespace, name)
        if self._echo(key, version):
            return

        def run(absorbed: bool) -> None:
            if not absorbed and self._echo(key, version):
                return
            if not self._guarded("validationpyramid", self._pyramid, namespace, name):
                self._again("ValidationPyramid", namespace, name)

        self._coalesced(key, run)

    def _pyramid(self, namespace: str, name: str) -> None:
        obj = self.kube.get(API_VERSION, "ValidationPyramid", namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return  # gone or going: garbage collection removes what it owns
        status = obj.get("status") or {}
        self.track("ValidationPyramid", namespace, name, status.get("phase"))
        if status.get("phase") in PYRAMID_DONE:
            return  # the outcome is recorded; the spec is frozen, so it cannot change
        selector: dict[str, str | None] = {names.MANAGED_BY: names.MANAGER, names.PYRAMID: name}
        jobs = _owned_by(obj, self.kube.select("batch/v1", "Job", namespace, selector))
        pods = self.kube.select("v1", "Pod", namespace, selector) if jobs else []
        facts = [job_facts(job, pods, LAYER_CONTAINER) for job in jobs]
        try:
            plan = reconcile_pyramid(obj, facts, datetime.now(UTC), self.settings)
        except ValidationError as exc:
            plan = _invalid(obj, exc, PyramidConditionType.READY)
        self._execute(obj, plan)
        if plan.requeue_after is not None or plan.delete:
            self._again("ValidationPyramid", namespace, name)
        for layer, outcome, seconds in layer_durations(status, plan.status):
            self.metrics.layer_seconds.labels(layer, outcome).observe(seconds)
            entry = next(e for e in plan.status["layers"] if e["layer"] == layer)
            for check in entry.get("checks") or []:
                self.metrics.checks.labels(layer, check["name"], check["verdict"]).inc()

    # ---- Experiment ----------------------------------------------------------------------

    def experiment(
        self,
        namespace: str | None,
        name: str,
        anomalies: bool = False,
        version: str | None = None,
        child: bool = False,
    ) -> None:
        """`anomalies`: an anomaly Event just arrived; read them now, not at the next tick.
        `version`: the resourceVersion the triggering watch event carried. `child`: one of its
        Jobs or pods changed, which cannot change a finished Experiment (a Job it must still
        stop is on the retry list, which the resync visits)."""
        if namespace is None:
            return
        key = ("Experiment", namespace, name)
        if self._echo(key, version):
            return
        if child and not anomalies:
            with self._tracking:
                if key in self._finished and key not in self._retry:
                    return
        if anomalies:
            with self._waiting_guard:
                self._anomalies_due.add(key)

        def run(absorbed: bool) -> None:
            with self._waiting_guard:
                due = key in self._anomalies_due
                self._anomalies_due.discard(key)
            if not due and not absorbed and self._echo(key, version):
                return  # checked again under the lock: the write may have been in flight
            if not self._guarded("experiment", self._experiment, namespace, name, due):
                self._again("Experiment", namespace, name)

        self._coalesced(key, run)

    def _echo(self, key: tuple[str, str, str], version: str | None) -> bool:
        """Whether a watch event of `version` is the echo of this operator's own last status
        write: it brings nothing the reconcile that wrote it did not know."""
        return version is not None and version == self._own_writes.get(key)

    def _coalesced(self, key: tuple[str, str, str], run: Callable[[bool], None]) -> None:
        """`run` under the object's lock, once per burst of changes: a caller that finds
        another already waiting for the lock leaves the work to it, since that one reads the
        object after every change so far. (A Job and its pod changing five times while the
        Experiment is reconciled cost one more reconcile, not five.) `run(absorbed)`: whether
        it took over such a request, and so must run even if its own trigger was an echo."""
        with self._waiting_guard:
            if key in self._waiting:
                self._absorbed.add(key)
                return
            self._waiting.add(key)
        with self._lock(key):
            with self._waiting_guard:
                self._waiting.discard(key)
                absorbed = key in self._absorbed
                self._absorbed.discard(key)
            run(absorbed)

    def _experiment(self, namespace: str, name: str, anomalies: bool) -> None:
        obj = self.kube.get(API_VERSION, "Experiment", namespace, name)
        if obj is None:
            self.metrics.forget_experiment(namespace, name)
            return
        if obj["metadata"].get("deletionTimestamp"):
            return  # going: garbage collection removes what it owns
        phase = (obj.get("status") or {}).get("phase")
        self.metrics.observe_experiment(obj)
        self.track("Experiment", namespace, name, phase)
        if phase == ExperimentPhase.CONCLUDED.value:
            self.studies.check(obj)  # a digest a crash or a storage outage left unwritten
            return
        observed = Observed()
        if phase is None or phase in {p.value for p in NOT_STARTED}:
            # The guardrails compare with the namespace's other Experiments; only until it starts.
            observed.neighbours = self.neighbours.neighbours(namespace)
        spec = obj.get("spec") or {}
        if not (spec.get("validation") or {}).get("skip"):
            pyramid = self.kube.get(
                API_VERSION, "ValidationPyramid", namespace, names.pyramid_name(name)
            )
            if pyramid is not None and not _owned_by(obj, [pyramid]):
                observed.name_taken = _name_taken(pyramid)
            else:
                observed.pyramid = pyramid
        selector: dict[str, str | None] = {
            names.MANAGED_BY: names.MANAGER,
            names.EXPERIMENT: name,
            names.COMPONENT: names.TRAINING,
        }
        jobs = _owned_by(obj, self.kube.select("batch/v1", "Job", namespace, selector))
        if jobs:
            pods = self.kube.select("v1", "Pod", namespace, selector)
            observed.job = job_facts(jobs[0], pods, TRAINER_CONTAINER)
            if self._due(namespace, name) or anomalies:
                observed.anomalies = self._anomalies(obj)
                observed.progress = self._progress(obj, observed.job)
        try:
            plan = reconcile_experiment(obj, observed, datetime.now(UTC), self.settings)
        except ValidationError as exc:
            plan = _invalid(obj, exc, ExperimentConditionType.VALIDATED)
        written = self._execute(obj, plan)
        if written is not None:
            self.metrics.status_written(obj, written)
            if written.get("phase") == ExperimentPhase.CONCLUDED.value:
                self.studies.check(obj)
        self.metrics.observe_experiment(obj, plan.status if written is None else written)
        self.track("Experiment", namespace, name, plan.status.get("phase"))
        if plan.delete:  # check back until the stopped Job is gone
            self._again("Experiment", namespace, name)

    def _due(self, namespace: str, name: str) -> bool:
        """Whether the run's metrics and anomalies may be read again (a bounded rate)."""
        now = time.monotonic()
        last = self._last_read.get((namespace, name))
        if last is not None and now - last < self.settings.progress_seconds:
            return False
        self._last_read[(namespace, name)] = now
        return True

    def _anomalies(self, obj: dict[str, Any]) -> list[Any]:
        meta = obj["metadata"]
        selector: dict[str, str | None] = {ANOMALY_LABEL: None, EXPERIMENT_LABEL: meta["name"]}
        events = self.kube.select("v1", "Event", meta["namespace"], selector)
        # Events outlive their object (about an hour): only this incarnation's count.
        mine = [e for e in events if (e.get("involvedObject") or {}).get("uid") == meta["uid"]]
        found = [a for a in (anomaly_from_event(e) for e in mine) if a is not None]
        return sorted(found, key=lambda a: a.time)

    def _progress(self, obj: dict[str, Any], job: JobFacts) -> dict[str, Any] | None:
        if not job.active:
            return None
        rank_zero = [p for p in job.pods if p.phase == "Running" and p.index in (None, 0)]
        if not rank_zero or not rank_zero[-1].ip:
            return None
        try:
            url = trainer_metrics_url(Experiment.model_validate(obj), rank_zero[-1].ip)
        except ValidationError:
            return None  # the reconcile reports the invalid spec
        meta = obj["metadata"]
        return read_progress(url, meta["name"], meta["namespace"]) or None

    # ---- carrying out a plan -------------------------------------------------------------

    def _execute(self, obj: dict[str, Any], plan: Plan) -> dict[str, Any] | None:
        """Carry out `plan`; the status it wrote, or None when the status was unchanged."""
        written = None
        if _starts(obj, plan) and plan.create:
            # Leaving Pending freezes the spec (CEL): write that first. The write is guarded by
            # the resourceVersion read, so a spec edited since is refused (409, redone) before
            # anything is built from the stale one; building first would validate one spec and
            # then freeze another.
            obj = self._write_status(obj, plan)
            written = plan.status
            plan = dataclasses.replace(plan, events=[])  # posted with that write
        for child in plan.create:
            try:
                self.kube.create(child)
            except RejectedError as exc:
                # The spec passed the schema, but what the operator built from it did not pass
                # the API server (a resource name it does not know...): fail, with its words.
                plan = _rejected(obj, plan, child, str(exc))
                break
        if plan.status != (obj.get("status") or {}):
            self._write_status(obj, plan)
            written = plan.status
        for api_version, kind, child_name in plan.delete:
            self.kube.delete(api_version, kind, obj["metadata"]["namespace"], child_name)
        return written

    def _write_status(self, obj: dict[str, Any], plan: Plan) -> dict[str, Any]:
        """Write the plan's status and post its Events; the object as stored now."""
        stored = self.kube.patch_status(obj, plan.status)
        meta = obj["metadata"]
        version = (stored.get("metadata") or {}).get("resourceVersion") if stored else None
        if version:
            self._own_writes[(obj["kind"], meta["namespace"], meta["name"])] = version
        for event in plan.events:
            self.kube.post_event(obj, event.reason, event.message, event.type)
        return stored or {**obj, "status": plan.status}

    def _guarded(self, resource: str, function: Any, *args: Any) -> bool:
        """Run one reconcile; False when it failed, which is logged and counted, and the next
        resync tries again (never a crash of the operator, never a hot loop)."""
        self.metrics.reconciles.labels(resource).inc()
        try:
            function(*args)
        except ForbiddenError as exc:
            self.metrics.reconcile_errors.labels(resource, "forbidden").inc()
            logger.error(
                "%s %s: the operator lacks a permission (check its RBAC; retrying): %s",
                resource,
                args,
                exc,
            )
        except RejectedError as exc:
            self.metrics.reconcile_errors.labels(resource, "rejected").inc()
            logger.error("%s %s: the API server refused a request: %s", resource, args, exc)
        except KubeError as exc:
            self.metrics.reconcile_errors.labels(resource, "transient").inc()
            logger.warning("%s %s: will retry: %s", resource, args, exc)
        except Exception:
            self.metrics.reconcile_errors.labels(resource, "internal").inc()
            logger.exception(
                "%s %s: reconcile failed; will retry at the next resync", resource, args
            )
        else:
            return True
        return False


def _owned_by(owner: dict[str, Any], objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects `owner` (this incarnation: its uid) controls. Names and labels are not proof:
    an Experiment deleted and applied again sees its predecessor's children until garbage
    collection removes them, and anyone may create a ValidationPyramid of the same name."""
    uid = owner["metadata"]["uid"]
    return [
        obj
        for obj in objects
        if any(
            ref.get("uid") == uid and ref.get("controller")
            for ref in obj["metadata"].get("ownerReferences") or []
        )
    ]


def _name_taken(pyramid: dict[str, Any]) -> str:
    name = pyramid["metadata"]["name"]
    if pyramid["metadata"].get("deletionTimestamp") or pyramid["metadata"].get("ownerReferences"):
        return (
            f"waiting for ValidationPyramid {name} of an earlier Experiment of this name to be "
            "deleted (garbage collection)"
        )
    return (
        f"a ValidationPyramid named {name} exists and does not belong to this Experiment: "
        "delete it, or submit the Experiment under another name"
    )


def _failed_status(
    status: dict[str, Any], condition: ConditionType, reason: Reason, message: str
) -> dict[str, Any]:
    """`status` failed with `condition` False; set_condition keeps the transition time of an
    unchanged condition, so a repeated pass writes nothing new."""
    conditions = [Condition.model_validate(c) for c in status.get("conditions") or []]
    conditions = set_condition(conditions, condition, ConditionStatus.FALSE, reason, message[:4096])
    return {**status, "phase": "Failed", "conditions": [c.to_wire() for c in conditions]}


def _starts(obj: dict[str, Any], plan: Plan) -> bool:
    """Whether `plan` moves an Experiment out of Pending/Blocked (its spec freezes then)."""
    if obj["kind"] != "Experiment":
        return False
    not_started = {None, *(p.value for p in NOT_STARTED)}
    before = (obj.get("status") or {}).get("phase")
    return before in not_started and plan.status.get("phase") not in not_started


def _rejected(obj: dict[str, Any], plan: Plan, child: dict[str, Any], message: str) -> Plan:
    condition: ConditionType
    if obj["kind"] == "ValidationPyramid":
        condition = PyramidConditionType.READY
    elif child["kind"] == "ValidationPyramid":
        condition = ExperimentConditionType.VALIDATED
    else:
        condition = ExperimentConditionType.TRAINED
    text = (
        f"the API server refused the {child['kind']} {child['metadata']['name']} built from this "
        f"spec: {message}. Fix the spec (it is frozen now: create a new object)."
    )
    status = _failed_status(obj.get("status") or plan.status, condition, Reason.JOB_REJECTED, text)
    return Plan(status=status, events=[Event(Reason.JOB_REJECTED.value, text, "Warning")])


def _invalid(obj: dict[str, Any], exc: ValidationError, condition: ConditionType) -> Plan:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
    )
    text = f"the object passed the API server's schema but not Proctor's own checks: {problems}"
    status = _failed_status(obj.get("status") or {}, condition, Reason.SPEC_INVALID, text)
    if status == (obj.get("status") or {}):
        return Plan(status=status)
    return Plan(status=status, events=[Event(Reason.SPEC_INVALID.value, text, "Warning")])
