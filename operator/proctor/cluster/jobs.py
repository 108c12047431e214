"""The Job controller's decisions, as pure functions of a Job and its pods.

`reconcile_job` says which pods to create or delete and what the Job's status becomes; the pod
runner carries it out. Covers what Proctor relies on: completions and parallelism, Indexed Jobs
(index annotation, hostname, JOB_COMPLETION_INDEX), backoffLimit, podFailurePolicy (FailJob,
Ignore and Count on exit codes and pod conditions), activeDeadlineSeconds, and
`suspend` as Kueue uses it (a suspended Job has no pods and a Suspended condition).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from proctor.cluster.meta import name_suffix, parse_rfc3339, rfc3339

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


@dataclass
class JobDecision:
    """What to do about one Job now."""

    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


def _condition(kind: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    stamp = rfc3339(now)
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def _finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in job.get("status", {}).get("conditions") or []
    )


def reconcile_job(job: dict[str, Any], pods: list[dict[str, Any]], now: datetime) -> JobDecision:
    """The pods to create and delete and the status the Job should have, given its pods."""
    if _finished(job):  # most Jobs of a long-lived cluster: no copy of their status
        return JobDecision(status=job.get("status") or {})
    spec, status = job.get("spec", {}), copy.deepcopy(job.get("status") or {})
    decision = JobDecision(status=status)
    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions", 1 if not indexed else spec.get("parallelism", 1))
    parallelism = spec.get("parallelism", 1)
    backoff_limit = spec.get("backoffLimit", 6)
    active = [p for p in pods if p.get("status", {}).get("phase") in ("Pending", "Running")]
    succeeded = [p for p in pods if p.get("status", {}).get("phase") == "Succeeded"]
    failed = [p for p in pods if p.get("status", {}).get("phase") == "Failed"]
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Suspended"]
    # Failures an Ignore rule of the podFailurePolicy matches are not failures of the Job.
    counted = [p for p in failed if not _ignored(spec, p)]

    if spec.get("suspend"):
        decision.delete = [p["metadata"]["name"] for p in active]
        # Keep an existing Suspended condition as it is: re-stamping it would rewrite the Job
        # (and wake every watcher) on each pass.
        suspended = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Suspended"),
            _condition("Suspended", "JobSuspended", "Job suspended", now),
        )
        status.update(active=0, conditions=[*conditions, suspended])
        status.pop("startTime", None)
        return decision

    status.setdefault("startTime", rfc3339(now))
    done_indexes = {_index(p) for p in succeeded} if indexed else set()
    succeeded_count = len(done_indexes) if indexed else len(succeeded)
    status.update(
        active=len(active),
        succeeded=succeeded_count,
        failed=len(counted),
        conditions=conditions,
        ready=sum(1 for p in active if _ready(p)),
    )
    if indexed:
        status["completedIndexes"] = ",".join(str(i) for i in sorted(done_indexes))

    deadline = spec.get("activeDeadlineSeconds")
    if (
        deadline is not None
        and (now - parse_rfc3339(status["startTime"])).total_seconds() >= deadline
    ):
        return _fail(
            decision,
            active,
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
            now,
        )
    verdict = _pod_failure_policy(spec, failed)
    if verdict is not None:
        return _fail(decision, active, "PodFailurePolicy", verdict, now)
    if len(counted) > backoff_limit:
        return _fail(
            decision,
            active,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            now,
        )
    if succeeded_count >= completions:
        decision.delete = [p["metadata"]["name"] for p in active]
        status["conditions"] = [
            *conditions,
            _condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ),
            _condition(
                "Complete", "CompletionsReached", "Reached expected number of succeeded pods", now
            ),
        ]
        status["completionTime"] = rfc3339(now)
        status["active"] = 0
        return decision

    if indexed:
        busy = {_index(p) for p in active} | done_indexes
        for index in range(completions):
            if index not in busy and len(active) + len(decision.create) < parallelism:
                decision.create.append(_pod_for(job, index))
    else:
        wanted = min(parallelism, completions - succeeded_count) - len(active)
        decision.create = [_pod_for(job, None) for _ in range(max(0, wanted))]
    return decision


def _rule_matches(rule: dict[str, Any], pod: dict[str, Any]) -> str | None:
    """How `pod` matches a podFailurePolicy rule ('' or a description), or None."""
    status = pod.get("status") or {}
    codes = rule.get("onExitCodes")
    if codes is not None:
        for entry in status.get("containerStatuses") or []:
            if codes.get("containerName") not in (None, entry.get("name")):
                continue
            code = (entry.get("state") or {}).get("terminated", {}).get("exitCode")
            if code is None or code == 0:
                continue
            inside = code in codes.get("values", [])
            if inside == (codes.get("operator", "In") == "In"):
                return f"container {entry.get('name')} failed with exit code {code}"
        return None
    for wanted in rule.get("onPodConditions") or []:
        for condition in status.get("conditions") or []:
            if condition.get("type") == wanted.get("type") and condition.get(
                "status"
            ) == wanted.get("status", "True"):
                return f"pod has condition {condition['type']}"
    return None


def _first_rule(spec: dict[str, Any], pod: dict[str, Any]) -> tuple[int, str, str] | None:
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    for index, rule in enumerate(rules):
        how = _rule_matches(rule, pod)
        if how is not None:
            return index, rule.get("action", "Count"), how
    return None


def _pod_failure_policy(spec: dict[str, Any], failed: list[dict[str, Any]]) -> str | None:
    """The message of a FailJob rule one of the failed pods matches, or None."""
    for pod in failed:
        match = _first_rule(spec, pod)
        if match is not None and match[1] == "FailJob":
            index, _, how = match
            ns, name = pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
            return f"Pod {ns}/{name} {how}, matching FailJob rule at index {index}"
    return None


def _ignored(spec: dict[str, Any], pod: dict[str, Any]) -> bool:
    """A failure an Ignore rule says not to count against backoffLimit."""
    match = _first_rule(spec, pod)
    return match is not None and match[1] == "Ignore"


def _fail(
    decision: JobDecision, active: list[dict[str, Any]], reason: str, message: str, now: datetime
) -> JobDecision:
    decision.delete = [p["metadata"]["name"] for p in active]
    decision.create = []
    status = decision.status
    status["conditions"] = (status.get("conditions") or []) + [
        _condition("FailureTarget", reason, message, now),
        _condition("Failed", reason, message, now),
    ]
    status["active"] = 0
    return decision


def _index(pod: dict[str, Any]) -> int:
    return int(pod["metadata"].get("annotations", {}).get(INDEX_ANNOTATION, -1))


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def _pod_for(job: dict[str, Any], index: int | None) -> dict[str, Any]:
    """A pod from the Job's template, owned by the Job, as the Job controller makes it."""
    meta, template = job["metadata"], copy.deepcopy(job["spec"]["template"])
    pod_meta = template.get("metadata") or {}
    suffix = name_suffix()
    name = f"{meta['name']}-{index}-{suffix}" if index is not None else f"{meta['name']}-{suffix}"
    labels = {
        **(pod_meta.get("labels") or {}),
        "job-name": meta["name"],
        "batch.kubernetes.io/job-name": meta["name"],
        "controller-uid": meta["uid"],
        "batch.kubernetes.io/controller-uid": meta["uid"],
    }
    annotations = dict(pod_meta.get("annotations") or {})
    spec = template.get("spec", {})
    if index is not None:
        labels[INDEX_ANNOTATION] = str(index)
        annotations[INDEX_ANNOTATION] = str(index)
        spec["hostname"] = f"{meta['name']}-{index}"
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            env = container.setdefault("env", [])
            env.append(
                {
                    "name": "JOB_COMPLETION_INDEX",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}
                    },
                }
            )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace", "default"),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }
