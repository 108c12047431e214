"""Training progress read from the trainer's own exposition text (proctor.train.telemetry)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from proctor.controller.progress import parse_progress
from proctor.train.telemetry import Telemetry


def _telemetry(experiment: str = "exp", namespace: str = "ml", **kwargs) -> Telemetry:
    ticks = itertools.count()
    return Telemetry(
        experiment=experiment,
        namespace=namespace,
        registry=CollectorRegistry(),
        log_every=1,
        clock=lambda: float(next(ticks)),  # one second per window
        **kwargs,
    )


def _text(telemetry: Telemetry) -> str:
    return generate_latest(telemetry.registry).decode()


def test_the_latest_values_of_this_experiment_are_read():
    telemetry = _telemetry(flops_per_step=2e9, peak_flops=1e10)
    telemetry.step(60, 0.42, samples=64, tokens=4096)
    before = datetime.now(UTC)
    telemetry.checkpoint(50, "s3://ckpts/runs/ml/exp/step-000000050")
    after = datetime.now(UTC)
    telemetry.evaluation(60, {"accuracy": 0.9, "loss": float("nan")})
    sample = parse_progress(_text(telemetry), "exp", "ml")
    assert sample["step"] == 60
    assert isinstance(sample["step"], int)
    assert sample["loss"] == pytest.approx(0.42)
    assert sample["samples_per_second"] == pytest.approx(64.0)
    assert sample["tokens_per_second"] == pytest.approx(4096.0)
    assert sample["mfu"] == pytest.approx(0.2)
    assert sample["checkpoint_step"] == 50
    assert before.replace(microsecond=0) <= sample["checkpoint_time"] <= after
    assert sample["eval"] == {"accuracy": pytest.approx(0.9)}, "a NaN metric is not progress"


def test_metrics_never_reported_are_left_out_rather_than_read_as_zero():
    telemetry = _telemetry()
    telemetry.step(5, 1.5, samples=8)
    sample = parse_progress(_text(telemetry), "exp", "ml")
    assert sample["step"] == 5
    for absent in ("mfu", "tokens_per_second", "checkpoint_step", "checkpoint_time", "eval"):
        assert absent not in sample


def test_only_series_of_this_experiment_and_namespace_count():
    ours = _telemetry("exp", "ml")
    ours.step(60, 0.42)
    same_name_elsewhere = _telemetry("exp", "other")
    same_name_elsewhere.step(999, 7.0)
    text = _text(ours) + _text(same_name_elsewhere)
    assert parse_progress(text, "exp", "ml")["step"] == 60
    assert parse_progress(text, "exp", "other")["step"] == 999
    assert parse_progress(text, "nope", "ml") == {}


def test_a_trainer_that_has_not_stepped_yet_reports_nothing():
    assert parse_progress(_text(_telemetry()), "exp", "ml") == {}


def test_text_that_is_not_an_exposition_is_refused():
    with pytest.raises(ValueError, match="invalid metric name"):
        parse_progress("<html>502 Bad Gateway</html>", "exp", "ml")
