"""A real Prometheus scrapes the trainer's metrics endpoint: the series exist with their labels."""

from __future__ import annotations

import pytest

from proctor.train.telemetry import Telemetry
from tests.support.prometheus import free_port, prometheus


@pytest.mark.slow
def test_prometheus_scrapes_the_training_series_with_experiment_and_namespace(tmp_path):
    port = free_port()
    telemetry = Telemetry(
        experiment="digits-mlp",
        namespace="ml",
        port=port,
        log_every=1,
        flops_per_step=1e9,
        peak_flops=1e12,
    )
    try:
        for step in range(1, 6):
            telemetry.step(step, 2.0 / step, samples=64, learning_rate=3e-3)
        telemetry.checkpoint(5, "file:///ckpt/step-5")
        with prometheus(tmp_path, [f"127.0.0.1:{port}"]) as server:
            [loss] = server.wait_for('proctor_train_loss{experiment="digits-mlp",namespace="ml"}')
            assert float(loss["value"][1]) == pytest.approx(0.4)
            for series in (
                "proctor_train_step",
                "proctor_train_samples_total",
                "proctor_train_samples_per_second",
                "proctor_train_mfu_ratio",
                "proctor_train_learning_rate",
                "proctor_train_checkpoints_total",
                "proctor_train_last_checkpoint_timestamp_seconds",
            ):
                [sample] = server.wait_for(f'{series}{{experiment="digits-mlp",namespace="ml"}}')
                assert sample["metric"]["experiment"] == "digits-mlp"
    finally:
        telemetry.close()
