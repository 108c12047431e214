"""L2: a learning rate so small (1e-8) the parameters move but the loss does not fall."""

from planted_common import setup as base


def setup(config):
    return base(lr=1e-8)
