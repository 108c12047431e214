"""Status conditions in the Kubernetes convention, with the typed reasons Proctor sets.

A condition says one thing about an object (`Validated`, `L2Passed`, ...) as True, False or Unknown,
with a CamelCase `reason` a program can switch on and a `message` a person can act on. Reasons are
constants here, never free text at the call site, so agents can rely on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from proctor.api.v1alpha1._base import ApiModel


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ExperimentConditionType(StrEnum):
    BLOCKED = "Blocked"
    """A guardrail holds the experiment back; the message names what to do."""
    VALIDATED = "Validated"
    """The validation pyramid passed (True), failed (False) or is running (Unknown)."""
    TRAINED = "Trained"
    """The training Job finished within its budget (True) or failed (False)."""
    ANOMALY_DETECTED = "AnomalyDetected"
    """The watchdog reported at least one anomaly; see status.anomalies."""
    CONCLUDED = "Concluded"
    """spec.conclusion is written and valid."""


class PyramidConditionType(StrEnum):
    L0_PASSED = "L0Passed"
    L1_PASSED = "L1Passed"
    L2_PASSED = "L2Passed"
    L3_PASSED = "L3Passed"
    READY = "Ready"
    """Every enabled layer passed: the code may spend GPU time."""


class Reason(StrEnum):
    """Every `reason` Proctor writes into a condition."""

    # Validation pyramid and its layers.
    LAYER_PENDING = "LayerPending"
    LAYER_RUNNING = "LayerRunning"
    CHECKS_PASSED = "ChecksPassed"
    CHECKS_FAILED = "ChecksFailed"
    LAYER_SKIPPED = "LayerSkipped"
    LAYER_TIMED_OUT = "LayerTimedOut"
    INFRASTRUCTURE_RETRYING = "InfrastructureRetrying"
    INFRASTRUCTURE_FAILED = "InfrastructureFailed"
    PYRAMID_PASSED = "PyramidPassed"
    PYRAMID_FAILED = "PyramidFailed"
    PYRAMID_RUNNING = "PyramidRunning"
    VALIDATION_SKIPPED = "ValidationSkipped"
    # Training.
    QUEUED = "Queued"
    TRAINING_RUNNING = "TrainingRunning"
    TRAINING_SUCCEEDED = "TrainingSucceeded"
    TRAINING_FAILED = "TrainingFailed"
    BUDGET_EXCEEDED = "BudgetExceeded"
    STOPPED_ON_ANOMALY = "StoppedOnAnomaly"
    SPEC_INVALID = "SpecInvalid"
    """The object passed the API server's schema but not the operator's model; the message says
    which field."""
    JOB_REJECTED = "JobRejected"
    """The API server refused a Job the operator built from the spec; the message quotes it."""
    # Watchdog.
    NO_ANOMALIES = "NoAnomalies"
    ANOMALY_REPORTED = "AnomalyReported"
    # Guardrails (condition Blocked).
    NOT_BLOCKED = "NotBlocked"
    CITATION_MISSING = "CitationMissing"
    BASELINE_NOT_FOUND = "BaselineNotFound"
    MULTIPLE_VARIABLES_CHANGED = "MultipleVariablesChanged"
    VARIABLE_UNCHANGED = "VariableUnchanged"
    """With a baseline, nothing at or under hypothesis.independentVariable differs from it."""
    EARLIER_EXPERIMENT_NOT_CONCLUDED = "EarlierExperimentNotConcluded"
    DUPLICATE_OF_CONCLUDED = "DuplicateOfConcluded"
    NAME_TAKEN = "NameTaken"
    """A ValidationPyramid of the Experiment's name exists and is not its own."""
    UNSCHEDULABLE = "Unschedulable"
    """A training pod cannot be scheduled (GPUs, node selector, taints); the scheduler's words."""
    # Conclusion.
    AWAITING_CONCLUSION = "AwaitingConclusion"
    CONCLUSION_WRITTEN = "ConclusionWritten"
    CONCLUSION_INVALID = "ConclusionInvalid"


# The same constraints metav1.Condition carries in the real API.
ConditionTypeName = Annotated[
    str,
    StringConstraints(
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        max_length=316,
    ),
]
ReasonName = Annotated[
    str,
    StringConstraints(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", min_length=1, max_length=1024
    ),
]


class Condition(ApiModel):
    """One aspect of the object's state, in the Kubernetes condition convention."""

    type: ConditionTypeName = Field(
        description="What this condition is about, in CamelCase, for example Validated."
    )
    status: ConditionStatus = Field(
        description="True, False or Unknown: whether the condition holds right now."
    )
    reason: ReasonName = Field(
        description="A CamelCase word a program can switch on (for example ChecksFailed)."
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="What happened and what to do next, for a person or an agent.",
    )
    last_transition_time: datetime = Field(
        description="When status last changed (not when the condition was last written)."
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation this condition was computed from; older means stale.",
    )


ConditionType = ExperimentConditionType | PyramidConditionType


def set_condition(
    conditions: list[Condition],
    type_: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: str,
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> list[Condition]:
    """Conditions with `type_` set; `lastTransitionTime` only moves when `status` changes."""
    now = now or datetime.now(UTC)
    previous = find_condition(conditions, type_)
    transition = (
        now if previous is None or previous.status != status else previous.last_transition_time
    )
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    return (
        [updated if c.type == type_ else c for c in conditions]
        if previous
        else [*conditions, updated]
    )


def find_condition(conditions: list[Condition], type_: ConditionType) -> Condition | None:
    """The condition of `type_`, or None when it was never set."""
    return next((c for c in conditions if c.type == type_), None)
