"""The recovery bundle: what the watchdog writes when it finds an anomaly, for an agent (or a
person) to diagnose the run without access to the cluster.

A bundle is a directory `<bundle uri>/<namespace>/<experiment>/<UTC time>-<kind>/` holding
`bundle.json` (this model), `metrics.png` (the window around the finding) and `recovery.md` (the
prompt for a recovery agent). The schema is versioned: readers check `schemaVersion` and refuse
versions they do not know rather than misread them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from proctor.api.v1alpha1._base import ApiModel
from proctor.api.v1alpha1.experiment import AnomalyKind, Hypothesis, Severity
from proctor.api.v1alpha1.pyramid import LayerResult

BUNDLE_SCHEMA_VERSION = "proctor.dev/bundle/v1"


class RecoveryStage(StrEnum):
    """Where the recovery should go back to in the research loop."""

    FIX_CODE = "FixCode"
    """The code is wrong (a crash, a starved GPU, a stall): fix it, rerun the pyramid."""
    ADJUST_HYPERPARAMETERS = "AdjustHyperparameters"
    """The code runs but the optimisation does not (loss spikes, divergence, memory): change the
    settings, resume from the last good checkpoint."""
    REVISIT_DESIGN = "RevisitDesign"
    """The run works as built but the idea does not (a plateau): revisit the hypothesis."""
    RETRY_ON_HEALTHY_HARDWARE = "RetryOnHealthyHardware"
    """The machine failed (a fatal XID): nothing to fix in the code; resume elsewhere."""


RECOVERY_STAGES: dict[AnomalyKind, RecoveryStage] = {
    AnomalyKind.NON_FINITE_LOSS: RecoveryStage.ADJUST_HYPERPARAMETERS,
    AnomalyKind.LOSS_SPIKE: RecoveryStage.ADJUST_HYPERPARAMETERS,
    AnomalyKind.DIVERGENCE: RecoveryStage.ADJUST_HYPERPARAMETERS,
    AnomalyKind.PLATEAU: RecoveryStage.REVISIT_DESIGN,
    AnomalyKind.STALL: RecoveryStage.FIX_CODE,
    AnomalyKind.THROUGHPUT_DROP: RecoveryStage.FIX_CODE,
    AnomalyKind.LOW_MFU: RecoveryStage.FIX_CODE,
    AnomalyKind.GPU_IDLE: RecoveryStage.FIX_CODE,
    AnomalyKind.FATAL_XID: RecoveryStage.RETRY_ON_HEALTHY_HARDWARE,
    AnomalyKind.MEMORY_NEAR_LIMIT: RecoveryStage.ADJUST_HYPERPARAMETERS,
    AnomalyKind.CHECKPOINT_STALE: RecoveryStage.FIX_CODE,
    AnomalyKind.TRAINER_GONE: RecoveryStage.FIX_CODE,
}


class BundleExperiment(ApiModel):
    namespace: str
    name: str
    uid: str | None = None
    hypothesis: Hypothesis | None = None
    spec: dict[str, Any] = Field(
        default_factory=dict,
        description="The Experiment's spec as applied; Secret references stay references.",
    )
    validation: dict[str, Any] | None = Field(
        default=None, description="The Experiment's status.validation summary."
    )


class BundleFinding(ApiModel):
    kind: AnomalyKind
    severity: Severity
    message: str
    key: str = Field(description="The incident's de-duplication key.")
    time: datetime
    step: int | None = None
    evidence: dict[str, float | int | str | None] = Field(default_factory=dict)


class MetricPoint(ApiModel):
    time: datetime
    step: int | None = None
    loss: float | None = None
    samples_per_second: float | None = None
    tokens_per_second: float | None = None
    mfu: float | None = None
    reachable: bool = True


class GpuPoint(ApiModel):
    time: datetime
    gpu: str
    uuid: str | None = None
    model: str | None = None
    utilization: float | None = None
    tensor_active: float | None = None
    sm_active: float | None = None
    fb_used_mib: float | None = None
    fb_free_mib: float | None = None
    xid: int | None = None


class CheckpointEntry(ApiModel):
    step: int
    uri: str


class ContainerState(ApiModel):
    name: str
    state: str
    reason: str | None = None
    exit_code: int | None = None
    restarts: int = 0


class PodState(ApiModel):
    name: str
    phase: str | None = None
    node: str | None = None
    containers: list[ContainerState] = Field(default_factory=list)


class Bundle(ApiModel):
    schema_version: Literal["proctor.dev/bundle/v1"] = "proctor.dev/bundle/v1"
    created: datetime
    uri: str = Field(description="Where this bundle lives (its directory).")
    experiment: BundleExperiment
    finding: BundleFinding
    recovery_stage: RecoveryStage
    pyramid: list[LayerResult] = Field(
        default_factory=list, description="The validation pyramid's layers, as they passed."
    )
    metrics: list[MetricPoint] = Field(default_factory=list, description="The trainer's window.")
    gpus: list[GpuPoint] = Field(default_factory=list, description="DCGM samples in the window.")
    dcgm_snapshot: list[GpuPoint] = Field(
        default_factory=list, description="The newest DCGM sample of each GPU."
    )
    checkpoints: list[CheckpointEntry] = Field(
        default_factory=list, description="Complete checkpoints, newest last."
    )
    pod: PodState | None = None
    log_tail: list[str] = Field(default_factory=list, description="The trainer's last lines.")
    notes: list[str] = Field(
        default_factory=list,
        description="What the watchdog could not see (a source down), so absence is not read as "
        "health.",
    )
