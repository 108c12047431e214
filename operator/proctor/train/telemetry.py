"""Training telemetry: what every training loop reports, as Prometheus metrics and JSON lines.

    telemetry = Telemetry(experiment="lr-sweep-3", namespace="ml", port=9108,
                          metrics_file=Path("/var/run/proctor/metrics.jsonl"),
                          flops_per_step=flops, peak_flops=989e12)
    for step, batch in enumerate(loader, start=1):
        loss = train_step(batch)
        telemetry.step(step, loss, samples=len(batch))   # cheap: no device sync, no conversion
    telemetry.checkpoint(step, uri)

The step path only keeps references and adds integers. Every `log_every` steps the window is
flushed: the loss is read from the device once (one synchronisation per window, not per step),
rates are computed over the window's wall time, the gauges are set and one JSON line is written.
Metric names carry their unit, as Prometheus conventions ask (`_seconds`, `_ratio`, `_total`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

LABELS = ("experiment", "namespace")
logger = logging.getLogger(__name__)


def _value(x: Any) -> float | None:
    """A float from a Python number or a 0-d tensor (the one place a device sync may happen)."""
    if x is None:
        return None
    return float(x.item()) if hasattr(x, "item") else float(x)


class TrainingMetrics:
    """The `proctor_train_*` series of one training process, bound to its labels."""

    def __init__(self, registry: CollectorRegistry, experiment: str, namespace: str) -> None:
        def gauge(name: str, doc: str) -> Any:
            return Gauge(name, doc, LABELS, registry=registry).labels(experiment, namespace)

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, LABELS, registry=registry).labels(experiment, namespace)

        self.step = gauge("proctor_train_step", "Latest optimizer step.")
        self.loss = gauge("proctor_train_loss", "Training loss at the latest logged step.")
        self.samples_per_second = gauge(
            "proctor_train_samples_per_second", "Training samples per second over the last window."
        )
        self.tokens_per_second = gauge(
            "proctor_train_tokens_per_second", "Training tokens per second over the last window."
        )
        self.mfu = gauge("proctor_train_mfu_ratio", "Model FLOPs utilisation over the last window.")
        self.grad_norm = gauge(
            "proctor_train_grad_norm", "Global gradient norm, latest logged step."
        )
        self.learning_rate = gauge("proctor_train_learning_rate", "Learning rate, latest step.")
        self.data_wait = gauge(
            "proctor_train_data_wait_ratio", "Share of the last window spent waiting for data."
        )
        self.step_seconds = gauge(
            "proctor_train_step_duration_seconds", "Mean wall time per step over the last window."
        )
        self.last_checkpoint = gauge(
            "proctor_train_last_checkpoint_timestamp_seconds",
            "Unix time of the newest complete checkpoint.",
        )
        self.last_checkpoint_step = gauge(
            "proctor_train_last_checkpoint_step", "Step held by the newest complete checkpoint."
        )
        self.checkpoints = counter("proctor_train_checkpoints", "Checkpoints written.")
        self.samples = counter("proctor_train_samples", "Training samples processed.")
        self.tokens = counter("proctor_train_tokens", "Training tokens processed.")
        self._eval = Gauge(
            "proctor_train_eval_metric",
            "Latest evaluation metrics.",
            (*LABELS, "metric"),
            registry=registry,
        )
        self._labels = (experiment, namespace)

    def eval_metric(self, name: str) -> Any:
        return self._eval.labels(*self._labels, name)


class Telemetry:
    """Per-step reporting for a training loop; see the module docstring for usage."""

    def __init__(
        self,
        *,
        experiment: str = "local",
        namespace: str = "default",
        registry: CollectorRegistry | None = None,
        port: int | None = None,
        metrics_file: Path | None = None,
        flops_per_step: float | None = None,
        peak_flops: float | None = None,
        log_every: int = 10,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if log_every < 1:
            raise ValueError(f"log_every must be at least 1, got {log_every}")
        self.registry = registry or CollectorRegistry()
        self.metrics = TrainingMetrics(self.registry, experiment, namespace)
        self.flops_per_step = flops_per_step
        self.peak_flops = peak_flops
        self.log_every = log_every
        self._clock = clock
        self._file: IO[str] | None = None
        if metrics_file is not None:
            metrics_file.parent.mkdir(parents=True, exist_ok=True)
            self._file = metrics_file.open(
                "a", buffering=1
            )  # line-buffered: readers see whole lines
        self.server = None
        if port is not None:
            try:
                self.server = start_http_server(port, registry=self.registry)
            except OSError as exc:  # a taken port must not stop training: metrics go to the file
                logger.warning(
                    "metrics endpoint on port %d unavailable (%s); not serving it", port, exc
                )
        self._window_started = clock()
        self._reset_window()
        self.last: dict[str, Any] = {}

    def _reset_window(self) -> None:
        self._steps = 0
        self._samples = 0
        self._tokens = 0
        self._data_wait = 0.0
        self._step: int | None = None
        self._loss: Any = None
        self._grad_norm: Any = None
        self._learning_rate: float | None = None

    # ---- the step path: references and integers only -----------------------------------------

    def step(
        self,
        step: int,
        loss: Any,
        *,
        samples: int = 0,
        tokens: int = 0,
        grad_norm: Any = None,
        learning_rate: float | None = None,
        data_wait_seconds: float = 0.0,
    ) -> None:
        """Report one optimizer step. `loss` and `grad_norm` may be tensors: they are read only
        when the window is flushed, every `log_every` steps."""
        self._steps += 1
        self._samples += samples
        self._tokens += tokens
        self._data_wait += data_wait_seconds
        self._step, self._loss = step, loss
        if grad_norm is not None:
            self._grad_norm = grad_norm
        if learning_rate is not None:
            self._learning_rate = learning_rate
        if self._steps >= self.log_every:
            self.flush()

    # ---- once per window --------------------------------------------------------------------

    def flush(self) -> dict[str, Any]:
        """Close the window: set the gauges, write one JSON line, and return what was logged."""
        if self._steps == 0:
            return self.last
        now = self._clock()
        elapsed = max(now - self._window_started, 1e-9)
        record: dict[str, Any] = {
            "time": time.time(),
            "step": self._step,
            "loss": _value(self._loss),
            "samples_per_second": self._samples / elapsed,
            "tokens_per_second": self._tokens / elapsed if self._tokens else None,
            "step_duration_seconds": elapsed / self._steps,
            "data_wait_ratio": self._data_wait / elapsed,
            "grad_norm": _value(self._grad_norm),
            "learning_rate": self._learning_rate,
            "mfu_ratio": None,
        }
        if self.flops_per_step and self.peak_flops:
            record["mfu_ratio"] = self.flops_per_step * self._steps / elapsed / self.peak_flops
        m = self.metrics
        m.step.set(self._step or 0)
        m.samples.inc(self._samples)
        m.tokens.inc(self._tokens)
        m.samples_per_second.set(record["samples_per_second"])
        m.step_seconds.set(record["step_duration_seconds"])
        m.data_wait.set(record["data_wait_ratio"])
        for gauge, key in (
            (m.loss, "loss"),
            (m.grad_norm, "grad_norm"),
            (m.learning_rate, "learning_rate"),
            (m.mfu, "mfu_ratio"),
            (m.tokens_per_second, "tokens_per_second"),
        ):
            if record[key] is not None:
                gauge.set(record[key])
        self._write({k: v for k, v in record.items() if v is not None})
        self.last = record
        self._window_started = now
        self._reset_window()
        return record

    def checkpoint(self, step: int, uri: str) -> None:
        """Report a checkpoint that is complete (written and renamed into place)."""
        stamp = time.time()
        self.metrics.checkpoints.inc()
        self.metrics.last_checkpoint.set(stamp)
        self.metrics.last_checkpoint_step.set(step)
        self._write({"time": stamp, "event": "checkpoint", "step": step, "uri": uri})

    def evaluation(self, step: int, metrics: dict[str, float]) -> None:
        """Report evaluation metrics; non-finite values too, since the watchdog wants them."""
        values = {name: float(value) for name, value in metrics.items()}
        for name, value in values.items():
            self.metrics.eval_metric(name).set(value)
        self._write(
            {
                "time": time.time(),
                "event": "eval",
                "step": step,
                "metrics": {k: (v if math.isfinite(v) else str(v)) for k, v in values.items()},
            }
        )

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.server is not None:
            server, _thread = self.server
            server.shutdown()
            self.server = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            # Strict JSON: a non-finite number is written as its name ("nan", "inf").
            safe = {
                k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in record.items()
            }
            self._file.write(json.dumps(safe, separators=(",", ":"), allow_nan=False) + "\n")

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
