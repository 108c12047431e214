"""L1: a bias so negative that every ReLU unit is dead from the start."""

import torch
from planted_common import MLP
from planted_common import setup as base


def setup(config):
    model = MLP()
    with torch.no_grad():
        model.fc1.bias.fill_(-20.0)
    return base(model=model)
