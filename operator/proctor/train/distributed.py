"""Data-parallel training when launched by torchrun (WORLD_SIZE > 1): one process per device.

The user's setup is unchanged: every rank builds the same model and optimizer, the model is wrapped
in DistributedDataParallel for the forward and backward (gradients are averaged across ranks), and
save/load see the unwrapped model. Each rank iterates the setup's train_data; to split the data,
shard it in setup with the RANK and WORLD_SIZE environment variables torchrun sets. Rank 0 writes
checkpoints; every rank reports its own metrics.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from proctor.pyramid.contract import TrainingSetup


@dataclass(frozen=True)
class Topology:
    """Where this process stands in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def writes_checkpoints(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Topology:
        env = os.environ
        return cls(
            int(env.get("RANK", "0")),
            int(env.get("LOCAL_RANK", "0")),
            int(env.get("WORLD_SIZE", "1")),
        )


def start(topology: Topology, device: torch.device) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPUs); returns this rank's device."""
    if not topology.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", topology.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def for_stepping(setup: TrainingSetup, topology: Topology, device: torch.device) -> TrainingSetup:
    """The setup the training step uses: with the model wrapped in DDP when distributed."""
    if not topology.distributed:
        return setup
    ids = [device.index] if device.type == "cuda" else None
    return dataclasses.replace(setup, model=DistributedDataParallel(setup.model, device_ids=ids))


def any_rank(flag: bool, topology: Topology, device: torch.device) -> bool:
    """True on every rank if it is true on any (so all ranks stop at the same step). On the
    training device, so it works with NCCL; one small all-reduce per step when distributed."""
    if not topology.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def barrier(topology: Topology) -> None:
    if topology.distributed and dist.is_initialized():
        dist.barrier()


def finish(topology: Topology) -> None:
    if topology.distributed and dist.is_initialized():
        dist.destroy_process_group()
