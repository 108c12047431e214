"""The trainer's own reports: its Prometheus endpoint (the latest values) and its JSON-lines file
(every logged window, every checkpoint), both in the same pod."""

from __future__ import annotations

import json
import math
import urllib.request
from collections import deque
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


MAX_CATCH_UP = 4 * 1024 * 1024
"""Bytes read at most on the first read: a restarted watchdog reads the recent history of a
days-long run, not all of it."""
MAX_READ = 1024 * 1024


@dataclass
class JsonLinesTail:
    """Reads what the trainer appended to its JSON-lines metrics file since the last call.
    Under torchrun each rank writes `<stem>.rank<N>.jsonl`: the lowest rank's is read."""

    path: Path
    _offset: int | None = None
    checkpoints: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=100))
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=200))  # raw, for bundles

    def _file(self) -> Path | None:
        if self.path.is_file():
            return self.path
        ranked = []
        for candidate in self.path.parent.glob(f"{self.path.stem}.rank*{self.path.suffix}"):
            rank = candidate.stem.rsplit(".rank", 1)[-1]
            if rank.isdigit():
                ranked.append((int(rank), candidate))
        return min(ranked)[1] if ranked else None

    def read(self) -> list[LossPoint]:
        path = self._file()
        if path is None:
            return []
        size = path.stat().st_size
        skip_fragment = False
        if self._offset is None or self._offset > size:  # first read, or the file was replaced
            self._offset = max(0, size - MAX_CATCH_UP)
            skip_fragment = self._offset > 0
        with path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read(MAX_READ)
        if skip_fragment:  # started mid-line: drop the fragment
            cut = chunk.find(b"\n") + 1
            self._offset += cut
            chunk = chunk[cut:]
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits
        self._offset += len(complete)
        points = []
        for raw in complete.decode(errors="replace").splitlines():
            self.lines.append(raw)
            point = self._parse(raw)
            if point is not None:
                points.append(point)
        return points

    def _parse(self, raw: str) -> LossPoint | None:
        """One record; anything malformed is skipped, never allowed to stop the reading."""
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                return None
            if record.get("event") == "checkpoint":
                self.checkpoints.append((int(record["step"]), str(record.get("uri", ""))))
                return None
            if "loss" in record and "step" in record:
                return LossPoint(float(record["time"]), int(record["step"]), _num(record["loss"]))
        except (ValueError, TypeError, KeyError):
            return None
        return None


def _num(value: object) -> float:
    """A loss as the trainer wrote it: a number, or "nan"/"inf" (strict JSON has no NaN)."""
    if isinstance(value, (int, float, str)):
        return float(value)
    raise TypeError(f"not a loss: {value!r}")
