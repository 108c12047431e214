"""The digits MLP with a planted bug: the hidden layer's output is detached from the graph.

A one-word slip (`.detach()` left over from a debugging session) that trains without an error:
the loss still falls a little, because the output layer learns, but the hidden layer never does.
Proctor's pyramid stops it at L1 (every trainable parameter must update) before any training.
"""

from __future__ import annotations

from typing import Any

import torch
from digits_mlp import setup as digits_setup
from torch import nn


class DetachedMLP(nn.Module):
    def __init__(self, inner: nn.Sequential) -> None:
        super().__init__()
        self.hidden, self.act, self.out = inner[0], inner[1], inner[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(x).detach()))  # the bug


def setup(config: dict[str, Any]) -> dict[str, Any]:
    parts = digits_setup(config)
    parts["model"] = model = DetachedMLP(parts["model"])
    parts["optimizer"] = torch.optim.Adam(model.parameters(), lr=float(config.get("lr", 3e-3)))
    return parts
