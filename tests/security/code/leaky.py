"""Training code that leaks on purpose, as careless code does: it prints its whole environment at
start-up (the Secret-held variables, and the storage keys an emulated pod inherits), then fails.

Config: `fail_at`, the step whose loss raises an exception quoting a bearer token and every
Secret-held value; `nan_at`, a step from which the loss is NaN instead, for the first attempt
only when `attempts` names a file (emulated pods share this machine's file system), so the
watchdog writes a bundle and the Job's retries then crash with the exception."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples" / "digits"))
import digits_mlp


def setup(config):
    print(f"environment: {dict(os.environ)}", flush=True)
    print(f"using HF_TOKEN={os.environ.get('HF_TOKEN')}", flush=True)
    first = True
    if config.get("attempts"):
        attempts = Path(config["attempts"])
        first = not attempts.exists()
        attempts.write_text(json.dumps({"seen": True}))
    parts = digits_mlp.setup({})
    healthy, calls = parts["loss_fn"], [0]
    nan_at = int(config["nan_at"]) if first and "nan_at" in config else None

    def loss_fn(model, batch):
        calls[0] += 1
        if nan_at is not None:
            loss = healthy(model, batch)
            return loss * float("nan") if calls[0] > nan_at else loss
        if calls[0] > int(config.get("fail_at", 0)):
            raise RuntimeError(
                f"the dataset server refused Authorization: Bearer {os.environ.get('BEARER')} "
                f"(salt {os.environ.get('SEED_SALT')}, url {os.environ.get('DATASET_URL')}, "
                f"token {os.environ.get('HF_TOKEN')}, key {os.environ.get('AWS_ACCESS_KEY_ID')})"
            )
        return healthy(model, batch)

    parts["loss_fn"] = loss_fn
    return parts
