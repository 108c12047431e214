"""The digits MLP whose loop hangs at step 200 (a deadlocked loader, a collective that never
returns): the process lives, the step stops."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "digits"))
import digits_mlp


def setup(config):
    parts = digits_mlp.setup({})
    healthy, calls = parts["loss_fn"], [0]

    def loss_fn(model, batch):
        calls[0] += 1
        if calls[0] == int(config.get("hang_at", 200)):
            time.sleep(3600)
        return healthy(model, batch)

    parts["loss_fn"] = loss_fn
    return parts
