"""A tiny real model for Proctor's examples: an MLP on scikit-learn's handwritten digits.

The data (1,797 8x8 images) ships inside scikit-learn, so nothing is downloaded. This module is
ordinary training code: it does not import proctor. Proctor calls `setup(config)` and observes the
objects it returns from outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "hidden": 256,
    "lr": 3e-3,
    "batch_size": 64,
    "eval_fraction": 0.2,
}


class ShuffledBatches:
    """The training set already in memory as tensors, served a shuffled slice at a time.

    A DataLoader would index 64 samples one by one and collate them on every step, which for a
    model this small costs more than the step itself (Proctor's L0 reports it as data wait).
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
    ) -> None:
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.x[index], self.y[index]

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)


def setup(config: dict[str, Any]) -> dict[str, Any]:
    """Build model, optimizer, data and loss from `config` (keys of DEFAULTS; others refused)."""
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **config}
    generator = torch.Generator().manual_seed(int(cfg["seed"]))
    torch.manual_seed(int(cfg["seed"]))

    features, labels = load_digits(return_X_y=True)
    x = torch.tensor(features, dtype=torch.float32) / 16.0  # pixel intensities are 0..16
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.randperm(len(x), generator=generator)
    n_eval = int(len(x) * float(cfg["eval_fraction"]))
    eval_idx, train_idx = order[:n_eval], order[n_eval:]

    batch_size = int(cfg["batch_size"])
    train_data = ShuffledBatches(x[train_idx], y[train_idx], batch_size, generator)
    eval_data = DataLoader(TensorDataset(x[eval_idx], y[eval_idx]), batch_size=256)

    model = nn.Sequential(
        nn.Linear(64, int(cfg["hidden"])),
        nn.ReLU(),
        nn.Linear(int(cfg["hidden"]), 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        return nn.functional.cross_entropy(model(inputs), targets)

    @torch.no_grad()
    def eval_fn(model: nn.Module, data: DataLoader) -> dict[str, float]:
        model.eval()
        correct = total = 0
        loss = 0.0
        for inputs, targets in data:
            logits = model(inputs)
            loss += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
            correct += int((logits.argmax(dim=1) == targets).sum())
            total += len(targets)
        model.train()
        return {"loss": loss / total, "accuracy": correct / total}

    return {
        "model": model,
        "optimizer": optimizer,
        "train_data": train_data,
        "loss_fn": loss_fn,
        "eval_data": eval_data,
        "eval_fn": eval_fn,
        "batch_size": batch_size,
    }
