"""The ValidationPyramid's decisions, as a pure function of the pyramid and its layer Jobs.

Layers run in order, one Job each, and the pyramid stops at the first failed layer. A layer's
verdict comes from its pod's termination message (the runner's compact LayerResult). Once a
layer's outcome is in status it is final: status, not memory, is the record, so an operator
restarted at any moment carries on from it.

Failures are told apart:
- checks failed, or the code could not run: permanent, the code is wrong; never retried;
- the layer ran past its timeout (the Job's activeDeadlineSeconds): permanent, LayerTimedOut;
- infrastructure (OOMKilled, evicted, node lost, image pull, killed from outside): retried with
  exponential backoff up to spec.maxInfrastructureRetries, then InfrastructureFailed naming why.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from proctor.api.redaction import redact
from proctor.api.v1alpha1 import (
    CheckResult,
    CheckVerdict,
    ConditionStatus,
    LayerName,
    LayerPhase,
    LayerResult,
    PyramidConditionType,
    PyramidPhase,
    Reason,
    ValidationPyramid,
    ValidationPyramidStatus,
    set_condition,
)
from proctor.controller import names
from proctor.controller.observed import JobFacts, PodFacts
from proctor.controller.plans import Event, Plan
from proctor.controller.pyramid_jobs import layer_job
from proctor.controller.settings import ControllerSettings

LAYERS = (LayerName.L0, LayerName.L1, LayerName.L2, LayerName.L3)
_CONDITION = {
    LayerName.L0: PyramidConditionType.L0_PASSED,
    LayerName.L1: PyramidConditionType.L1_PASSED,
    LayerName.L2: PyramidConditionType.L2_PASSED,
    LayerName.L3: PyramidConditionType.L3_PASSED,
}
_DONE = (LayerPhase.PASSED, LayerPhase.FAILED, LayerPhase.SKIPPED)
# A pod waiting for these will not start on its own soon: the attempt counts as infrastructure.
STUCK_WAITING = ("ImagePullBackOff", "CreateContainerConfigError")


def retry_delay(attempt: int, settings: ControllerSettings) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based) before the next one."""
    return float(min(settings.retry_base_seconds * 2 ** (attempt - 1), settings.retry_max_seconds))


def reconcile_pyramid(
    obj: dict[str, Any],
    jobs: list[JobFacts],
    now: datetime,
    settings: ControllerSettings,
) -> Plan:
    """The plan for the pyramid `obj` (as the API server returned it) given its layer Jobs."""
    pyramid = ValidationPyramid.model_validate(obj)
    old = pyramid.status or ValidationPyramidStatus()
    status = old.model_copy(deep=True)
    status.observed_generation = pyramid.metadata.generation
    plan = Plan(status={})
    layers = {entry.layer: entry for entry in status.layers}
    by_layer: dict[str, list[JobFacts]] = {}
    for job in jobs:
        by_layer.setdefault(job.labels.get(names.LAYER, ""), []).append(job)

    for layer in LAYERS:
        settings_of_layer = getattr(pyramid.spec.layers, layer.value.lower())
        entry = layers.get(layer)
        if entry is not None and entry.phase in _DONE:
            if entry.phase == LayerPhase.FAILED:
                break
            continue
        if not settings_of_layer.enabled:
            layers[layer] = LayerResult(
                layer=layer, phase=LayerPhase.SKIPPED, message=f"{layer.value} is disabled"
            )
            continue
        entry = layers[layer] = _advance(
            pyramid, obj, layer, entry, by_layer.get(layer.value, []), now, settings, plan
        )
        if entry.phase != LayerPhase.PASSED:
            break

    status.layers = [layers[layer] for layer in LAYERS if layer in layers]
    _summarise(status, pyramid, now)
    plan.events = _transitions(old, status) + plan.events
    plan.status = status.to_wire()
    return plan


def _advance(
    pyramid: ValidationPyramid,
    obj: dict[str, Any],
    layer: LayerName,
    entry: LayerResult | None,
    jobs: list[JobFacts],
    now: datetime,
    settings: ControllerSettings,
    plan: Plan,
) -> LayerResult:
    """The layer's entry after looking at its Jobs, adding to `plan` what to create."""
    attempts = {int(j.labels.get(names.ATTEMPT, "0")): j for j in jobs}
    latest_attempt = max(attempts, default=0)
    entry = entry or LayerResult(layer=layer, phase=LayerPhase.PENDING)
    if latest_attempt == 0:
        attempt = max(entry.attempts, 1)  # a Job deleted by hand is recreated, not skipped
        plan.create.append(layer_job(pyramid, obj, layer, attempt))
        return entry.model_copy(
            update={
                "phase": LayerPhase.RUNNING,
                "attempts": attempt,
                "job_name": names.layer_job_name(obj["metadata"]["name"], layer, attempt),
                "start_time": entry.start_time or now,
                "message": entry.message or f"{layer.value} started",
            }
        )
    job = attempts[latest_attempt]
    entry = entry.model_copy(
        update={
            "attempts": latest_attempt,
            "job_name": job.name,
            "start_time": entry.start_time or job.start_time or now,
        }
    )
    if job.active or job.suspended:
        pod = job.last_pod
        if pod is not None and pod.waiting_reason == "InvalidImageName":
            plan.delete.append(("batch/v1", "Job", job.name))
            return _failed(
                entry, now, "image", f"the image cannot be used: {pod.blocked}; fix spec.code.image"
            )
        if pod is not None and pod.waiting_reason in STUCK_WAITING:
            # The kubelet keeps retrying a pull or a missing Secret by itself, but the attempt
            # is spent: end it and retry with a new Job (after the kubelet's own back-off).
            plan.delete.append(("batch/v1", "Job", job.name))
            cause = pod.infrastructure_cause or pod.blocked
            return _infrastructure(
                pyramid, obj, layer, entry, cause, now, now, settings, plan, due_now=True
            )
        blocked = pod.blocked if pod else ""
        return entry.model_copy(
            update={
                "phase": LayerPhase.RUNNING,
                "message": blocked or f"{layer.value} running (attempt {latest_attempt})",
            }
        )
    return _finished(pyramid, obj, layer, entry, job, now, settings, plan)


def _finished(
    pyramid: ValidationPyramid,
    obj: dict[str, Any],
    layer: LayerName,
    entry: LayerResult,
    job: JobFacts,
    now: datetime,
    settings: ControllerSettings,
    plan: Plan,
) -> LayerResult:
    pod = job.last_pod
    ended = job.finish_time or now
    result, unreadable = _layer_result(pod, layer)
    if result is not None and (job.complete or result.phase == LayerPhase.FAILED):
        return result.model_copy(
            update={
                "attempts": entry.attempts,
                "job_name": job.name,
                "start_time": entry.start_time,
                "completion_time": ended,
            }
        )
    if job.failed and job.failed_reason == "DeadlineExceeded":
        timeout = getattr(pyramid.spec.layers, layer.value.lower()).timeout
        last_seen = f"; last seen: {entry.message}" if entry.message else ""
        return _failed(
            entry,
            ended,
            "timeout",
            f"{layer.value} did not finish within its timeout of {timeout}{last_seen}. Raise "
            f"spec.layers.{layer.value.lower()}.timeout if the layer needs longer, or check "
            "that the pod can be scheduled and its image pulled.",
        )
    cause = pod.infrastructure_cause if pod else "the layer's pod disappeared before it finished"
    if cause is not None:
        return _infrastructure(pyramid, obj, layer, entry, cause, ended, now, settings, plan)
    check = "result" if unreadable else "runs"
    return _failed(entry, ended, check, _code_failure(layer, job, pod, unreadable))


_DONE_PHASES = (LayerPhase.PASSED, LayerPhase.FAILED)


def _layer_result(pod: PodFacts | None, layer: LayerName) -> tuple[LayerResult | None, str]:
    """The LayerResult the runner wrote as the termination message, if it is one; else why a
    message that looks like one (it starts with `{`) cannot be read, or "" for plain output.

    The message comes from the user's image, so anything may be there: cut at the kubelet's
    4 KiB, nested too deep for the parser, of the wrong types, another layer's, NaN."""
    if pod is None or not pod.termination_message.startswith("{"):
        return None, ""
    try:
        result = LayerResult.model_validate(json.loads(pod.termination_message))
    except RecursionError:
        return None, "it nests too deeply to parse"
    except ValidationError as invalid:
        error = invalid.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the top level"
        return None, f"{where}: {error['msg']}"[:300]
    except ValueError as invalid:  # json.JSONDecodeError, and a UnicodeDecodeError
        return None, f"it is not complete JSON ({str(invalid)[:200]})"
    if result.layer != layer:
        return None, f"it is the result of {result.layer.value}, not {layer.value}"
    if result.phase not in _DONE_PHASES:
        return None, f"its phase is {result.phase.value}, not Passed or Failed"
    # Messages quote the user's exceptions, which may quote the user's secrets; JSON (and so
    # status) has no NaN or infinity.
    checks = [
        c.model_copy(
            update={
                "message": redact(c.message),
                "value": _finite(c.value),
                "threshold": _finite(c.threshold),
            }
        )
        for c in result.checks
    ]
    # The layer's message is what its condition says: never empty, even if the result's is.
    message = redact(result.message) or f"{layer.value} {result.phase.value.lower()} " + (
        f"({len(checks)} checks; the result gave no summary)"
    )
    return result.model_copy(update={"message": message, "checks": checks}), ""


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _code_failure(layer: LayerName, job: JobFacts, pod: PodFacts | None, unreadable: str) -> str:
    if pod is None or pod.exit_code is None:
        return f"{layer.value}'s Job failed ({job.failed_reason}: {job.failed_message})"
    tail = redact(pod.termination_message.strip()[-1500:])
    local = f"`proctor pyramid run --layer {layer.value}`"
    if unreadable:
        return (
            f"{layer.value} ended (exit {pod.exit_code}) but its result, the termination "
            f"message, is unreadable: {unreadable}. Run the layer locally with {local} to see "
            "its checks, and check that the image runs the same Proctor as the operator "
            f"(the message must fit 4 KiB). Output:\n{tail}"
        )
    if pod.exit_code == 0:
        return (
            f"{layer.value} exited 0 but left no result in its termination message: does the "
            "image run `proctor pyramid run`?"
        )
    return (
        f"{layer.value} could not run the code (exit {pod.exit_code}); fix it and check it "
        f"locally with {local}. Output:\n{tail}"
    )


def _failed(entry: LayerResult, ended: datetime, check: str, message: str) -> LayerResult:
    return entry.model_copy(
        update={
            "phase": LayerPhase.FAILED,
            "completion_time": ended,
            "checks": [
                *entry.checks,
                CheckResult(name=check, verdict=CheckVerdict.FAILED, message=message[:4096]),
            ],
            "message": message[:4096],
        }
    )


def _infrastructure(
    pyramid: ValidationPyramid,
    obj: dict[str, Any],
    layer: LayerName,
    entry: LayerResult,
    cause: str,
    ended: datetime,
    now: datetime,
    settings: ControllerSettings,
    plan: Plan,
    due_now: bool = False,
) -> LayerResult:
    allowed = 1 + pyramid.spec.max_infrastructure_retries
    if entry.attempts >= allowed:
        failed = _failed(
            entry,
            ended,
            "infrastructure",
            f"{layer.value} failed {entry.attempts} times for infrastructure reasons, the "
            f"retry limit (spec.maxInfrastructureRetries {allowed - 1}); last: {cause}",
        )
        return failed
    due = now if due_now else ended + timedelta(seconds=retry_delay(entry.attempts, settings))
    if now < due:
        plan.requeue_after = (due - now).total_seconds()
        return entry.model_copy(
            update={
                "phase": LayerPhase.RUNNING,
                "message": f"attempt {entry.attempts} of {allowed} failed: {cause}; retrying at "
                f"{due.strftime('%H:%M:%S')} UTC (infrastructure trouble is retried, failed "
                "checks are not)",
            }
        )
    attempt = entry.attempts + 1
    plan.create.append(layer_job(pyramid, obj, layer, attempt))
    plan.events.append(
        Event(
            Reason.INFRASTRUCTURE_RETRYING.value,
            f"{layer.value} attempt {attempt} of {allowed} started after: {cause}",
            "Warning",
        )
    )
    return entry.model_copy(
        update={
            "phase": LayerPhase.RUNNING,
            "attempts": attempt,
            "job_name": names.layer_job_name(obj["metadata"]["name"], layer, attempt),
            "message": f"attempt {attempt} of {allowed} running; attempt {attempt - 1}: {cause}",
        }
    )


def _summarise(status: ValidationPyramidStatus, pyramid: ValidationPyramid, now: datetime) -> None:
    generation = pyramid.metadata.generation
    conditions = status.conditions
    for entry in status.layers:
        condition = _CONDITION[entry.layer]
        if entry.phase == LayerPhase.PASSED:
            state, reason = ConditionStatus.TRUE, Reason.CHECKS_PASSED
        elif entry.phase == LayerPhase.SKIPPED:
            state, reason = ConditionStatus.UNKNOWN, Reason.LAYER_SKIPPED
        elif entry.phase == LayerPhase.FAILED:
            state, reason = ConditionStatus.FALSE, _failure_reason(entry)
        elif "retrying" in entry.message or entry.attempts > 1:
            state, reason = ConditionStatus.UNKNOWN, Reason.INFRASTRUCTURE_RETRYING
        else:
            state, reason = ConditionStatus.UNKNOWN, Reason.LAYER_RUNNING
        conditions = set_condition(
            conditions, condition, state, reason, entry.message, generation, now
        )
    phases = [entry.phase for entry in status.layers]
    failed = next((e for e in status.layers if e.phase == LayerPhase.FAILED), None)
    if failed is not None:
        status.phase = PyramidPhase.FAILED
        ready = (
            ConditionStatus.FALSE,
            Reason.PYRAMID_FAILED,
            f"{failed.layer.value} failed: {failed.message}",
        )
    elif len(phases) == len(LAYERS) and all(p in _DONE for p in phases):
        status.phase = PyramidPhase.PASSED
        skipped = [e.layer.value for e in status.layers if e.phase == LayerPhase.SKIPPED]
        note = f" ({', '.join(skipped)} skipped by the spec)" if skipped else ""
        ready = (
            ConditionStatus.TRUE,
            Reason.PYRAMID_PASSED,
            f"every enabled layer passed{note}: this code may spend GPU time",
        )
    else:
        status.phase = PyramidPhase.RUNNING if status.layers else PyramidPhase.PENDING
        running = next((e for e in status.layers if e.phase not in _DONE), None)
        ready = (
            ConditionStatus.UNKNOWN,
            Reason.PYRAMID_RUNNING,
            f"{running.layer.value}: {running.message}" if running else "starting",
        )
    status.conditions = set_condition(
        conditions, PyramidConditionType.READY, *ready, generation, now
    )
    current = failed or next((e for e in status.layers if e.phase not in _DONE), None)
    if current is None and status.layers:
        current = status.layers[-1]
    status.current_layer = current.layer if current else None
    checks = [c for e in status.layers for c in e.checks]
    status.total_checks = len(checks)
    status.passed_checks = sum(1 for c in checks if c.verdict == CheckVerdict.PASSED)


def _failure_reason(entry: LayerResult) -> Reason:
    names_of_failed = {c.name for c in entry.checks if c.verdict == CheckVerdict.FAILED}
    if "timeout" in names_of_failed:
        return Reason.LAYER_TIMED_OUT
    if "infrastructure" in names_of_failed:
        return Reason.INFRASTRUCTURE_FAILED
    return Reason.CHECKS_FAILED


def _transitions(old: ValidationPyramidStatus, new: ValidationPyramidStatus) -> list[Event]:
    """An Event for every layer and pyramid phase that changed."""
    events = []
    before = {e.layer: e for e in old.layers}
    for entry in new.layers:
        previous = before.get(entry.layer)
        if previous is not None and previous.phase == entry.phase:
            continue
        if entry.phase == LayerPhase.RUNNING and (previous is None or previous.phase == "Pending"):
            events.append(Event("LayerStarted", f"{entry.layer.value} started ({entry.job_name})"))
        elif entry.phase == LayerPhase.PASSED:
            events.append(Event("LayerPassed", f"{entry.layer.value}: {entry.message}"))
        elif entry.phase == LayerPhase.FAILED:
            events.append(Event("LayerFailed", f"{entry.layer.value}: {entry.message}", "Warning"))
        elif entry.phase == LayerPhase.SKIPPED:
            events.append(Event("LayerSkipped", f"{entry.layer.value}: {entry.message}"))
    if new.phase != old.phase and new.phase in (PyramidPhase.PASSED, PyramidPhase.FAILED):
        ready = next(c for c in new.conditions if c.type == PyramidConditionType.READY)
        kind = "Normal" if new.phase == PyramidPhase.PASSED else "Warning"
        events.append(Event(ready.reason, ready.message, kind))
    return events


def layer_durations(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(layer, phase, seconds) of layers that finished between two statuses, for metrics."""
    before = {e["layer"]: e.get("phase") for e in (old or {}).get("layers") or []}
    finished = []
    for entry in new.get("layers") or []:
        if entry.get("phase") in ("Passed", "Failed") and before.get(entry["layer"]) != entry.get(
            "phase"
        ):
            start, end = entry.get("startTime"), entry.get("completionTime")
            if start and end:
                seconds = (
                    datetime.fromisoformat(end.replace("Z", "+00:00"))
                    - datetime.fromisoformat(start.replace("Z", "+00:00"))
                ).total_seconds()
                finished.append((entry["layer"], entry["phase"], seconds))
    return finished
