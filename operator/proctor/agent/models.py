"""The shapes every agent verb answers with: the `--output json` of the CLI and the structured
output of the MCP tools. Keys are camelCase like the Kubernetes API's; a field is added, never
renamed or removed, within proctor.dev/v1alpha1 (docs/agents.md lists them).

Every answer that leaves the agent a decision carries `next`: one sentence saying what the
research loop asks for now (wait, read the failed checks, conclude, ...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class AgentModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def as_json(self) -> dict[str, Any]:
        """The documented JSON shape (camelCase keys, ISO times)."""
        return self.model_dump(mode="json", by_alias=True)


class SubmittedObject(AgentModel):
    kind: str
    name: str
    namespace: str
    uid: str | None = None


class SubmitResult(AgentModel):
    submitted: list[SubmittedObject]
    next: str


class ConditionView(AgentModel):
    type: str
    status: str
    reason: str
    message: str = ""


class HypothesisView(AgentModel):
    statement: str
    expected_outcome: str
    independent_variable: str


class CheckView(AgentModel):
    name: str
    verdict: str
    value: float | None = None
    threshold: float | None = None
    unit: str | None = None
    message: str = ""


class LayerView(AgentModel):
    layer: str
    phase: str
    attempts: int = 0
    passed_checks: int = 0
    total_checks: int = 0
    failed_checks: list[CheckView] = Field(
        default_factory=list, description="Each failed check with its value, threshold and fix."
    )
    warnings: list[CheckView] = Field(default_factory=list)
    message: str = ""


class PyramidView(AgentModel):
    name: str | None = None
    phase: str | None = None
    current_layer: str | None = None
    skipped: str | None = Field(
        default=None, description="The reason on record when spec.validation.skip is set."
    )
    layers: list[LayerView] = Field(default_factory=list)


class CheckpointView(AgentModel):
    uri: str
    step: int


class EvalView(AgentModel):
    step: int
    metrics: dict[str, float]


class TrainingView(AgentModel):
    job_name: str | None = None
    step: int | None = None
    max_steps: int | None = None
    max_duration: str | None = None
    loss: float | None = None
    mfu: float | None = None
    samples_per_second: float | None = None
    tokens_per_second: float | None = None
    last_checkpoint: CheckpointView | None = None
    last_eval: EvalView | None = None


class AnomalyView(AgentModel):
    kind: str
    severity: str
    time: datetime
    step: int | None = None
    message: str
    bundle_uri: str | None = Field(default=None, alias="bundleURI")


class ConclusionView(AgentModel):
    verdict: str
    evidence: str
    learnings: str


class ExperimentReport(AgentModel):
    """What `proctor status NAME` answers."""

    name: str
    namespace: str
    phase: str = Field(description="Pending until the operator has seen the experiment.")
    study: str | None = Field(default=None, description="The proctor.dev/study label.")
    hypothesis: HypothesisView | None = None
    conditions: list[ConditionView] = Field(default_factory=list)
    pyramid: PyramidView | None = None
    training: TrainingView | None = None
    anomaly_count: int = 0
    anomalies: list[AnomalyView] = Field(default_factory=list)
    conclusion: ConclusionView | None = None
    next: str


WaitOutcome = Literal["reached", "ended", "blocked", "timedOut"]


class WaitResult(AgentModel):
    """What `proctor wait` answers: `reached` is true when the experiment is in an awaited phase;
    otherwise `outcome` says why the wait stopped (ended in another final phase, blocked by a
    guardrail that waiting cannot lift, or out of time)."""

    reached: bool
    outcome: WaitOutcome
    awaited: list[str]
    waited_seconds: float
    status: ExperimentReport


class BundleEntry(AgentModel):
    kind: str
    time: datetime | None = None
    uri: str
    summary: str
    severity: str | None = None
    step: int | None = None
    in_status: bool = Field(description="Listed in status.anomalies.")
    in_storage: bool = Field(description="Found under the experiment's bundle prefix.")


class BundleList(AgentModel):
    name: str
    namespace: str
    bundles: list[BundleEntry] = Field(description="Oldest first.")
    searched: list[str] = Field(description="The storage prefixes listed.")
    notes: list[str] = Field(
        default_factory=list, description="What could not be read, so absence is not health."
    )
    next: str


class FetchedBundle(AgentModel):
    uri: str
    directory: str
    files: list[str]
    recovery_prompt: str | None = Field(
        default=None, description="The local path of recovery.md, the prompt to read first."
    )
    next: str


class ConcludeResult(AgentModel):
    name: str
    namespace: str
    phase: str
    conclusion: ConclusionView
    next: str


class StudyDigest(AgentModel):
    study: str
    namespace: str
    digest_uri: str = Field(alias="digestURI")
    results_uri: str | None = Field(default=None, alias="resultsURI")
    concluded: int | None = None
    updated: str | None = None
    digest: str = Field(description="digest.md, as the operator wrote it.")
