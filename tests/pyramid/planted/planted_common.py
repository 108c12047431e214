"""A small healthy digits MLP that each planted-bug module changes in exactly one way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn


class Batches:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.x[index], self.y[index]


def data() -> tuple[torch.Tensor, torch.Tensor]:
    features, labels = load_digits(return_X_y=True)
    return torch.tensor(features, dtype=torch.float32) / 16.0, torch.tensor(labels)


class MLP(nn.Module):
    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def cross_entropy(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return nn.functional.cross_entropy(model(inputs), targets)


@torch.no_grad()
def accuracy(model: nn.Module, batches: Any) -> dict[str, float]:
    correct = total = 0
    for inputs, targets in batches:
        correct += int((model(inputs).argmax(1) == targets).sum())
        total += len(targets)
    return {"accuracy": correct / total}


def setup(
    model: nn.Module | None = None,
    lr: float = 3e-3,
    labels: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    torch.manual_seed(0)
    x, y = data()
    if labels is not None:
        y = labels(y)
    model = model or MLP()
    parts: dict[str, Any] = {
        "model": model,
        "optimizer": torch.optim.Adam(model.parameters(), lr=lr),
        "train_data": Batches(x[:1400], y[:1400], 64, seed=0),
        "loss_fn": cross_entropy,
        "eval_data": Batches(x[1400:], y[1400:], 256, seed=1),
        "eval_fn": accuracy,
    }
    parts.update(overrides)
    return parts
