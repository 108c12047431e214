"""The telemetry library: metric names and labels, JSON lines, cheap steps, MFU that agrees with
a direct FLOP count."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from torch.utils.flop_counter import FlopCounterMode

from proctor.pyramid.contract import build_setup
from proctor.pyramid.flops import flops_per_step
from proctor.train.telemetry import Telemetry
from tests.support.crd_schema import REPO


class _FakeLoss:
    """Counts how often the telemetry reads it (each read is a device sync for a real tensor)."""

    def __init__(self, value: float) -> None:
        self.value, self.reads = value, 0

    def item(self) -> float:
        self.reads += 1
        return self.value


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"experiment": "exp-1", "namespace": "ml", **labels})


def test_steps_update_the_series_with_units_and_labels_once_per_window(tmp_path):
    clock = iter(float(t) for t in range(100)).__next__
    telemetry = Telemetry(
        experiment="exp-1",
        namespace="ml",
        metrics_file=tmp_path / "m.jsonl",
        log_every=5,
        clock=clock,
        flops_per_step=2e9,
        peak_flops=1e12,
    )
    loss = _FakeLoss(0.5)
    for step in range(1, 13):
        telemetry.step(step, loss, samples=32, tokens=32 * 128, learning_rate=1e-3)
    assert loss.reads == 2, "the loss is read once per window of 5 steps, not per step"
    registry = telemetry.registry
    assert _sample(registry, "proctor_train_step") == 10
    assert _sample(registry, "proctor_train_loss") == 0.5
    assert _sample(registry, "proctor_train_samples_total") == 320
    assert _sample(registry, "proctor_train_samples_per_second") == 160  # 5 x 32 in 1 s of clock
    assert _sample(registry, "proctor_train_tokens_per_second") == 160 * 128
    assert _sample(registry, "proctor_train_learning_rate") == 1e-3
    assert _sample(registry, "proctor_train_mfu_ratio") == pytest.approx(5 * 2e9 / 1.0 / 1e12)
    telemetry.checkpoint(10, "file:///ckpt/step-10")
    telemetry.evaluation(10, {"accuracy": 0.97})
    telemetry.close()  # flushes the open window of 2 steps
    assert _sample(registry, "proctor_train_step") == 12
    assert _sample(registry, "proctor_train_checkpoints_total") == 1
    assert _sample(registry, "proctor_train_last_checkpoint_step") == 10
    assert _sample(registry, "proctor_train_eval_metric", metric="accuracy") == 0.97
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [line.get("event", "step") for line in lines] == [
        "step",
        "step",
        "checkpoint",
        "eval",
        "step",
    ]
    assert lines[0]["step"] == 5
    assert lines[-1]["step"] == 12


def test_the_metrics_endpoint_serves_the_series_over_http():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    telemetry = Telemetry(experiment="exp-1", namespace="ml", port=port, log_every=1)
    try:
        telemetry.step(1, 2.5, samples=8)
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        )
    finally:
        telemetry.close()
    assert 'proctor_train_loss{experiment="exp-1",namespace="ml"} 2.5' in body
    assert "proctor_train_samples_total" in body


def test_mfu_from_a_once_measured_step_agrees_with_a_direct_flop_count():
    sys.path.insert(0, str(REPO / "examples" / "digits"))
    import digits_mlp

    setup = build_setup(digits_mlp.setup, {})
    batches = iter(setup.train_data)
    per_step = flops_per_step(setup, next(batches))
    telemetry = Telemetry(flops_per_step=per_step, peak_flops=1e12, log_every=10)
    counter = FlopCounterMode(display=False)
    with counter:
        for step in range(1, 11):
            setup.optimizer.zero_grad()
            loss = setup.loss_fn(setup.model, next(batches))
            loss.backward()
            setup.optimizer.step()
            telemetry.step(step, loss.detach(), samples=64)
    record = telemetry.last
    direct_flops = counter.get_total_flops()
    elapsed = record["step_duration_seconds"] * 10
    direct_mfu = direct_flops / elapsed / 1e12
    assert record["mfu_ratio"] == pytest.approx(direct_mfu, rel=0.05)


def test_misuse_is_a_clear_error():
    with pytest.raises(ValueError, match="log_every must be at least 1"):
        Telemetry(log_every=0)
