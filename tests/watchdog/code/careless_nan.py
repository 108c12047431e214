"""The digits MLP written carelessly: it prints its Hugging Face token at start-up (so the log
holds a secret), and its loss turns NaN after a learning-rate jump at step 30."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "digits"))
import digits_mlp


def setup(config):
    print(f"starting with HF_TOKEN={os.environ.get('HF_TOKEN')}", flush=True)
    print(f"raw token for debugging: {os.environ.get('HF_TOKEN')}", flush=True)
    parts = digits_mlp.setup({})
    healthy, calls = parts["loss_fn"], [0]
    jump_at = int(config.get("jump_at", 30))

    def loss_fn(model, batch):
        calls[0] += 1
        loss = healthy(model, batch)
        return loss * float("nan") if calls[0] > jump_at else loss

    parts["loss_fn"] = loss_fn
    return parts
