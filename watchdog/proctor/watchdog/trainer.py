"""The trainer's own reports: its Prometheus endpoint (the latest values) and its JSON-lines file
(every logged window, every checkpoint), both in the same pod."""

from __future__ import annotations

import json
import math
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from proctor.watchdog.observations import LossPoint, TrainerSample

_FIELDS = {
    "proctor_train_step": "step",
    "proctor_train_loss": "loss",
    "proctor_train_samples_per_second": "samples_per_second",
    "proctor_train_tokens_per_second": "tokens_per_second",
    "proctor_train_mfu_ratio": "mfu",
    "proctor_train_step_duration_seconds": "step_seconds",
    "proctor_train_last_checkpoint_timestamp_seconds": "last_checkpoint_time",
    "proctor_train_last_checkpoint_step": "last_checkpoint_step",
}


def parse_trainer(text: str, experiment: str, namespace: str, now: float) -> TrainerSample:
    """The latest `proctor_train_*` values of this experiment in an exposition `text`.
    Gauges read 0 until the trainer first sets them; those zeros are reported as None."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("experiment") != experiment or labels.get("namespace") != namespace:
                continue
            if sample.name in _FIELDS:
                values[_FIELDS[sample.name]] = float(sample.value)
    step = values.get("step")
    if not step:  # nothing logged yet
        return TrainerSample(time=now, reachable=True)

    def positive(name: str) -> float | None:
        value = values.get(name)
        return value if value is not None and (value > 0 or not math.isfinite(value)) else None

    checkpoint_time = positive("last_checkpoint_time")
    checkpoint_step = values.get("last_checkpoint_step")
    return TrainerSample(
        time=now,
        step=int(step),
        loss=values.get("loss"),
        samples_per_second=values.get("samples_per_second"),
        tokens_per_second=positive("tokens_per_second"),
        mfu=positive("mfu"),
        step_seconds=positive("step_seconds"),
        last_checkpoint_time=checkpoint_time,
        last_checkpoint_step=int(checkpoint_step) if checkpoint_time and checkpoint_step else None,
    )


def read_trainer(url: str, experiment: str, namespace: str, now: float) -> TrainerSample:
    """One scrape; an endpoint that does not answer is a sample with reachable=False."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return parse_trainer(response.read().decode(), experiment, namespace, now)
    except (OSError, ValueError):
        return TrainerSample(time=now, reachable=False)


@dataclass
class JsonLinesTail:
    """Reads what the trainer appended to its JSON-lines metrics file since the last call.
    Under torchrun each rank writes `<stem>.rank<N>.jsonl`: rank 0's is read."""

    path: Path
    _offset: int = 0
    checkpoints: list[tuple[int, str]] = field(default_factory=list)  # (step, uri)
    lines: list[str] = field(default_factory=list)  # the newest raw lines, for bundles

    def _file(self) -> Path | None:
        rank0 = self.path.with_name(f"{self.path.stem}.rank0{self.path.suffix}")
        for candidate in (self.path, rank0):
            if candidate.is_file():
                return candidate
        return None

    def read(self) -> list[LossPoint]:
        path = self._file()
        if path is None:
            return []
        with path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits
        self._offset += len(complete)
        points = []
        for raw in complete.decode(errors="replace").splitlines():
            self.lines = [*self.lines[-199:], raw]
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("event") == "checkpoint":
                self.checkpoints.append((int(record["step"]), str(record.get("uri", ""))))
            elif "loss" in record and "step" in record:
                points.append(
                    LossPoint(float(record["time"]), int(record["step"]), _num(record["loss"]))
                )
        return points


def _num(value: object) -> float:
    """A loss as the trainer wrote it: a number, or "nan"/"inf" (strict JSON has no NaN)."""
    return float(value)  # type: ignore[arg-type]
