"""L1: layers kept in a plain Python list: the optimizer (and state_dict) never see them."""

from torch import nn


class ListMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = [nn.Linear(64, 64), nn.ReLU()]  # should be nn.ModuleList
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def setup(config):
    from planted_common import setup as base

    return base(model=ListMLP())
