"""A second control: BatchNorm and Dropout, whose train/eval behaviour and buffers the pyramid
must handle without a false alarm."""

from planted_common import setup as base
from torch import nn


class Regularised(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10)
        )

    def forward(self, x):
        return self.net(x)


def setup(config):
    return base(model=Regularised())
