"""The model's core module; it should not need anything from tests/."""

from leaky.tests.helpers import tiny_config  # the bug: production code importing test code


def setup(config):
    import planted_common

    return planted_common.setup(**tiny_config())
