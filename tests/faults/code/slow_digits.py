"""The digits example at a pace a test can act on: a step takes at least STEP_SECONDS.

Unthrottled, the example runs 300 steps in a second or two on an idle machine, so a test that
means to delete its pod at step 60 would find it finished. The pace comes from the test's own
wrapper, not from a knob in the example."""

from __future__ import annotations

import time
from typing import Any

from digits_mlp import setup as digits_setup

STEP_SECONDS = 0.05


def setup(config: dict[str, Any]) -> dict[str, Any]:
    parts = digits_setup(config)
    loss_fn = parts["loss_fn"]

    def paced_loss(model: Any, batch: Any) -> Any:
        time.sleep(STEP_SECONDS)
        return loss_fn(model, batch)

    parts["loss_fn"] = paced_loss
    return parts
