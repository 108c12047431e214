"""Cost of `Telemetry.step` on the training step path (goal: under 1% of step time).

    .venv/bin/python bench/telemetry_overhead.py [--blocks 20]

Two figures per model (the digits MLP and a larger CPU model):
- isolated: the telemetry's own cost per step (step() plus its share of the flush every
  log_every=10 steps, JSON-lines file on), timed over many calls, over the median step time;
- A/B: blocks of 50 steps with and without telemetry, alternated so machine noise hits both
  alike. On a noisy 2-core machine its spread is a few percent either way, larger than the
  effect; the isolated figure is the one to hold against the goal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from proctor.train.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[1]
BLOCK = 50


def _digits() -> tuple[nn.Module, Any, Any, Any]:
    sys.path.insert(0, str(REPO / "examples" / "digits"))
    import digits_mlp

    parts = digits_mlp.setup({})
    batch = next(iter(parts["train_data"]))
    return parts["model"], parts["optimizer"], parts["loss_fn"], batch


def _larger() -> tuple[nn.Module, Any, Any, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(1024, 2048), nn.GELU(), nn.Linear(2048, 2048), nn.GELU(), nn.Linear(2048, 1000)
    )
    batch = (torch.randn(256, 1024), torch.randint(0, 1000, (256,)))

    def loss_fn(m: nn.Module, b: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(m(b[0]), b[1])

    return model, torch.optim.AdamW(model.parameters(), lr=1e-4), loss_fn, batch


def _block(
    model: nn.Module,
    optimizer: Any,
    loss_fn: Any,
    batch: Any,
    telemetry: Telemetry | None,
    start: int,
) -> float:
    started = time.perf_counter()
    for step in range(start, start + BLOCK):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        if telemetry is not None:
            telemetry.step(step, loss.detach(), samples=len(batch[1]))
    return (time.perf_counter() - started) / BLOCK


def _telemetry(directory: Path) -> Telemetry:
    """The telemetry both measurements use: JSON-lines file on, MFU on, a flush every 10 steps."""
    return Telemetry(
        metrics_file=directory / "metrics.jsonl", log_every=10, flops_per_step=1e9, peak_flops=1e12
    )


def measure(name: str, parts: tuple[nn.Module, Any, Any, Any], blocks: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        telemetry = _telemetry(Path(directory))
        _block(*parts, None, 0)  # warm-up
        plain, reported = [], []
        for i in range(blocks):  # ABBA order, so neither side always runs second
            if i % 2:
                reported.append(_block(*parts, telemetry, i * BLOCK))
                plain.append(_block(*parts, None, 0))
            else:
                plain.append(_block(*parts, None, 0))
                reported.append(_block(*parts, telemetry, i * BLOCK))
        telemetry.close()
    base, with_telemetry = statistics.median(plain), statistics.median(reported)
    overhead = (with_telemetry - base) / base
    cost = _isolated_cost(parts[3])
    print(
        f"{name:28s} step {base * 1e3:8.3f} ms  telemetry {cost * 1e6:5.2f} us/step = "
        f"{cost / base:.3%} isolated;  A/B {with_telemetry * 1e3:8.3f} ms ({overhead:+.1%})"
    )


def _isolated_cost(batch: Any, calls: int = 20000) -> float:
    """Seconds of telemetry work per step, as the loop above calls it."""
    loss = torch.tensor(1.0)
    with tempfile.TemporaryDirectory() as directory:
        telemetry = _telemetry(Path(directory))
        started = time.perf_counter()
        for step in range(calls):
            telemetry.step(step, loss, samples=len(batch[1]))
        elapsed = time.perf_counter() - started
        telemetry.close()
    return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=20)
    args = parser.parse_args()
    measure("digits MLP (batch 64)", _digits(), args.blocks)
    measure("MLP 1024-2048-2048 (b 256)", _larger(), max(4, args.blocks // 4))


if __name__ == "__main__":
    main()
