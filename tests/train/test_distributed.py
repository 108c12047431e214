"""Two processes under torchrun (gloo on CPU): data-parallel training, checkpoints, resume."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.train.test_trainer import DIGITS, _steps


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=127.0.0.1:0",
        "-m",
        "proctor.cli.main",
        "train",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_ranks_train_checkpoint_once_and_resume(tmp_path):
    ckpt, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    args = (
        "--entrypoint",
        DIGITS,
        "--checkpoint-uri",
        str(ckpt),
        "--checkpoint-every-steps",
        "30",
        "--metrics-file",
        str(metrics),
    )
    first = _torchrun(*args, "--max-steps", "60")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("done at step 60") == 2, "both ranks finish"
    assert _steps(ckpt) == [30, 60]
    assert (tmp_path / "metrics.rank0.jsonl").exists()
    assert (tmp_path / "metrics.rank1.jsonl").exists(), "every rank reports its own metrics"
    rank1 = (tmp_path / "metrics.rank1.jsonl").read_text()
    assert '"event":"checkpoint"' not in rank1, "only rank 0 writes checkpoints"
    second = _torchrun(*args, "--max-steps", "90")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("resumed from step 60") == 2
    assert _steps(ckpt)[-1] == 90
