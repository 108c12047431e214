"""The digits MLP with a save that pauses half-way, so a test can kill the trainer mid-write."""

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "digits"))
import digits_mlp


def save(directory, model, optimizer):
    torch.save(model.state_dict(), directory / "model.pt")
    marker = os.environ.get("SAVE_STARTED")
    if marker:
        Path(marker).write_text(directory.name)
        time.sleep(float(os.environ.get("SAVE_PAUSE", "0")))
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")


def load(directory, model, optimizer):
    model.load_state_dict(torch.load(directory / "model.pt"))
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt"))


def setup(config):
    return {**digits_mlp.setup(config), "save_fn": save, "load_fn": load}


def nan_after_20(config):
    """A loss that turns NaN after 20 steps (a log of 0, an overflow in fp16...)."""
    parts = digits_mlp.setup({})
    healthy, calls = parts["loss_fn"], [0]

    def loss_fn(model, batch):
        calls[0] += 1
        loss = healthy(model, batch)
        return loss * float("nan") if calls[0] > 20 else loss

    parts["loss_fn"] = loss_fn
    return parts
