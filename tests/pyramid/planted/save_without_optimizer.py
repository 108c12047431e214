"""L3: the save function forgets the optimizer state."""

import torch
from planted_common import setup as base


def save(directory, model, optimizer):
    torch.save({"model": model.state_dict()}, directory / "weights.pt")


def load(directory, model, optimizer):
    model.load_state_dict(torch.load(directory / "weights.pt")["model"])


def setup(config):
    return base(save_fn=save, load_fn=load)
