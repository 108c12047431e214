"""The digits MLP with two latent faults that only a long run shows.

- A "warm restart" multiplies the learning rate by `restart_factor` at step `restart_at`.
- The loss is written by hand as -log(softmax(logits)): fine while logits stay small, but once
  the restart blows them up the true class's probability underflows to 0, log(0) is -inf, and the
  next gradients turn every weight into NaN.

The pyramid passes (its runs are far shorter than `restart_at`); the watchdog catches the loss
going non-finite in training and writes a recovery bundle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from digits_mlp import setup as digits_setup
from torch import nn

OWN_KEYS = ("restart_at", "restart_factor")


class RestartingAdam(torch.optim.Adam):
    """Adam whose learning rate jumps by `factor` at optimizer step `restart_at`."""

    def __init__(
        self, params: Iterable[nn.Parameter], lr: float, restart_at: int, factor: float
    ) -> None:
        super().__init__(params, lr=lr)
        self.restart_at, self.factor, self.steps = restart_at, factor, 0

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        self.steps += 1
        if self.steps == self.restart_at:
            for group in self.param_groups:
                group["lr"] *= self.factor
        return super().step(closure)


def naive_cross_entropy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    probabilities = torch.softmax(model(inputs), dim=1)
    return -torch.log(probabilities[torch.arange(len(targets)), targets]).mean()


def setup(config: dict[str, Any]) -> dict[str, Any]:
    digits_config = {k: v for k, v in config.items() if k not in OWN_KEYS}
    parts = digits_setup(digits_config)
    parts["optimizer"] = RestartingAdam(
        parts["model"].parameters(),
        lr=float(config.get("lr", 3e-3)),
        restart_at=int(config.get("restart_at", 400)),
        factor=float(config.get("restart_factor", 100.0)),
    )
    parts["loss_fn"] = naive_cross_entropy
    return parts
