"""L1: the first layer's output is detached, so it never learns."""

from planted_common import MLP
from planted_common import setup as base


class Detached(MLP):
    def forward(self, x):
        return self.fc2(self.act(self.fc1(x).detach()))


def setup(config):
    return base(model=Detached())
