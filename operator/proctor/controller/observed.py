"""What the operator reads back from Jobs and their pods, reduced to what its decisions need.

Kubernetes reports a pod's end in several places (pod phase and reason, container state,
conditions); these functions read them in one place, so the reconcilers decide on plain facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Reasons a pod or container reports when the machine, not the code, ended or blocked it.
INFRASTRUCTURE_REASONS = {
    "OOMKilled": "the container ran out of memory (OOMKilled): raise resources.memory",
    "Evicted": "the pod was evicted from its node",
    "NodeLost": "the node running the pod was lost",
    "Preempted": "the pod was preempted by a higher-priority pod",
    "DeadlineExceeded": "the pod's deadline passed",
    "ErrImagePull": "the image could not be pulled",
    "ImagePullBackOff": "the image could not be pulled",
    "CreateContainerConfigError": "the container's configuration could not be prepared",
    "CreateContainerError": "the container could not be created",
    "ContainerCannotRun": "the container runtime could not start the container",
    "UnexpectedAdmissionError": "the node refused the pod",
}
KILLED_BY_SIGNAL = {137: "SIGKILL", 143: "SIGTERM"}


@dataclass(frozen=True)
class PodFacts:
    name: str
    phase: str
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    terminated_reason: str = ""
    termination_message: str = ""
    waiting_reason: str = ""
    waiting_message: str = ""
    unschedulable: str = ""
    disrupted: str = ""  # the DisruptionTarget condition's reason, when the pod has one
    index: int | None = None  # completion index in an Indexed Job
    ip: str = ""

    @property
    def infrastructure_cause(self) -> str | None:
        """Why the machine (not the code) ended or blocks this pod, or None."""
        for reason in (self.reason, self.terminated_reason, self.waiting_reason):
            if reason in INFRASTRUCTURE_REASONS:
                detail = self.message or self.waiting_message
                text = INFRASTRUCTURE_REASONS[reason]
                return f"{text} ({reason}{': ' + detail if detail else ''})"
        if self.disrupted:
            return f"the pod was disrupted ({self.disrupted}: {self.message or 'no message'})"
        if self.exit_code in KILLED_BY_SIGNAL and not self.termination_message.startswith("{"):
            signal = KILLED_BY_SIGNAL[self.exit_code]
            return f"the container was killed by {signal} (exit {self.exit_code}) from outside"
        return None

    @property
    def blocked(self) -> str:
        """Why a pod that has not finished is not running, or ''."""
        if self.unschedulable:
            return f"pod {self.name} cannot be scheduled: {self.unschedulable}"
        if self.waiting_reason and self.waiting_reason not in (
            "ContainerCreating",
            "PodInitializing",
        ):
            detail = f": {self.waiting_message}" if self.waiting_message else ""
            return f"pod {self.name} is waiting: {self.waiting_reason}{detail}"
        return ""


@dataclass(frozen=True)
class JobFacts:
    name: str
    labels: dict[str, str]
    active: bool
    suspended: bool
    complete: bool
    failed: bool
    failed_reason: str = ""
    failed_message: str = ""
    start_time: datetime | None = None
    finish_time: datetime | None = None
    pods: tuple[PodFacts, ...] = ()

    @property
    def last_pod(self) -> PodFacts | None:
        """The pod that tells how the Job ended: a failed one when there is one."""
        failed = [p for p in self.pods if p.phase == "Failed"]
        candidates = failed or list(self.pods)
        return candidates[-1] if candidates else None


def pod_facts(pod: dict[str, Any], container: str) -> PodFacts:
    status = pod.get("status") or {}
    meta = pod["metadata"]
    facts: dict[str, Any] = {
        "name": meta["name"],
        "phase": status.get("phase", "Pending"),
        "reason": status.get("reason", ""),
        "message": status.get("message", ""),
        "ip": status.get("podIP", ""),
    }
    index = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
    if index is not None and index.isdigit():
        facts["index"] = int(index)
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            facts["unschedulable"] = condition.get("message", "Unschedulable")
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            facts["disrupted"] = condition.get("reason", "DisruptionTarget")
    for entry in status.get("containerStatuses") or []:
        if entry.get("name") != container:
            continue
        state = entry.get("state") or {}
        if "terminated" in state:
            terminated = state["terminated"]
            facts["exit_code"] = terminated.get("exitCode")
            facts["terminated_reason"] = terminated.get("reason", "")
            facts["termination_message"] = terminated.get("message", "")
        elif "waiting" in state:
            facts["waiting_reason"] = state["waiting"].get("reason", "")
            facts["waiting_message"] = state["waiting"].get("message", "")
    return PodFacts(**facts)


def job_facts(job: dict[str, Any], pods: list[dict[str, Any]], container: str) -> JobFacts:
    status = job.get("status") or {}
    conditions = {
        c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"
    }
    failed = conditions.get("Failed")
    finished = failed or conditions.get("Complete")
    uid = job["metadata"].get("uid")
    own = [
        p
        for p in pods
        if any(ref.get("uid") == uid for ref in p["metadata"].get("ownerReferences") or [])
    ]
    own.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    return JobFacts(
        name=job["metadata"]["name"],
        labels=dict(job["metadata"].get("labels") or {}),
        active=finished is None and not job.get("spec", {}).get("suspend", False),
        suspended=bool(job.get("spec", {}).get("suspend")) or "Suspended" in conditions,
        complete="Complete" in conditions,
        failed=failed is not None,
        failed_reason=(failed or {}).get("reason", ""),
        failed_message=(failed or {}).get("message", ""),
        start_time=_time(status.get("startTime")),
        finish_time=_time(
            status.get("completionTime") or (finished or {}).get("lastTransitionTime")
        ),
        pods=tuple(pod_facts(p, container) for p in own),
    )


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
