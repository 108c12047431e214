"""The Experiment resource: a hypothesis, the code that tests it, and the run's record.

Lifecycle (status.phase): Pending -> Validating (a ValidationPyramid) -> Training (a Job with the
watchdog sidecar) -> Succeeded or Failed -> Concluded once spec.conclusion is written. Blocked and
Queued are waits, not failures. The hypothesis and code are frozen once validation starts, so the
record always describes what actually ran.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from proctor.api.v1alpha1._base import (
    DNS_SUBDOMAIN_PATTERN,
    LONG_TEXT,
    MAX_LABEL_VALUE,
    NAME_LENGTH_RULE,
    NAME_TOO_LONG,
    SHORT_TEXT,
    ApiModel,
    Duration,
    LongText,
    ObjectName,
    ShortText,
    StorageURI,
    cel_rule,
    cel_rules,
    list_map,
)
from proctor.api.v1alpha1.code import CodeSpec
from proctor.api.v1alpha1.compute import Resources, Scheduling, TrainingResources
from proctor.api.v1alpha1.conditions import Condition
from proctor.api.v1alpha1.metadata import TopLevelObject
from proctor.api.v1alpha1.pyramid import LayerName, PyramidLayers, PyramidPhase

UNBOUNDED_BUDGET = "set maxSteps, maxDuration or both: an unbounded run wastes GPU time"
SPEC_PATH_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"


class CitationKind(StrEnum):
    EXPERIMENT = "Experiment"
    PAPER = "Paper"
    NOTE = "Note"


class Citation(ApiModel):
    """Where the idea came from: a prior experiment, a paper, or a strategy note."""

    kind: CitationKind = Field(
        description="Experiment (a prior Experiment in this namespace, by name), Paper (a "
        "title, DOI or arXiv id) or Note (a strategy note, in a sentence or two)."
    )
    ref: LongText = Field(description="The experiment's name, the paper, or the note itself.")


class Hypothesis(ApiModel):
    """The claim this experiment tests. Every field is required: an experiment without a
    hypothesis is a random walk, and Proctor refuses it."""

    statement: LongText = Field(
        description="What you believe, and why, in a sentence or two, for example: 'Pre-norm "
        "residual blocks let the 12-layer model train at twice the learning rate without "
        "divergence.'"
    )
    expected_outcome: LongText = Field(
        description="The measurable result that would confirm it, with a number, for example: "
        "'validation loss below 2.10 at 20k steps, versus 2.25 for the baseline'."
    )
    inspired_by: list[Citation] = Field(
        min_length=1,
        max_length=16,
        description="At least one source of the idea: a prior experiment, a paper or a note.",
    )
    independent_variable: Annotated[
        str, StringConstraints(pattern=SPEC_PATH_PATTERN, max_length=SHORT_TEXT)
    ] = Field(
        description="The one setting this experiment changes, as a dotted path under spec, for "
        "example code.config.lr or training.resources.gpus. With spec.baseline set, any other "
        "difference from the baseline blocks the experiment."
    )
    controls: list[ShortText] = Field(
        min_length=1,
        max_length=32,
        description="What is held fixed so the result is attributable, for example 'seed 0', "
        "'dataset digits, 1797 samples', 'same image as the baseline'.",
    )


class Budget(ApiModel):
    """Limits of the training run; training stops at whichever comes first."""

    max_duration: Duration | None = Field(
        default=None,
        description="Wall-clock limit like 30m or 12h; becomes the Job's activeDeadlineSeconds.",
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps after which training stops and succeeds."
    )

    @model_validator(mode="after")
    def _at_least_one_limit(self) -> Budget:
        if self.max_duration is None and self.max_steps is None:
            raise ValueError(UNBOUNDED_BUDGET)
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule("has(self.maxSteps) || has(self.maxDuration)", UNBOUNDED_BUDGET)
        )
    )


class CheckpointSpec(ApiModel):
    """Where and how often training saves state, so a restart resumes instead of starting over."""

    uri: StorageURI = Field(
        description="Where checkpoints go: s3://bucket/prefix or file:///path. Each experiment "
        "writes under <uri>/<namespace>/<name>/, so experiments can share one bucket."
    )
    every_steps: int | None = Field(
        default=None, ge=1, description="Save every this many steps (in addition to everyDuration)."
    )
    every_duration: Duration = Field(
        default="30m", description="Save at least this often in wall-clock time."
    )
    keep_last: int = Field(
        default=3, ge=1, le=1000, description="Checkpoints kept; older ones are deleted."
    )


class TrainingSpec(ApiModel):
    """The training run that follows a passed pyramid."""

    budget: Budget
    resources: TrainingResources = Field(default_factory=TrainingResources)
    scheduling: Scheduling = Field(
        default_factory=Scheduling,
        description="Node selection for training pods (and validation pods, which run where "
        "training will).",
    )
    service_account_name: ObjectName | None = Field(
        default=None,
        description="ServiceAccount of the training pods, for example one bound to a cloud role "
        "that may write the checkpoint bucket. The watchdog always runs read-only under its own.",
    )
    nodes: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Pods that train together (torchrun across nodes) when greater than 1.",
    )
    checkpoint: CheckpointSpec | None = Field(
        default=None, description="Checkpointing; without it a restarted run starts from step 0."
    )
    queue_name: (
        Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=MAX_LABEL_VALUE)]
        | None
    ) = Field(
        default=None,
        description="Kueue LocalQueue to submit the training Job to; a suspended Job shows as "
        "Queued, not failed. At most 63 characters: it becomes the Job's "
        "kueue.x-k8s.io/queue-name label.",
    )
    command: list[Annotated[str, StringConstraints(max_length=LONG_TEXT)]] | None = Field(
        default=None,
        max_length=128,
        description="Run this instead of the default trainer (`proctor train`); the code must "
        "then report through proctor's telemetry library for the watchdog to see it.",
    )


class WatchdogThresholds(ApiModel):
    """When the watchdog reports an anomaly."""

    loss_spike_factor: float = Field(
        default=4.0,
        gt=1,
        description="A loss this many robust deviations (median absolute deviation) above the "
        "trailing median is a spike.",
    )
    stall_factor: float = Field(
        default=10.0,
        gt=1,
        description="No new step for this many times the median step time is a stall.",
    )
    min_mfu_ratio: float | None = Field(
        default=None, ge=0, le=1, description="MFU below this share of peak is reported."
    )
    throughput_drop_ratio: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Throughput falling below this share of its running level is reported.",
    )
    max_memory_ratio: float = Field(
        default=0.95, gt=0, le=1, description="GPU framebuffer use above this share is reported."
    )
    detect_plateau: bool = Field(
        default=False,
        description="Also report a plateau (no meaningful improvement of the loss over a long "
        "span). Off by default: many schedules plateau on purpose before a decay.",
    )
    max_checkpoint_age: Duration | None = Field(
        default=None,
        description="A last checkpoint older than this is reported; unset means twice the "
        "checkpoint interval.",
    )


class WatchdogSchedule(ApiModel):
    """How often the watchdog checks: densely at the start and near the end, sparsely between."""

    dense_interval: Duration = Field(
        default="15s", description="Check interval during warm-up and near the end of the budget."
    )
    sparse_interval: Duration = Field(
        default="2m", description="Check interval in the middle of the run."
    )
    warmup: Duration = Field(
        default="10m", description="How long after the start checks stay dense."
    )
    end_window_ratio: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of the budget at its end during which checks are dense again.",
    )


class MetricSources(ApiModel):
    """Where the watchdog reads metrics. The trainer's own endpoint is always read."""

    trainer_metrics_port: int = Field(
        default=9108, ge=1, le=65535, description="Port of the trainer's Prometheus endpoint."
    )
    prometheus_url: (
        Annotated[str, StringConstraints(pattern=r"^https?://", max_length=1024)] | None
    ) = Field(
        default=None,
        alias="prometheusURL",
        description="A Prometheus server that scrapes dcgm-exporter, for GPU metrics by pod.",
    )
    dcgm_exporter_url: (
        Annotated[str, StringConstraints(pattern=r"^https?://", max_length=1024)] | None
    ) = Field(
        default=None,
        alias="dcgmExporterURL",
        description="A dcgm-exporter metrics endpoint to scrape directly when there is no "
        "Prometheus.",
    )


class WatchdogSpec(ApiModel):
    """The read-only sidecar that watches training and writes recovery bundles."""

    enabled: bool = Field(default=True, description="Run the watchdog beside every training pod.")
    thresholds: WatchdogThresholds = Field(default_factory=WatchdogThresholds)
    schedule: WatchdogSchedule = Field(default_factory=WatchdogSchedule)
    metric_sources: MetricSources = Field(default_factory=MetricSources)


class AnomalyAction(StrEnum):
    NOTIFY = "Notify"
    STOP_TRAINING = "StopTraining"


class RecoverySpec(ApiModel):
    """What happens when the watchdog finds an anomaly."""

    bundle_uri: StorageURI | None = Field(
        default=None,
        alias="bundleURI",
        description="Where recovery bundles are written (s3://bucket/prefix or file:///path); "
        "unset uses the operator's default store. Bundles always land under the experiment's "
        "namespace and name.",
    )
    on_anomaly: AnomalyAction = Field(
        default=AnomalyAction.NOTIFY,
        description="Notify writes the bundle and records the anomaly; StopTraining also has the "
        "operator stop the training Job on a Critical anomaly, such as a non-finite loss or a "
        "fatal GPU error (the watchdog itself never intervenes).",
    )


class ValidationSkip(ApiModel):
    """Skipping the pyramid is allowed, but only on the record."""

    reason: LongText = Field(
        description="Why this code may train unvalidated, for example 'identical image and code "
        "to experiment lr-3e-4, which passed'."
    )


class ExperimentValidation(ApiModel):
    """How the experiment's code is validated before training."""

    layers: PyramidLayers = Field(default_factory=PyramidLayers)
    resources: Resources | None = Field(
        default=None,
        description="Compute for each validation pod. Unset uses spec.training.resources, so L0 "
        "measures throughput, memory and MFU on the device training will use.",
    )
    skip: ValidationSkip | None = Field(
        default=None, description="Skip the pyramid entirely, with a reason that is kept."
    )


class Verdict(StrEnum):
    EFFECTIVE = "effective"
    INEFFECTIVE = "ineffective"
    INCONCLUSIVE = "inconclusive"


EVIDENCE_WITHOUT_NUMBERS = (
    "spec.conclusion.evidence must cite numbers, for example 'val loss 2.07 vs 2.25 for the "
    "baseline at 20k steps': a verdict nobody can check against the record is an opinion"
)


class Conclusion(ApiModel):
    """What the experiment showed, written by whoever ran it (often an agent) after it ended."""

    verdict: Verdict = Field(
        description="effective (the hypothesis held), ineffective (it did not) or inconclusive."
    )
    evidence: LongText = Field(
        description="The numbers behind the verdict, for example 'val loss 2.07 vs 2.25 baseline "
        "at 20k steps, 3 seeds'."
    )
    learnings: LongText = Field(description="What the next experiment should take from this one.")

    @model_validator(mode="after")
    def _evidence_cites_numbers(self) -> Conclusion:
        if not any(character.isdigit() for character in self.evidence):
            raise ValueError(EVIDENCE_WITHOUT_NUMBERS)
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule("self.evidence.matches('[0-9]')", EVIDENCE_WITHOUT_NUMBERS)
        )
    )


class GuardrailOverride(ApiModel):
    """A guardrail waived on purpose, with the reason kept in the record."""

    reason: LongText = Field(
        description="Why the guardrail does not apply here, for example 'a seed sweep: the "
        "retry measures run-to-run variance'."
    )


class Guardrails(ApiModel):
    """Waivers of the operator's research guardrails; each needs a reason."""

    allow_multiple_changes: GuardrailOverride | None = Field(
        default=None,
        description="Let this experiment differ from spec.baseline in more than "
        "hypothesis.independentVariable (the differences are still listed in status).",
    )
    allow_retry: GuardrailOverride | None = Field(
        default=None,
        description="Let this experiment run the same code, config and training settings as an "
        "experiment that is already concluded.",
    )


class ExperimentSpec(ApiModel):
    """The experiment's hypothesis and everything needed to test it."""

    hypothesis: Hypothesis
    baseline: ObjectName | None = Field(
        default=None,
        description="Name of an Experiment in this namespace this one is compared against; only "
        "hypothesis.independentVariable may differ from it.",
    )
    code: CodeSpec
    validation: ExperimentValidation = Field(default_factory=ExperimentValidation)
    training: TrainingSpec
    watchdog: WatchdogSpec = Field(default_factory=WatchdogSpec)
    recovery: RecoverySpec = Field(default_factory=RecoverySpec)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    conclusion: Conclusion | None = Field(
        default=None,
        description="Written after the run has ended (not before): it ends the experiment.",
    )


class ExperimentPhase(StrEnum):
    PENDING = "Pending"
    BLOCKED = "Blocked"
    VALIDATING = "Validating"
    QUEUED = "Queued"
    TRAINING = "Training"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CONCLUDED = "Concluded"


class ValidationSummary(ApiModel):
    """The owned pyramid's progress, mirrored for `kubectl get exp`."""

    pyramid_name: ObjectName | None = Field(
        default=None, description="The ValidationPyramid this experiment owns."
    )
    phase: PyramidPhase | None = Field(
        default=None, description="Pending, Running, Passed or Failed."
    )
    layer: LayerName | None = Field(
        default=None, description="The layer running now, or the one that failed."
    )
    passed_checks: int | None = Field(default=None, ge=0, description="Checks passed so far.")
    total_checks: int | None = Field(default=None, ge=0, description="Checks run so far.")
    message: Annotated[str, StringConstraints(max_length=LONG_TEXT)] = Field(
        default="", description="The first failed check's teaching message, if any."
    )


class CheckpointRecord(ApiModel):
    """A checkpoint the trainer wrote."""

    uri: Annotated[str, StringConstraints(max_length=1024)] = Field(
        description="Full URI of the checkpoint, loadable to resume or evaluate."
    )
    step: int = Field(ge=0, description="The optimizer step whose state it holds.")
    time: datetime = Field(description="When it was completely written.")


class EvalRecord(ApiModel):
    """The latest evaluation of the model during training."""

    step: int = Field(ge=0, description="The optimizer step that was evaluated.")
    metrics: dict[str, float] = Field(
        default_factory=dict,
        max_length=32,
        description="Metric name to value, as the code's eval function returned them (for example "
        "loss, accuracy); what spec.hypothesis.expectedOutcome is judged against.",
    )


class TrainingProgress(ApiModel):
    """The training Job's progress, from the trainer's metrics."""

    job_name: ObjectName | None = Field(default=None, description="The training Job.")
    start_time: datetime | None = Field(default=None, description="When training started.")
    completion_time: datetime | None = Field(
        default=None, description="When the training Job finished, whatever the outcome."
    )
    step: int | None = Field(default=None, ge=0, description="Latest optimizer step.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    mfu: float | None = Field(
        default=None, ge=0, description="Model FLOPs utilisation, a ratio of peak (0.42 = 42%)."
    )
    samples_per_second: float | None = Field(
        default=None, ge=0, description="Training samples processed per second, recent average."
    )
    tokens_per_second: float | None = Field(
        default=None, ge=0, description="Throughput in tokens, when the code reports tokens."
    )
    last_checkpoint: CheckpointRecord | None = Field(
        default=None, description="The newest complete checkpoint."
    )
    last_eval: EvalRecord | None = Field(default=None, description="The newest evaluation metrics.")


class AnomalyKind(StrEnum):
    NON_FINITE_LOSS = "NonFiniteLoss"
    LOSS_SPIKE = "LossSpike"
    DIVERGENCE = "Divergence"
    PLATEAU = "Plateau"
    STALL = "Stall"
    THROUGHPUT_DROP = "ThroughputDrop"
    LOW_MFU = "LowMFU"
    GPU_IDLE = "GPUIdle"
    FATAL_XID = "FatalXID"
    MEMORY_NEAR_LIMIT = "MemoryNearLimit"
    CHECKPOINT_STALE = "CheckpointStale"
    TRAINER_GONE = "TrainerGone"


class Severity(StrEnum):
    WARNING = "Warning"
    CRITICAL = "Critical"


class Anomaly(ApiModel):
    """Something the watchdog found, with the bundle that explains it."""

    kind: AnomalyKind = Field(description="Which detector fired.")
    severity: Severity = Field(description="Warning or Critical.")
    time: datetime = Field(description="When it was detected.")
    step: int | None = Field(default=None, ge=0, description="The training step at detection.")
    message: Annotated[str, StringConstraints(max_length=LONG_TEXT)] = Field(
        description="What was seen, with the numbers."
    )
    bundle_uri: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, alias="bundleURI", description="The recovery bundle for an agent to read."
    )


class ExperimentStatus(ApiModel):
    """What the operator observed; written only by the operator."""

    phase: ExperimentPhase | None = Field(
        default=None,
        description="Pending, Blocked, Validating, Queued, Training, Succeeded, Failed or "
        "Concluded.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status describes."
    )
    validation: ValidationSummary | None = Field(
        default=None, description="The validation pyramid's progress."
    )
    training: TrainingProgress | None = Field(default=None, description="Training progress.")
    anomaly_count: int | None = Field(
        default=None,
        ge=0,
        description="Anomalies found so far (status.anomalies keeps the last 20).",
    )
    anomalies: list[Anomaly] = Field(
        default_factory=list, max_length=20, description="The most recent anomalies, oldest first."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Blocked, Validated, Trained, AnomalyDetected and Concluded, with reasons.",
        json_schema_extra=list_map("type"),
    )


# What ran must stay what the record says: once the operator has moved past Pending/Blocked,
# the whole spec is frozen except the conclusion, which is written after the run.
_STARTED = (
    "has(oldSelf.status) && has(oldSelf.status.phase) "
    "&& !(oldSelf.status.phase in ['Pending', 'Blocked'])"
)
_FROZEN_FIELDS = (
    "hypothesis",
    "baseline",
    "code",
    "validation",
    "training",
    "watchdog",
    "recovery",
    "guardrails",
)
_FROZEN_RULE = f"!({_STARTED}) || " + " && ".join(
    f"(has(self.spec.{f}) == has(oldSelf.spec.{f}) "
    f"&& (!has(self.spec.{f}) || self.spec.{f} == oldSelf.spec.{f}))"
    for f in _FROZEN_FIELDS
)
FROZEN_ONCE_STARTED = (
    "spec is frozen once validation has started (only spec.conclusion may still be written), "
    "so the record describes what ran: create a new Experiment (cite this one in "
    "spec.hypothesis.inspiredBy) to test a change"
)
_ENDED = (
    "has(oldSelf.status) && has(oldSelf.status.phase) "
    "&& oldSelf.status.phase in ['Succeeded', 'Failed', 'Concluded']"
)
_CONCLUSION_RULE = (
    "!has(self.spec.conclusion) "
    "|| (has(oldSelf.spec.conclusion) && self.spec.conclusion == oldSelf.spec.conclusion) "
    f"|| ({_ENDED})"
)
CONCLUSION_TOO_EARLY = (
    "spec.conclusion can be written only after the run has ended (phase Succeeded or Failed): "
    "a conclusion drawn before the evidence exists is a guess"
)
# Once accepted (phase Concluded) the conclusion is part of the record the study builds on: the
# digest and the next experiment's guardrails read it, so it is neither rewritten nor removed.
_CONCLUDED = (
    "has(oldSelf.status) && has(oldSelf.status.phase) && oldSelf.status.phase == 'Concluded'"
)
_CONCLUSION_FINAL_RULE = (
    f"!({_CONCLUDED}) || (has(self.spec.conclusion) == has(oldSelf.spec.conclusion) "
    "&& (!has(self.spec.conclusion) || self.spec.conclusion == oldSelf.spec.conclusion))"
)
CONCLUSION_FINAL = (
    "spec.conclusion is final once the Experiment is Concluded: the study's record builds on it; "
    "to revise it, create a new Experiment that cites this one (spec.hypothesis.inspiredBy)"
)


class Experiment(TopLevelObject):
    """An ML experiment: a hypothesis, code validated by the pyramid, a watched training run, and a
    conclusion."""

    api_version: Literal["proctor.dev/v1alpha1"] = Field(
        default="proctor.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["Experiment"] = Field(default="Experiment")
    spec: ExperimentSpec
    status: ExperimentStatus | None = None

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule(NAME_LENGTH_RULE, NAME_TOO_LONG, field_path=".metadata.name"),
            cel_rule(_FROZEN_RULE, FROZEN_ONCE_STARTED, field_path=".spec"),
            cel_rule(_CONCLUSION_RULE, CONCLUSION_TOO_EARLY, field_path=".spec.conclusion"),
            cel_rule(_CONCLUSION_FINAL_RULE, CONCLUSION_FINAL, field_path=".spec.conclusion"),
        )
    )
