"""The default trainer: budgets, exit codes, and checkpoints that survive SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.crd_schema import REPO
from tests.support.tools import tool

CODE = Path(__file__).parent / "code"
DIGITS = str(REPO / "examples/digits/digits_mlp.py") + ":setup"


def _train(*args: str, env: dict[str, str] | None = None, wait: bool = True):
    command = [tool("proctor"), "train", *args]
    if not wait:
        return subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300
    )


def _steps(directory: Path) -> list[int]:
    """Steps of the complete checkpoints (those with their COMPLETE marker)."""
    return sorted(int(p.parent.name.split("-")[1]) for p in directory.glob("step-*/COMPLETE"))


def test_it_trains_to_max_steps_checkpoints_keeps_the_last_k_and_evaluates(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    result = _train(
        "--entrypoint",
        DIGITS,
        "--max-steps",
        "120",
        "--checkpoint-uri",
        f"file://{tmp_path / 'ckpt'}",
        "--checkpoint-every-steps",
        "40",
        "--keep-last",
        "2",
        "--metrics-file",
        str(metrics),
    )
    assert result.returncode == 0, result.stderr
    assert _steps(tmp_path / "ckpt") == [80, 120]
    text = metrics.read_text()
    assert '"event":"checkpoint","step":120' in text
    assert '"event":"eval","step":120' in text


def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_at_the_same_step(tmp_path):
    ckpt = tmp_path / "ckpt"
    args = (
        "--entrypoint",
        DIGITS,
        "--max-steps",
        "3000",
        "--checkpoint-uri",
        str(ckpt),
        "--checkpoint-every-steps",
        "100",
    )
    run = _train(*args, wait=False)
    deadline = time.monotonic() + 120
    while not _steps(ckpt):
        assert time.monotonic() < deadline, "no checkpoint was written in time"
        assert run.poll() is None, run.stderr
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed_at = max(_steps(ckpt))
    assert killed_at < 3000
    again = _train(*args)
    assert again.returncode == 0, again.stderr
    assert f"resumed from step {killed_at}" in again.stdout
    assert max(_steps(ckpt)) == 3000


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_as_newest(tmp_path):
    ckpt, started = tmp_path / "ckpt", tmp_path / "save-started"
    args = (
        "--entrypoint",
        f"{CODE / 'slow_saver.py'}:setup",
        "--max-steps",
        "60",
        "--checkpoint-uri",
        str(ckpt),
        "--checkpoint-every-steps",
        "20",
    )
    # The first save is quick; from the second on, saves pause half-way.
    first = _train(*args[:3], "20", *args[4:])
    assert first.returncode == 0, first.stderr
    run = _train(*args, env={"SAVE_STARTED": str(started), "SAVE_PAUSE": "30"}, wait=False)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert time.monotonic() < deadline, "the save never started"
        assert run.poll() is None, run.stderr
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    # save_fn writes into a local temporary directory; nothing reaches the store until it is
    # done, and the checkpoint counts only once its COMPLETE marker is there.
    assert _steps(ckpt) == [20]
    resumed = _train(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step 20" in resumed.stdout
    assert _steps(ckpt)[-1] == 60
    assert sorted(p.name for p in ckpt.iterdir()) == [f"step-{s:09d}" for s in _steps(ckpt)]


def test_a_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    ckpt = tmp_path / "ckpt"
    args = ("--entrypoint", DIGITS, "--checkpoint-uri", str(ckpt), "--checkpoint-every-steps", "30")
    assert _train(*args, "--max-steps", "60").returncode == 0
    (ckpt / "step-000000060" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    result = _train(*args, "--max-steps", "90")
    assert result.returncode == 0, result.stderr
    assert "step-000000060 cannot be loaded" in result.stderr
    assert "resumed from step 30" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (
            ("--entrypoint", DIGITS, "--max-duration", "1s", "--termination-log", "{tmp}/outcome"),
            0,  # a spent budget is a planned end: exit 0, the outcome says budget_exhausted
            "maxDuration reached",
        ),
        (("--entrypoint", DIGITS), 2, "needs max_steps, max_seconds or both"),
        (("--entrypoint", "nowhere_at_all:setup", "--max-steps", "5"), 2, "cannot import"),
        (
            (
                "--entrypoint",
                f"{CODE / 'slow_saver.py'}:nan_after_20",
                "--max-steps",
                "200",
                "--log-every",
                "1",
            ),
            1,
            "the loss became",
        ),
    ],
    ids=["budget-exhausted", "no-budget", "bad-entrypoint", "nan-loss"],
)
def test_exit_codes_tell_outcomes_apart(tmp_path, args, code, says):
    result = _train(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stdout + result.stderr
    outcome = tmp_path / "outcome"
    if outcome.exists():  # the outcome, for when torchrun flattens exit codes to 1
        import json

        written = json.loads(outcome.read_text())
        assert written["outcome"] == "budget_exhausted"
        assert written["exitCode"] == 3


def _final_weights(directory: Path, step: int):
    import torch

    return torch.load(directory / f"step-{step:09d}" / "checkpoint.pt")["model"]


def test_a_resumed_run_continues_the_interrupted_one_step_for_step(tmp_path):
    import torch

    # One CPU thread: a multi-threaded reduction may split its work differently when the machine
    # is loaded (the thread pools adapt), and Adam turns a last-bit difference into lr-sized ones
    # within 30 steps. Single-threaded kernels are deterministic, so the claim can be bitwise.
    single = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    straight, split = tmp_path / "straight", tmp_path / "split"
    base = ("--entrypoint", DIGITS, "--checkpoint-every-steps", "30", "--keep-last", "5")

    def train(directory: Path, steps: str):
        return _train(*base, "--checkpoint-uri", str(directory), "--max-steps", steps, env=single)

    assert train(straight, "60").returncode == 0
    assert train(split, "30").returncode == 0
    resumed = train(split, "60")
    assert "resumed from step 30" in resumed.stdout
    a, b = _final_weights(straight, 60), _final_weights(split, 60)
    # Same batches, random state and optimizer state, so the same weights, bit for bit. Without
    # the restored data position the difference is ~0.04.
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sigterm_checkpoints_and_exits_as_preempted(tmp_path):
    ckpt = tmp_path / "ckpt"
    run = _train(
        "--entrypoint",
        DIGITS,
        "--max-steps",
        "100000",
        "--checkpoint-uri",
        str(ckpt),
        "--checkpoint-every-steps",
        "100000",
        "--log-every",
        "1",
        "--metrics-file",
        str(tmp_path / "m.jsonl"),
        wait=False,
    )
    deadline = time.monotonic() + 60
    while not (
        (tmp_path / "m.jsonl").exists() and (tmp_path / "m.jsonl").read_text().count("\n") > 20
    ):
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 4, stderr
    assert "SIGTERM at step" in stderr
    assert _steps(ckpt), "the eviction was checkpointed"


def test_a_finished_run_started_again_keeps_its_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    args = (
        "--entrypoint",
        DIGITS,
        "--max-steps",
        "30",
        "--checkpoint-uri",
        str(ckpt),
        "--checkpoint-every-steps",
        "30",
        "--keep-last",
        "1",
    )
    assert _train(*args).returncode == 0
    before = (ckpt / "step-000000030" / "COMPLETE").read_text()
    again = _train(*args)
    assert again.returncode == 0
    assert (ckpt / "step-000000030" / "COMPLETE").read_text() == before, "not rewritten"
