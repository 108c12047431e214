"""Running the user's training step from outside: zero grads, loss, backward, optimizer step."""

from __future__ import annotations

from typing import Any

import torch

from proctor.pyramid.contract import TrainingSetup


def train_step(setup: TrainingSetup, batch: Any) -> torch.Tensor:
    """One optimizer step on `batch`; returns the loss (detached, still on its device)."""
    setup.optimizer.zero_grad(set_to_none=True)
    loss = setup.loss_fn(setup.model, batch)
    loss.backward()
    setup.optimizer.step()
    return loss.detach()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
