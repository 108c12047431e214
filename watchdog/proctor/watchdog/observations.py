"""What the watchdog observes, in plain data: the trainer's metrics over time, the GPUs' DCGM
fields, checkpoints. Sources fill a `Window`; detectors read it and never do I/O."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from proctor.api.v1alpha1 import AnomalyKind
from proctor.api.v1alpha1.experiment import Severity


@dataclass(frozen=True)
class TrainerSample:
    """One read of the trainer's Prometheus endpoint (`proctor_train_*`)."""

    time: float  # unix seconds when read
    reachable: bool = True  # False: the endpoint did not answer (the other fields are None)
    step: int | None = None
    loss: float | None = None  # may be nan or inf: that is a finding, not a parse error
    samples_per_second: float | None = None
    tokens_per_second: float | None = None
    mfu: float | None = None
    step_seconds: float | None = None  # mean wall time per step over the trainer's last window
    last_checkpoint_time: float | None = None  # unix seconds; None before the first checkpoint
    last_checkpoint_step: int | None = None
    unreadable: str | None = None  # answered, but (some of) the answer did not parse: what


@dataclass(frozen=True)
class LossPoint:
    """A loss the trainer logged (one per logging window, from its JSON-lines file)."""

    time: float
    step: int
    loss: float


@dataclass(frozen=True)
class GpuSample:
    """One GPU (or MIG instance) of this pod, from DCGM. Fields DCGM does not export are None
    (profiling fields such as SM_ACTIVE are off by default)."""

    time: float
    gpu: str  # "0", or "0/1" for MIG instance 1 of GPU 0
    uuid: str | None = None
    model: str | None = None
    utilization: float | None = None  # DCGM_FI_DEV_GPU_UTIL, percent 0-100
    tensor_active: float | None = None  # DCGM_FI_PROF_PIPE_TENSOR_ACTIVE, ratio 0-1
    sm_active: float | None = None  # DCGM_FI_PROF_SM_ACTIVE, ratio 0-1
    fb_used_mib: float | None = None  # DCGM_FI_DEV_FB_USED
    fb_free_mib: float | None = None  # DCGM_FI_DEV_FB_FREE
    xid: int | None = None  # DCGM_FI_DEV_XID_ERRORS: the last XID seen; it never resets

    @property
    def memory_ratio(self) -> float | None:
        if self.fb_used_mib is None or self.fb_free_mib is None:
            return None
        total = self.fb_used_mib + self.fb_free_mib
        return self.fb_used_mib / total if total > 0 else None


@dataclass
class Window:
    """Recent history, bounded: what detectors judge and what a bundle shows."""

    max_points: int = 2000
    trainer: deque[TrainerSample] = field(default_factory=deque)
    losses: deque[LossPoint] = field(default_factory=deque)
    gpus: deque[GpuSample] = field(default_factory=deque)

    def add_trainer(self, sample: TrainerSample) -> None:
        _append(self.trainer, sample, self.max_points)

    def add_loss(self, point: LossPoint) -> None:
        _append(self.losses, point, self.max_points)

    def add_gpus(self, samples: list[GpuSample]) -> None:
        for sample in samples:
            _append(self.gpus, sample, self.max_points * 8)

    def latest_gpus(self) -> list[GpuSample]:
        """The newest sample of every GPU."""
        newest: dict[str, GpuSample] = {}
        for sample in self.gpus:
            newest[sample.gpu] = sample
        return list(newest.values())


def _append(queue: deque[Any], item: Any, limit: int) -> None:
    queue.append(item)
    while len(queue) > limit:
        queue.popleft()


@dataclass(frozen=True)
class Context:
    """What detectors need to know besides the metrics."""

    now: float  # unix seconds
    started: float  # when the watchdog (and so, about, the trainer) started
    warmup_seconds: float  # no throughput, MFU or GPU-idle findings before started + warmup
    checkpoint_every_seconds: float | None = None  # the spec's interval, if checkpointing is on
    checkpoint_every_steps: int | None = None
    trainer_exited: bool = False  # the trainer container has terminated (from the pod)
    trainer_exit_code: int | None = None


@dataclass(frozen=True)
class Finding:
    """An anomaly with its evidence. `key` identifies the incident: the same key again is the
    same incident (one bundle), a new key is a new one."""

    kind: AnomalyKind
    severity: Severity
    message: str
    key: str
    evidence: dict[str, float | int | str | None] = field(default_factory=dict)
    step: int | None = None
