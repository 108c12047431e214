"""Running the user's training step from outside: zero grads, loss, backward, optimizer step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from proctor.pyramid.contract import ContractError, TrainingSetup


def train_step(setup: TrainingSetup, batch: Any) -> torch.Tensor:
    """One optimizer step on `batch`; returns the loss (detached, still on its device)."""
    setup.optimizer.zero_grad(set_to_none=True)
    loss = checked_loss(setup.loss_fn(setup.model, batch))
    loss.backward()
    setup.optimizer.step()
    return loss.detach()


def checked_loss(loss: Any) -> torch.Tensor:
    """The loss, if it is what backward() needs: a scalar tensor attached to the graph."""
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ContractError(
            f"loss_fn returned {shape}; it must return a scalar tensor (reduce with .mean())"
        )
    if not loss.requires_grad:
        raise ContractError(
            "loss_fn returned a tensor without a gradient: is it computed under torch.no_grad(), "
            "or from detached outputs?"
        )
    return loss


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """`model.eval()` for the block, then every module's own mode back (frozen parts stay eval)."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """A block whose random draws (dropout, sampling) are fixed by `seed`, leaving the caller's
    generators as they were; CUDA's included."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def untouched_buffers(model: nn.Module) -> Iterator[None]:
    """Buffers (BatchNorm running statistics...) as they were before the block."""
    saved = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved[name])
