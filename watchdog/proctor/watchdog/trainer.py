"""The trainer's own reports: its Prometheus endpoint (the latest values) and its JSON-lines file
(every logged window, every checkpoint), both in the same pod."""

from __future__ import annotations

import dataclasses
import http.client
import json
import math
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from proctor.watchdog import exposition
from proctor.watchdog.observations import LossPoint, TrainerSample

MAX_SCRAPE_BYTES = 4 * 1024 * 1024
"""A trainer's /metrics is a few KiB; past this a scrape is not read further (the line it cuts
is dropped), so an endpoint that answers megabytes cannot stall or swamp the watchdog."""

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


_MAX_STEP = 2**63
_NOTE_LIMIT = 300


def parse_trainer(text: str, experiment: str, namespace: str, now: float) -> TrainerSample:
    """The latest `proctor_train_*` values of this experiment in an exposition `text`.
    Gauges read 0 until the trainer first sets them; those zeros are reported as None.

    Only a whole, sane scrape is a sample with values. The telemetry library exports every
    gauge from its start, always finite, so a scrape with lines that do not parse, with one of
    this experiment's gauges missing (an answer cut at a line's end), or with a value that is
    no reading (a NaN step, a negative rate; only the loss may be NaN or infinite, which is a
    finding) is damaged: it counts as an answer (reachable) with nothing in it, and
    `unreadable` says what was wrong. Judging from part of a scrape would take a checkpoint
    gauge that is missing for a checkpoint that is missing."""
    parsed = exposition.parse(text)
    values: dict[str, float] = {}
    for name, labels, value in parsed.series:
        if labels.get("experiment") != experiment or labels.get("namespace") != namespace:
            continue
        if name in _FIELDS:
            values[_FIELDS[name]] = value
    damage = [parsed.problem] if parsed.problem else []
    if not parsed.series and parsed.skipped:
        damage = [f"the answer is no Prometheus exposition: {parsed.first_skipped}"]
    elif not text.strip():
        damage = ["the answer is empty"]
    if values:
        missing = sorted(name for name, key in _FIELDS.items() if key not in values)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            damage.append(f"it lacks {missing[0]}{more} (cut short?)")
        damage += [
            f"{name} is {values[key]!r}"
            for name, key in _FIELDS.items()
            if key != "loss" and key in values and not _reading(key, values[key])
        ][:1]
    if damage:
        return TrainerSample(time=now, reachable=True, unreadable="; ".join(damage)[:_NOTE_LIMIT])
    step = int(values.get("step", 0))
    if not step:  # nothing logged yet
        return TrainerSample(time=now, reachable=True)

    def positive(name: str) -> float | None:
        value = values[name]
        return value if value > 0 else None

    checkpoint_time = positive("last_checkpoint_time")
    checkpoint_step = int(values["last_checkpoint_step"])
    return TrainerSample(
        time=now,
        step=step,
        loss=values["loss"],
        samples_per_second=values["samples_per_second"],
        tokens_per_second=positive("tokens_per_second"),
        mfu=positive("mfu"),
        step_seconds=positive("step_seconds"),
        last_checkpoint_time=checkpoint_time,
        last_checkpoint_step=checkpoint_step if checkpoint_time and checkpoint_step else None,
    )


def _reading(key: str, value: float) -> bool:
    """Whether `value` can be what the telemetry library wrote for `key`."""
    if not math.isfinite(value) or value < 0:
        return False
    return value < _MAX_STEP if key in ("step", "last_checkpoint_step") else True


def read_trainer(url: str, experiment: str, namespace: str, now: float) -> TrainerSample:
    """One scrape; an endpoint that does not answer (refused, timed out, an HTTP error, not
    HTTP at all) is a sample with reachable=False. One that answers something else than its
    metrics is reachable, with `unreadable` saying what was wrong."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read(MAX_SCRAPE_BYTES + 1)
    except (OSError, ValueError, http.client.HTTPException):
        return TrainerSample(time=now, reachable=False)
    text = body[:MAX_SCRAPE_BYTES].decode(errors="replace")
    sample = parse_trainer(text, experiment, namespace, now)
    if len(body) > MAX_SCRAPE_BYTES:
        cut = f"the answer is over {MAX_SCRAPE_BYTES // 1024 // 1024} MiB; read that much"
        note = f"{cut}; {sample.unreadable}" if sample.unreadable else cut
        return dataclasses.replace(sample, unreadable=note)
    return sample


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
        except (ValueError, TypeError, KeyError, RecursionError):
            return None
        return None


def _num(value: object) -> float:
    """A loss as the trainer wrote it: a number, or "nan"/"inf" (strict JSON has no NaN)."""
    if isinstance(value, (int, float, str)):
        return float(value)
    raise TypeError(f"not a loss: {value!r}")
