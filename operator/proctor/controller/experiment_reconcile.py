"""The Experiment's state machine, as a pure function of the Experiment and what it owns.

    Pending -> Validating (owns a ValidationPyramid) -> Training (owns the training Job)
            -> Succeeded | Failed -> Concluded (once spec.conclusion is written)

Queued is Training held back by Kueue (the Job is suspended). The phase lives in status and is
recomputed from the owned objects on every pass, so a restarted operator picks up where the last
one stopped, and creating something twice is harmless (fixed names, 409).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from proctor.api.layout import LayoutError, bundle_location, checkpoint_directory
from proctor.api.redaction import redact
from proctor.api.v1alpha1 import (
    Anomaly,
    AnomalyAction,
    Conclusion,
    ConditionStatus,
    Experiment,
    ExperimentConditionType,
    ExperimentPhase,
    ExperimentStatus,
    PyramidPhase,
    Reason,
    Resources,
    ValidationPyramidSpec,
    ValidationPyramidStatus,
    Verdict,
    find_condition,
    set_condition,
)
from proctor.api.v1alpha1._base import LONG_TEXT
from proctor.api.v1alpha1.experiment import (
    CheckpointRecord,
    EvalRecord,
    Severity,
    TrainingProgress,
    ValidationSummary,
)
from proctor.controller import guardrails, names, podspec
from proctor.controller.defaults import with_operator_defaults
from proctor.controller.observed import JobFacts, PodFacts
from proctor.controller.plans import Event, Plan
from proctor.controller.settings import ControllerSettings
from proctor.controller.training_jobs import (
    bundle_uri,
    checkpoint_uri,
    rendezvous_service,
    training_job,
    watchdog_access,
)

MAX_ANOMALIES = 20
_ENDED = (ExperimentPhase.SUCCEEDED, ExperimentPhase.FAILED, ExperimentPhase.CONCLUDED)
NOT_STARTED = (ExperimentPhase.PENDING, ExperimentPhase.BLOCKED)
"""Phases in which the guardrails are checked and the spec may still change."""


@dataclass
class Observed:
    """What the Experiment owns, as read from the cluster."""

    pyramid: dict[str, Any] | None = None
    job: JobFacts | None = None
    anomalies: list[Anomaly] = field(default_factory=list)
    """Anomalies the watchdog reported (from its Events), oldest first."""
    progress: dict[str, Any] | None = None
    """The trainer's latest metrics (proctor.controller.progress), when they were read."""
    name_taken: str | None = None
    """Why the ValidationPyramid of this name, which exists, is not this Experiment's."""
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    """The namespace's other Experiments, read while this one has not started (guardrails)."""


def reconcile_experiment(
    obj: dict[str, Any], observed: Observed, now: datetime, settings: ControllerSettings
) -> Plan:
    experiment = with_operator_defaults(Experiment.model_validate(obj), settings)
    old = experiment.status or ExperimentStatus()
    status = old.model_copy(deep=True)
    status.observed_generation = experiment.metadata.generation
    status.phase = status.phase or ExperimentPhase.PENDING
    plan = Plan(status={})
    step = _Step(experiment, obj, status, observed, now, settings, plan)

    if status.phase in _ENDED:
        step.stop_training_job_if_running()
    elif step.guarded() and step.validate():
        step.train()
    step.record_anomalies()
    step.conclude()
    if status.phase != old.phase or _blocked_for(status) != _blocked_for(old):
        plan.events.append(step.transition_event())
    plan.status = status.to_wire()
    return plan


def _blocked_for(status: ExperimentStatus) -> tuple[str, str] | None:
    """Why the experiment is Blocked (reason, message); a new cause is news worth an Event even
    though the phase stays Blocked, since it asks the user for something else."""
    if status.phase != ExperimentPhase.BLOCKED:
        return None
    found = find_condition(status.conditions, ExperimentConditionType.BLOCKED)
    return (found.reason, found.message) if found else None


@dataclass
class _Step:
    experiment: Experiment
    obj: dict[str, Any]
    status: ExperimentStatus
    observed: Observed
    now: datetime
    settings: ControllerSettings
    plan: Plan

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    def condition(
        self, kind: ExperimentConditionType, state: ConditionStatus, reason: Reason, message: str
    ) -> None:
        self.status.conditions = set_condition(
            self.status.conditions,
            kind,
            state,
            reason,
            message,
            self.experiment.metadata.generation,
            self.now,
        )

    # ---- guardrails ----------------------------------------------------------------------

    def guarded(self) -> bool:
        """Whether the research guardrails let this experiment start (checked until it has)."""
        if self.status.phase not in NOT_STARTED:
            return True
        block = guardrails.check(self.experiment, self.obj, self.observed.neighbours)
        if block is not None:
            self.status.phase = ExperimentPhase.BLOCKED
            self.condition(
                ExperimentConditionType.BLOCKED, ConditionStatus.TRUE, block.reason, block.message
            )
            return False
        for reason in guardrails.GUARDRAIL_REASONS:
            self._unblock(reason)
        if self.status.phase == ExperimentPhase.BLOCKED:
            self.status.phase = ExperimentPhase.PENDING
        return True

    # ---- validation ----------------------------------------------------------------------

    def validate(self) -> bool:
        """Whether the code is validated (or validation skipped) so training may start."""
        validation = self.experiment.spec.validation
        if validation.skip is not None:
            self.condition(
                ExperimentConditionType.VALIDATED,
                ConditionStatus.TRUE,
                Reason.VALIDATION_SKIPPED,
                f"validation skipped: {validation.skip.reason}",
            )
            return True
        if self.observed.name_taken:
            self.status.phase = ExperimentPhase.PENDING
            self.condition(
                ExperimentConditionType.BLOCKED,
                ConditionStatus.TRUE,
                Reason.NAME_TAKEN,
                self.observed.name_taken,
            )
            return False
        self._unblock(Reason.NAME_TAKEN)
        pyramid_obj = self.observed.pyramid
        if pyramid_obj is None:
            self.plan.create.append(self._pyramid())
            self.status.phase = ExperimentPhase.VALIDATING
            self.status.validation = ValidationSummary(
                pyramid_name=names.pyramid_name(self.name), phase=PyramidPhase.PENDING
            )
            self.condition(
                ExperimentConditionType.VALIDATED,
                ConditionStatus.UNKNOWN,
                Reason.PYRAMID_RUNNING,
                "the validation pyramid was created",
            )
            return False
        pyramid = ValidationPyramidStatus.model_validate(pyramid_obj.get("status") or {})
        self.status.validation = _summary(pyramid_obj["metadata"]["name"], pyramid)
        message = self.status.validation.message
        if pyramid.phase == PyramidPhase.PASSED:
            self.condition(
                ExperimentConditionType.VALIDATED,
                ConditionStatus.TRUE,
                Reason.PYRAMID_PASSED,
                message,
            )
            return True
        if pyramid.phase == PyramidPhase.FAILED:
            self.status.phase = ExperimentPhase.FAILED
            self.condition(
                ExperimentConditionType.VALIDATED,
                ConditionStatus.FALSE,
                Reason.PYRAMID_FAILED,
                f"validation pyramid {pyramid_obj['metadata']['name']} failed at "
                f"{self.status.validation.layer}: {message}; no training was started. Fix the "
                "code, check it with `proctor pyramid run`, and submit a new Experiment.",
            )
            return False
        self.status.phase = ExperimentPhase.VALIDATING
        self.condition(
            ExperimentConditionType.VALIDATED,
            ConditionStatus.UNKNOWN,
            Reason.PYRAMID_RUNNING,
            message or "the validation pyramid is running",
        )
        return False

    def _pyramid(self) -> dict[str, Any]:
        spec = self.experiment.spec
        resources = spec.validation.resources or Resources.model_validate(
            spec.training.resources.model_dump()
        )
        pyramid_spec = ValidationPyramidSpec(
            code=spec.code,
            layers=spec.validation.layers,
            resources=resources,
            scheduling=spec.training.scheduling,
        )
        return {
            "apiVersion": "proctor.dev/v1alpha1",
            "kind": "ValidationPyramid",
            "metadata": {
                "name": names.pyramid_name(self.name),
                "namespace": self.namespace,
                "labels": names.managed_labels(names.VALIDATION, **{names.EXPERIMENT: self.name}),
                "ownerReferences": [podspec.owner_reference(self.obj)],
            },
            "spec": pyramid_spec.to_wire(),
        }

    # ---- training ------------------------------------------------------------------------

    def train(self) -> None:
        job = self.observed.job
        progress = self.status.training or TrainingProgress()
        if job is None:
            self._create_training()
            progress.job_name = names.training_job_name(self.name)
            self.status.training = progress
            return
        progress.job_name = job.name
        if job.suspended and not (job.complete or job.failed):
            self.status.phase = ExperimentPhase.QUEUED
            queue = self.experiment.spec.training.queue_name
            self.condition(
                ExperimentConditionType.TRAINED,
                ConditionStatus.UNKNOWN,
                Reason.QUEUED,
                f"the training Job waits for admission by Kueue in queue {queue}"
                if queue
                else "the training Job is suspended",
            )
            self.status.training = progress
            return
        progress.start_time = progress.start_time or job.start_time or self.now
        self.status.training = _with_progress(progress, self.observed.progress, self._ckpt())
        if job.active:
            self.status.phase = ExperimentPhase.TRAINING
            unschedulable = [
                p.blocked for p in job.pods if p.unschedulable and p.phase == "Pending"
            ]
            if unschedulable:
                # Not a failure (a cluster autoscaler may yet add the node), but said loudly.
                self.condition(
                    ExperimentConditionType.BLOCKED,
                    ConditionStatus.TRUE,
                    Reason.UNSCHEDULABLE,
                    f"{unschedulable[0]}; lower spec.training.resources or its scheduling, or "
                    "add capacity",
                )
            else:
                self._unblock(Reason.UNSCHEDULABLE)
            pod = job.last_pod
            blocked = pod.blocked if pod else ""
            self.condition(
                ExperimentConditionType.TRAINED,
                ConditionStatus.UNKNOWN,
                Reason.TRAINING_RUNNING,
                blocked or f"training Job {job.name} is running",
            )
            self._stop_on_anomaly()
            return
        self._unblock(Reason.UNSCHEDULABLE)
        self._finished(job)

    def _unblock(self, reason: Reason) -> None:
        """Clear a Blocked condition this reason set, once its cause is gone."""
        blocked = find_condition(self.status.conditions, ExperimentConditionType.BLOCKED)
        if (
            blocked is not None
            and blocked.status == ConditionStatus.TRUE
            and blocked.reason == reason
        ):
            self.condition(
                ExperimentConditionType.BLOCKED,
                ConditionStatus.FALSE,
                Reason.NOT_BLOCKED,
                f"no longer blocked ({reason.value} resolved)",
            )

    def _create_training(self) -> None:
        spec = self.experiment.spec
        self.plan.create.extend(watchdog_access(self.namespace) if spec.watchdog.enabled else [])
        if spec.training.nodes > 1:
            self.plan.create.append(rendezvous_service(self.obj, self.settings))
        self.plan.create.append(training_job(self.experiment, self.obj, self.settings))
        self.status.phase = (
            ExperimentPhase.QUEUED if spec.training.queue_name else ExperimentPhase.TRAINING
        )
        self.condition(
            ExperimentConditionType.TRAINED,
            ConditionStatus.UNKNOWN,
            Reason.QUEUED if spec.training.queue_name else Reason.TRAINING_RUNNING,
            f"training Job {names.training_job_name(self.name)} created",
        )

    def _finished(self, job: JobFacts) -> None:
        progress = self.status.training or TrainingProgress()
        progress.completion_time = progress.completion_time or job.finish_time or self.now
        pod = _rank_zero(job)
        outcome = _trainer_outcome(pod)
        if outcome.get("step") is not None:
            progress.step = max(progress.step or 0, int(outcome["step"]))
        self.status.training = progress
        at = f"at step {progress.step}" if progress.step is not None else ""
        if job.complete:
            self._end(True, Reason.TRAINING_SUCCEEDED, f"training finished {at}".strip())
        elif outcome.get("outcome") == "budget_exhausted":
            self._end(
                True,
                Reason.BUDGET_EXCEEDED,
                f"training stopped at spec.training.budget.maxDuration {at}, before maxSteps; "
                "the newest checkpoint holds it",
            )
        elif job.failed_reason == "DeadlineExceeded":
            self._end(
                False,
                Reason.BUDGET_EXCEEDED,
                "the training Job ran past maxDuration plus its allowance and was stopped by "
                "Kubernetes before the trainer stopped itself; does a custom command honour "
                "PROCTOR_MAX_DURATION?",
            )
        else:
            self._end(False, Reason.TRAINING_FAILED, _failure_message(job, pod, outcome))

    def _end(self, succeeded: bool, reason: Reason, message: str) -> None:
        self.status.phase = ExperimentPhase.SUCCEEDED if succeeded else ExperimentPhase.FAILED
        state = ConditionStatus.TRUE if succeeded else ConditionStatus.FALSE
        self.condition(ExperimentConditionType.TRAINED, state, reason, message)

    def _ckpt(self) -> str | None:
        return checkpoint_uri(self.experiment, self.name, self.namespace)

    # ---- anomalies -----------------------------------------------------------------------

    def record_anomalies(self) -> None:
        kept = self.status.anomalies
        known = {(a.kind, a.time) for a in kept}
        # The watchdog's Events outlive the status list: once it is full, an anomaly older than
        # every kept one was dropped from it, not newly found, and must not be counted again.
        oldest = min(a.time for a in kept) if len(kept) >= MAX_ANOMALIES else None
        new = [
            self._confined(a)
            for a in self.observed.anomalies
            if (a.kind, a.time) not in known and (oldest is None or a.time > oldest)
        ]
        if not new:
            return
        self.status.anomalies = [*self.status.anomalies, *new][-MAX_ANOMALIES:]
        self.status.anomaly_count = (self.status.anomaly_count or 0) + len(new)
        latest = new[-1]
        where = f" (bundle {latest.bundle_uri})" if latest.bundle_uri else ""
        self.condition(
            ExperimentConditionType.ANOMALY_DETECTED,
            ConditionStatus.TRUE,
            Reason.ANOMALY_REPORTED,
            f"{self.status.anomaly_count} anomalies; latest {latest.kind.value}: "
            f"{latest.message}{where}",
        )
        for anomaly in new:
            self.plan.events.append(
                Event("AnomalyRecorded", f"{anomaly.kind.value}: {anomaly.message}", "Warning")
            )

    def _confined(self, anomaly: Anomaly) -> Anomaly:
        """`anomaly` with its bundle URI kept only when it is a bundle of this experiment's own
        prefix. Whoever may post Events in the namespace can write one; status must not send an
        agent that reads it to another experiment's files or another store."""
        if anomaly.bundle_uri is None:
            return anomaly
        own = bundle_uri(self.experiment, self.name, self.namespace, self.settings)
        try:
            if own is not None and bundle_location(anomaly.bundle_uri).prefix == own:
                return anomaly
        except LayoutError:
            pass
        note = f" [bundle URI {anomaly.bundle_uri[:200]!r} left out: not under {own or 'a store'}]"
        message = anomaly.message[: LONG_TEXT - len(note)] + note
        return anomaly.model_copy(update={"bundle_uri": None, "message": message})

    def _stop_on_anomaly(self) -> None:
        if self.experiment.spec.recovery.on_anomaly != AnomalyAction.STOP_TRAINING:
            return
        critical = [a for a in self.observed.anomalies if a.severity == Severity.CRITICAL]
        if not critical:
            return
        anomaly = self._confined(critical[0])
        where = f"; bundle: {anomaly.bundle_uri}" if anomaly.bundle_uri else ""
        self._end(
            False,
            Reason.STOPPED_ON_ANOMALY,
            f"stopped by the operator (spec.recovery.onAnomaly StopTraining) after "
            f"{anomaly.kind.value}: {anomaly.message}{where}",
        )
        progress = self.status.training or TrainingProgress()
        progress.completion_time = self.now
        # Progress is read at a bounded rate, so the run got further than status says: at least
        # to the anomaly, and to what the trainer reported if it had exited already (a NaN).
        reached = [progress.step, anomaly.step]
        if self.observed.job is not None:
            reached.append(_trainer_outcome(_rank_zero(self.observed.job)).get("step"))
        steps = [int(step) for step in reached if isinstance(step, int)]
        progress.step = max(steps) if steps else None
        self.status.training = progress
        self.stop_training_job_if_running()

    def stop_training_job_if_running(self) -> None:
        """An ended Experiment has no running Job: it was stopped, or the stop was interrupted."""
        job = self.observed.job
        if job is not None and (job.active or job.suspended) and not (job.complete or job.failed):
            self.plan.delete.append(("batch/v1", "Job", job.name))

    # ---- conclusion ----------------------------------------------------------------------

    def conclude(self) -> None:
        conclusion = self.experiment.spec.conclusion
        if self.status.phase not in _ENDED:
            return
        if conclusion is None:
            self.condition(
                ExperimentConditionType.CONCLUDED,
                ConditionStatus.FALSE,
                Reason.AWAITING_CONCLUSION,
                "write spec.conclusion (verdict, evidence, learnings) to conclude the experiment",
            )
            return
        refused = self._conclusion_refused(conclusion)
        if refused:
            self.condition(
                ExperimentConditionType.CONCLUDED,
                ConditionStatus.FALSE,
                Reason.CONCLUSION_INVALID,
                refused,
            )
            return
        self.status.phase = ExperimentPhase.CONCLUDED
        self.condition(
            ExperimentConditionType.CONCLUDED,
            ConditionStatus.TRUE,
            Reason.CONCLUSION_WRITTEN,
            f"{conclusion.verdict.value}: {conclusion.evidence}",
        )

    def _conclusion_refused(self, conclusion: Conclusion) -> str:
        """Why `conclusion` cannot stand, or "". A run an anomaly stopped measured the anomaly,
        not the hypothesis: it concludes inconclusive, or its evidence cites the bundle."""
        if conclusion.verdict == Verdict.INCONCLUSIVE or not self._stopped_by_anomaly():
            return ""
        bundles = [a.bundle_uri for a in self.status.anomalies if a.bundle_uri]
        if any(uri.rstrip("/") in conclusion.evidence for uri in bundles):
            return ""
        where = f" (for example {bundles[-1]})" if bundles else ""
        return (
            f"an anomaly stopped this run, so a verdict of {conclusion.verdict.value} needs "
            f"evidence that cites its recovery bundle{where}; otherwise conclude inconclusive"
        )

    def _stopped_by_anomaly(self) -> bool:
        trained = find_condition(self.status.conditions, ExperimentConditionType.TRAINED)
        if trained is not None and trained.reason == Reason.STOPPED_ON_ANOMALY:
            return True
        failed = self.status.phase == ExperimentPhase.FAILED or (
            trained is not None and trained.status == ConditionStatus.FALSE
        )
        return failed and any(a.severity == Severity.CRITICAL for a in self.status.anomalies)

    def transition_event(self) -> Event:
        phase = self.status.phase or ExperimentPhase.PENDING
        condition = {
            ExperimentPhase.VALIDATING: ExperimentConditionType.VALIDATED,
            ExperimentPhase.QUEUED: ExperimentConditionType.TRAINED,
            ExperimentPhase.TRAINING: ExperimentConditionType.TRAINED,
            ExperimentPhase.SUCCEEDED: ExperimentConditionType.TRAINED,
            ExperimentPhase.CONCLUDED: ExperimentConditionType.CONCLUDED,
            ExperimentPhase.BLOCKED: ExperimentConditionType.BLOCKED,
        }.get(phase)
        found = find_condition(self.status.conditions, condition) if condition else None
        if phase == ExperimentPhase.FAILED:
            found = next(
                (
                    c
                    for c in self.status.conditions
                    if c.status == ConditionStatus.FALSE and c.type != "Concluded"
                ),
                None,
            )
        message = found.message if found else ""
        kind = "Warning" if phase == ExperimentPhase.FAILED else "Normal"
        return Event(phase.value, f"phase {phase.value}: {message}"[:1024], kind)


def _summary(name: str, pyramid: ValidationPyramidStatus) -> ValidationSummary:
    failed = next((e for e in pyramid.layers if e.phase == "Failed"), None)
    ready = next((c for c in pyramid.conditions if c.type == "Ready"), None)
    return ValidationSummary(
        pyramid_name=name,
        phase=pyramid.phase or PyramidPhase.PENDING,
        layer=pyramid.current_layer,
        passed_checks=pyramid.passed_checks,
        total_checks=pyramid.total_checks,
        message=(failed.message if failed else (ready.message if ready else ""))[:4096],
    )


def _rank_zero(job: JobFacts) -> PodFacts | None:
    """The pod whose trainer reports the outcome: index 0 of a multi-node run; of a Job that
    completed, the pod that did (an earlier one evicted or crashed did not reach the end)."""
    indexed = [p for p in job.pods if p.index == 0]
    pods = indexed or list(job.pods)
    succeeded = [p for p in pods if p.phase == "Succeeded"] if job.complete else []
    failed = [p for p in pods if p.phase == "Failed"]
    candidates = succeeded or failed or pods
    return candidates[-1] if candidates else None


def _trainer_outcome(pod: PodFacts | None) -> dict[str, Any]:
    """The JSON `proctor train` writes as its termination message, or {}."""
    if pod is None or not pod.termination_message.startswith("{"):
        return {}
    try:
        outcome = json.loads(pod.termination_message)
    except (ValueError, RecursionError):  # the user's image writes it: cut, garbled, too deep
        return {}
    return outcome if isinstance(outcome, dict) else {}


def _failure_message(job: JobFacts, pod: PodFacts | None, outcome: dict[str, Any]) -> str:
    cause = pod.infrastructure_cause if pod else None
    if outcome.get("outcome") == "bad_config":
        return f"the trainer refused its configuration: {redact(str(outcome.get('message', '')))}"
    if outcome.get("outcome") == "crashed":
        message = redact(str(outcome.get("message", "")))
        return f"the training code crashed ({job.failed_reason}): {message}"
    if cause:
        return f"training Job {job.name} failed ({job.failed_reason}): {cause}"
    tail = redact((pod.termination_message if pod else "").strip()[-1500:])
    exit_code = pod.exit_code if pod else None
    return (
        f"training Job {job.name} failed ({job.failed_reason}: {job.failed_message}); "
        f"trainer exit code {exit_code}. Output:\n{tail}"
    )


def _with_progress(
    progress: TrainingProgress, sample: dict[str, Any] | None, checkpoints: str | None
) -> TrainingProgress:
    """`progress` updated from the trainer's latest metrics; nothing moves backwards."""
    if not sample:
        return progress
    updated = progress.model_copy(deep=True)
    step = sample.get("step")
    if step is not None and step >= (progress.step or 0):
        updated.step = int(step)
        for key in ("loss", "mfu", "samples_per_second", "tokens_per_second"):
            if sample.get(key) is not None:
                setattr(updated, key, sample[key])
    ckpt_step, ckpt_time = sample.get("checkpoint_step"), sample.get("checkpoint_time")
    last = progress.last_checkpoint
    newer = ckpt_step is not None and (last is None or ckpt_step > last.step)
    if newer and ckpt_step is not None and ckpt_time is not None and checkpoints is not None:
        updated.last_checkpoint = CheckpointRecord(
            uri=f"{checkpoints}/{checkpoint_directory(int(ckpt_step))}/",
            step=int(ckpt_step),
            time=ckpt_time,
        )
    evals = sample.get("eval")
    if evals and step is not None and step >= (progress.step or 0):
        updated.last_eval = EvalRecord(step=int(step), metrics=evals)
    return updated
