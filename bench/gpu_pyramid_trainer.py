"""The pyramid's L0 (MFU, memory) and the trainer on a GPU, with the ~92M-parameter GPT example.

    python bench/gpu_pyramid_trainer.py [--config '{"batch_size": 16}'] [--train-steps 200]

Needs a CUDA device (it says so and exits 2 without one). Runs the whole pyramid (L0-L3) on
examples/gpt at the given config, as `proctor pyramid run` does after its imports, then the
trainer (`proctor.train.trainer.train`, as `proctor train` runs it, without checkpoints) for
`--train-steps` steps, and prints: the device, parameters, each layer's outcome and time, L0's
figures (throughput, data wait, peak memory, FLOPs per step, MFU), and the trainer's steady
state (the median of its last telemetry windows: tokens/s, step time, data wait, MFU) and peak
memory. MFU is against the dense BF16 peak proctor.pyramid.flops lists for the device.
Record the printed figures in BENCHMARKS.md with the command and the device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from proctor.api.v1alpha1 import PyramidLayers
from proctor.pyramid.contract import factory
from proctor.pyramid.flops import device_peak
from proctor.pyramid.runner import run_pyramid
from proctor.train.telemetry import Telemetry
from proctor.train.trainer import TrainingPlan, train

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = "gpt_lm:setup"
GiB = 2**30


def pyramid(config: dict[str, Any], device: torch.device) -> None:
    make = factory(ENTRYPOINT, config, [REPO / "examples" / "gpt"])
    torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    runs = run_pyramid(make, PyramidLayers(), ENTRYPOINT, device)
    total = time.perf_counter() - started
    for run in runs:
        result = run.result
        print(f"  {result.layer.value} {result.phase:<8} {run.seconds:7.1f} s  {result.message}")
        for check in result.checks:
            if result.layer.value == "L0" or check.verdict not in ("Passed", "Skipped"):
                print(f"      {check.name:<20} {check.verdict:<8} {check.message}")
    print(f"  pyramid total {total:.1f} s")


def trainer(config: dict[str, Any], device: torch.device, steps: int) -> None:
    make = factory(ENTRYPOINT, config, [REPO / "examples" / "gpt"])
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "metrics.jsonl"
        telemetry = Telemetry(metrics_file=metrics, log_every=10)
        started = time.perf_counter()
        result = train(make, TrainingPlan(max_steps=steps), telemetry, device)
        elapsed = time.perf_counter() - started
        telemetry.close()
        windows = [json.loads(line) for line in metrics.read_text().splitlines()]
    windows = [w for w in windows if "step_duration_seconds" in w]
    steady = windows[len(windows) // 2 :]  # the first windows include warm-up and compilation

    def median(key: str) -> float:
        values = [w[key] for w in steady if w.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    total_memory = torch.cuda.get_device_properties(device).total_memory
    allocated = torch.cuda.max_memory_allocated(device)
    reserved = torch.cuda.max_memory_reserved(device)
    print(f"  outcome {result.exit_code.name} at step {result.step} in {elapsed:.1f} s")
    print(
        f"  loss first window {windows[0]['loss']:.3f}, last {windows[-1]['loss']:.3f}; "
        f"first window {windows[0]['step_duration_seconds'] * 1e3:.0f} ms per step (warm-up)"
    )
    print(
        f"  tokens/s (median of the last {len(steady)} windows of 10 steps) "
        f"{median('tokens_per_second'):,.0f}"
    )
    print(
        f"  step time {median('step_duration_seconds') * 1e3:.1f} ms, "
        f"data wait {median('data_wait_ratio'):.1%}"
    )
    print(f"  MFU {median('mfu_ratio'):.1%}")
    print(
        f"  peak memory allocated {allocated / GiB:.1f} GiB, reserved {reserved / GiB:.1f} GiB "
        f"({reserved / total_memory:.0%} of {total_memory / GiB:.0f} GiB)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="{}", help="JSON overrides of examples/gpt DEFAULTS")
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--skip-pyramid", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "no CUDA device: this benchmark measures a GPU (CPU figures: bench/pyramid_digits.py)",
            file=sys.stderr,
        )
        return 2
    config = json.loads(args.config)
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True  # what a user is told to set; bf16 is autocast
    model = factory(ENTRYPOINT, config, [REPO / "examples" / "gpt"])().model
    parameters = sum(p.numel() for p in model.parameters())
    del model
    peak = device_peak(device, None)
    print(
        f"device {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}; peak {peak.flops / 1e12 if peak else float('nan'):.0f} "
        f"TFLOP/s ({peak.source if peak else 'unknown'})"
    )
    print(f"examples/gpt config {json.dumps(config)}: {parameters / 1e6:.1f}M parameters")
    if not args.skip_pyramid:
        print("pyramid:")
        pyramid(config, device)
    print(f"trainer, {args.train_steps} steps:")
    trainer(config, device, args.train_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
