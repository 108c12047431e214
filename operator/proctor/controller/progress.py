"""Training progress from the trainer's Prometheus endpoint (`proctor_train_*`), for status.

Only series labelled with this experiment count: on a shared host (the emulated cluster) another
run's trainer may answer on the same port.
"""

from __future__ import annotations

import math
import urllib.request
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

_GAUGES = {
    "proctor_train_step": "step",
    "proctor_train_loss": "loss",
    "proctor_train_mfu_ratio": "mfu",
    "proctor_train_samples_per_second": "samples_per_second",
    "proctor_train_tokens_per_second": "tokens_per_second",
    "proctor_train_last_checkpoint_step": "checkpoint_step",
    "proctor_train_last_checkpoint_timestamp_seconds": "checkpoint_time",
}


def parse_progress(text: str, experiment: str, namespace: str) -> dict[str, Any]:
    """The latest values in an exposition `text` for this experiment; {} when it has none.
    Raises ValueError on text that is not the Prometheus exposition format."""
    sample: dict[str, Any] = {}
    evals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            labels = metric.labels
            if labels.get("experiment") != experiment or labels.get("namespace") != namespace:
                continue
            value = float(metric.value)
            if metric.name == "proctor_train_eval_metric" and "metric" in labels:
                if math.isfinite(value):
                    evals[labels["metric"]] = value
            elif metric.name in _GAUGES and math.isfinite(value):
                sample[_GAUGES[metric.name]] = value
    if sample.get("step", 0) <= 0:
        return {}  # nothing logged yet: every gauge still reads its initial 0
    sample["step"] = int(sample["step"])
    for optional in ("mfu", "tokens_per_second"):  # 0 means never reported (no peak, no tokens)
        if sample.get(optional, 0) <= 0:
            sample.pop(optional, None)
    if "checkpoint_step" in sample:
        sample["checkpoint_step"] = int(sample["checkpoint_step"])
    if sample.get("checkpoint_time", 0) > 0:  # the gauge reads 0 until the first checkpoint
        sample["checkpoint_time"] = datetime.fromtimestamp(sample["checkpoint_time"], UTC)
    else:
        sample.pop("checkpoint_time", None)
        sample.pop("checkpoint_step", None)
    if evals:
        sample["eval"] = evals
    return sample


def read_progress(
    url: str, experiment: str, namespace: str, timeout: float = 2.0
) -> dict[str, Any]:
    """Scrape `url` once; {} when it cannot be reached or read (progress is best effort)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse_progress(response.read().decode(), experiment, namespace)
    except (OSError, ValueError):
        return {}
