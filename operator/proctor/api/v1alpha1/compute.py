"""Where and on what a pod runs: CPU, memory, GPUs, shared memory, node selection.

Validation pods default to the training pods' compute, so L0 measures the device training will use.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from proctor.api.v1alpha1._base import SHORT_TEXT, ApiModel, ObjectName, Quantity

LabelValue = Annotated[str, StringConstraints(max_length=63)]


class Resources(ApiModel):
    """Compute for one pod. CPU and memory are both requested and limited (Guaranteed QoS when
    both are set), so timing checks are not disturbed by neighbours."""

    cpu: Quantity | None = Field(
        default=None, description="CPU cores for the pod, for example 4 or 500m."
    )
    memory: Quantity | None = Field(
        default=None, description="Memory for the pod, for example 16Gi."
    )
    gpus: int = Field(default=0, ge=0, le=64, description="Whole GPUs per pod; 0 runs on CPU.")
    gpu_resource_name: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        default="nvidia.com/gpu",
        description="The extended resource that counts GPUs on your nodes, e.g. nvidia.com/gpu "
        "or a MIG profile such as nvidia.com/mig-1g.10gb.",
    )
    shared_memory: Quantity | None = Field(
        default=None,
        description="Size of /dev/shm (a memory-backed emptyDir). PyTorch DataLoader workers pass "
        "batches through it and crash with the container default of 64Mi; 2Gi to 16Gi is usual.",
    )


class TrainingResources(Resources):
    """Compute for one training pod; unlike validation-only pods, one GPU unless you say 0."""

    gpus: int = Field(default=1, ge=0, le=64, description="Whole GPUs per pod; 0 runs on CPU.")


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(ApiModel):
    """Lets the pod run on nodes with a matching taint, as GPU pools usually have."""

    key: Annotated[str, StringConstraints(max_length=SHORT_TEXT)] | None = Field(
        default=None, description="The taint key; unset with operator Exists matches every taint."
    )
    operator: TolerationOperator = Field(
        default=TolerationOperator.EQUAL, description="Equal (key and value) or Exists (key only)."
    )
    value: LabelValue | None = Field(default=None, description="The taint value, for Equal.")
    effect: TaintEffect | None = Field(
        default=None, description="NoSchedule, PreferNoSchedule or NoExecute; unset matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="For NoExecute: how long the pod stays after the taint."
    )


class Scheduling(ApiModel):
    """Which nodes the pods may run on, and how they are prioritised."""

    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels the pods require, for example "
        "nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the pods tolerate."
    )
    priority_class_name: ObjectName | None = Field(
        default=None, description="A PriorityClass for the pods (preemption order)."
    )
