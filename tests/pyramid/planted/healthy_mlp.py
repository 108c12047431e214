"""The control: no bug. Every layer must pass."""

from planted_common import setup as base


def setup(config):
    return base()
