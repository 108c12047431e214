"""L1: a deep stack initialised several times too large: gradients explode toward the input."""

import torch
from planted_common import setup as base
from torch import nn


class Deep(nn.Module):
    def __init__(self, depth=8, width=64, gain=8.0):
        super().__init__()
        layers = []
        for _ in range(depth):
            layer = nn.Linear(width, width)
            with torch.no_grad():
                layer.weight.mul_(gain)  # the bug: a gain far above what keeps variance steady
            layers += [layer, nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.body(x))


def setup(config):
    torch.manual_seed(0)
    return base(model=Deep())
