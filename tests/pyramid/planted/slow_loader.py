"""L0: a loader that sleeps on every batch (slow decoding, remote reads)."""

import time

from planted_common import Batches
from planted_common import setup as base


class SleepyBatches(Batches):
    def __iter__(self):
        for batch in super().__iter__():
            time.sleep(0.01)
            yield batch


def setup(config):
    parts = base()
    healthy = parts["train_data"]
    parts["train_data"] = SleepyBatches(healthy.x, healthy.y, healthy.batch_size, seed=0)
    return parts
