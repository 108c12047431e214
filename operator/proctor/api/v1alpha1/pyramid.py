"""The ValidationPyramid resource: one run of the L0-L3 checks against some training code.

An Experiment owns one and waits for it to pass before training. An agent may also apply one on its
own, to validate code on cluster hardware without training. Layers run in order and stop at the
first failure; each layer's thresholds default to values that catch real bugs without false alarms.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from proctor.api.v1alpha1._base import (
    LONG_TEXT,
    NAME_LENGTH_RULE,
    NAME_TOO_LONG,
    ApiModel,
    Duration,
    ObjectName,
    StorageURI,
    cel_rule,
    cel_rules,
    list_map,
)
from proctor.api.v1alpha1.code import CodeSpec
from proctor.api.v1alpha1.compute import Resources, Scheduling
from proctor.api.v1alpha1.conditions import Condition
from proctor.api.v1alpha1.metadata import TopLevelObject

GRAD_BOUNDS_ORDER = "minGradNorm must be below maxGradNorm"
PYRAMID_SPEC_FROZEN = (
    "spec is frozen once the pyramid has started, so its status always describes the code and "
    "settings that ran: create a new ValidationPyramid instead"
)


class LayerName(StrEnum):
    L0 = "L0"
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"


class LayerSettings(ApiModel):
    """Settings every layer has."""

    enabled: bool = Field(
        default=True,
        description="Run this layer. Disabling one is recorded in status as Skipped, never Passed.",
    )
    timeout: Duration = Field(
        default="10m",
        description="Wall-clock limit of the layer's Job, like 90s or 10m; past it the layer fails "
        "with reason LayerTimedOut.",
    )


class EfficiencySettings(LayerSettings):
    """L0, engineering efficiency: is the hardware being used well?

    Measures step throughput, the share of step time spent waiting on the data loader, peak memory
    against the device, FLOPs per step and model FLOPs utilisation (MFU), and checks that the core
    code imports no test or validation code.
    """

    steps: int = Field(
        default=20,
        ge=1,
        le=10000,
        description="Training steps to time after warm-up, at least; steps shorter than a few "
        "milliseconds are timed for half a second so the figures are stable.",
    )
    warmup_steps: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Steps run before timing starts (compilation, caches, allocator growth).",
    )
    max_data_wait_ratio: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Largest share of step time the loop may spend blocked on the data loader; "
        "above it the GPU starves (add workers, pin memory, prefetch).",
    )
    max_memory_ratio: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Largest peak memory as a share of the device's memory; above it a longer "
        "sequence or a fragmentation spike will run out of memory mid-training.",
    )
    min_mfu_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Smallest acceptable model FLOPs utilisation (0.3 means 30% of peak). "
        "Unset reports MFU without judging it.",
    )
    peak_flops: float | None = Field(
        default=None,
        gt=0,
        description="Peak FLOP/s of one device, overriding the built-in table of GPUs. Required "
        "to report MFU on CPUs and on GPUs the table does not know.",
    )


class HealthSettings(LayerSettings):
    """L1, internal health: do gradients flow, do parameters learn, do activations live?"""

    steps: int = Field(
        default=5, ge=1, le=1000, description="Training steps to observe gradients and updates."
    )
    min_grad_norm: float = Field(
        default=1e-10,
        ge=0,
        description="Per-parameter gradient norm below which the gradient has vanished.",
    )
    max_grad_norm: float = Field(
        default=1e4,
        gt=0,
        description="Per-parameter gradient norm above which the gradient has exploded.",
    )
    max_dead_activation_ratio: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Largest share of units after a ReLU-like activation that may never fire "
        "on a batch.",
    )
    min_attention_entropy_ratio: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Smallest attention entropy as a share of its maximum (log of the key length) "
        "before attention counts as collapsed onto single tokens.",
    )

    @model_validator(mode="after")
    def _bounds_in_order(self) -> HealthSettings:
        if self.min_grad_norm >= self.max_grad_norm:
            raise ValueError(GRAD_BOUNDS_ORDER)
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule("self.minGradNorm < self.maxGradNorm", GRAD_BOUNDS_ORDER)
        )
    )

    max_embedding_norm_drift_ratio: float = Field(
        default=0.5,
        ge=0,
        description="Largest relative change of the mean embedding norm over the observed steps.",
    )


class OverfitSettings(LayerSettings):
    """L2, overfit: can the model memorise a tiny fixed subset? If not, it cannot learn at all."""

    samples: int = Field(
        default=256, ge=1, le=100000, description="Size of the fixed subset (100 to 1000 is usual)."
    )
    max_steps: int = Field(
        default=300, ge=1, le=100000, description="Steps allowed to reach the target loss."
    )
    target_loss_ratio: float = Field(
        default=0.1,
        gt=0,
        lt=1,
        description="The final loss must fall to this share of the first loss (0.1 = a tenth).",
    )
    loss_floor: float = Field(
        default=0.0,
        ge=0,
        description="The lowest loss the objective can reach: 0 for plain cross-entropy or "
        "squared error, above 0 with label smoothing or a regulariser in the loss. The target "
        "ratio applies to the part of the loss above it.",
    )
    min_monotonicity: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Smallest share of smoothed loss windows that must decrease; lower means the "
        "loss thrashes (learning rate too high, shuffled labels).",
    )


class EndToEndSettings(LayerSettings):
    """L3, end to end: data, steps, checkpoint save, fresh reload, identical behaviour, resume."""

    steps: int = Field(
        default=5, ge=1, le=10000, description="Training steps before the checkpoint round trip."
    )
    prediction_tolerance: float = Field(
        default=1e-6,
        ge=0,
        description="Largest absolute difference allowed between predictions before and after "
        "the reload.",
    )
    resume_loss_tolerance: float = Field(
        default=1e-5,
        ge=0,
        description="Largest relative difference between the next loss of the original run and "
        "of the resumed run.",
    )


class PyramidLayers(ApiModel):
    """Per-layer settings; every field has a default, so set only what you change."""

    l0: EfficiencySettings = Field(default_factory=EfficiencySettings)
    l1: HealthSettings = Field(default_factory=HealthSettings)
    l2: OverfitSettings = Field(default_factory=OverfitSettings)
    l3: EndToEndSettings = Field(default_factory=EndToEndSettings)


class ValidationPyramidSpec(ApiModel):
    """What to validate and how strictly."""

    code: CodeSpec
    layers: PyramidLayers = Field(default_factory=PyramidLayers)
    resources: Resources = Field(
        default_factory=Resources,
        description="Compute for each layer's pod. Ask for the GPUs training will use, so L0 "
        "measures the real hardware.",
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling,
        description="Node selection, for example the GPU product training will run on.",
    )
    max_infrastructure_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Retries of a layer whose pod failed for infrastructure reasons (evicted, "
        "OOMKilled, image pull); a failed check is never retried.",
    )
    report_uri: StorageURI | None = Field(
        default=None,
        alias="reportURI",
        description="Where each layer's full report is written (s3:// or file:///); unset uses "
        "the operator's default store.",
    )


class PyramidPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"


class LayerPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class CheckVerdict(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    WARNING = "Warning"
    SKIPPED = "Skipped"


class CheckResult(ApiModel):
    """One check of a layer: what was observed, against what, and what to do about it."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="The check, for example data_wait_ratio or params_updated."
    )
    verdict: CheckVerdict = Field(description="Passed, Failed, Warning or Skipped.")
    value: float | None = Field(default=None, description="The observed value, when numeric.")
    threshold: float | None = Field(
        default=None, description="The bound the value was judged against."
    )
    unit: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None, description="Unit of value and threshold, for example ratio or seconds."
    )
    message: Annotated[str, StringConstraints(max_length=LONG_TEXT)] = Field(
        default="", description="What was found and how to fix it."
    )


class LayerResult(ApiModel):
    """The outcome of one layer's Job."""

    layer: LayerName = Field(description="L0, L1, L2 or L3.")
    phase: LayerPhase = Field(description="Pending, Running, Passed, Failed or Skipped.")
    job_name: ObjectName | None = Field(default=None, description="The Job that ran the layer.")
    attempts: int = Field(
        default=0,
        ge=0,
        description="Jobs started for this layer (retries after infrastructure trouble).",
    )
    start_time: datetime | None = Field(default=None, description="When the layer's Job started.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    checks: list[CheckResult] = Field(
        default_factory=list, max_length=64, description="Every check the layer ran."
    )
    message: Annotated[str, StringConstraints(max_length=LONG_TEXT)] = Field(
        default="", description="Summary of the layer, naming the first failed check."
    )


class ValidationPyramidStatus(ApiModel):
    """What the operator observed; written only by the operator."""

    phase: PyramidPhase | None = Field(
        default=None, description="Pending, Running, Passed or Failed."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status describes."
    )
    current_layer: LayerName | None = Field(
        default=None, description="The layer running now, or the last one that ran."
    )
    passed_checks: int | None = Field(
        default=None, ge=0, description="Checks passed so far, over every layer."
    )
    total_checks: int | None = Field(
        default=None, ge=0, description="Checks run so far, over every layer."
    )
    layers: list[LayerResult] = Field(
        default_factory=list,
        max_length=4,
        description="One entry per layer that started, in order.",
        json_schema_extra=list_map("layer"),
    )
    report_uri: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, alias="reportURI", description="Where the full reports were written."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="L0Passed to L3Passed and Ready, with reasons and messages.",
        json_schema_extra=list_map("type"),
    )


class ValidationPyramid(TopLevelObject):
    """A run of the validation pyramid (L0 efficiency, L1 health, L2 overfit, L3 end to end)
    against training code, before it may spend GPU time."""

    api_version: Literal["proctor.dev/v1alpha1"] = Field(
        default="proctor.dev/v1alpha1", alias="apiVersion"
    )
    kind: Literal["ValidationPyramid"] = Field(default="ValidationPyramid")
    spec: ValidationPyramidSpec
    status: ValidationPyramidStatus | None = None

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel_rule(NAME_LENGTH_RULE, NAME_TOO_LONG, field_path=".metadata.name"),
            cel_rule(
                "!has(oldSelf.status) || !has(oldSelf.status.phase) "
                "|| oldSelf.status.phase == 'Pending' || self.spec == oldSelf.spec",
                PYRAMID_SPEC_FROZEN,
                field_path=".spec",
            ),
        )
    )
