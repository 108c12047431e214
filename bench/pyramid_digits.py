"""Wall time of the whole validation pyramid on the digits example (goal: under 60 s on 2 cores).

    .venv/bin/python bench/pyramid_digits.py [--repeat 3]

Runs L0-L3 in-process on the CPU, as `proctor pyramid run` does, and prints each layer's time
and the total per run, then the median total. Record the figures in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from proctor.api.v1alpha1 import PyramidLayers
from proctor.pyramid.contract import factory
from proctor.pyramid.runner import run_pyramid

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    make = factory("digits_mlp:setup", {}, [REPO / "examples" / "digits"])
    totals = []
    for attempt in range(1, args.repeat + 1):
        started = time.perf_counter()
        runs = run_pyramid(make, PyramidLayers(), "digits_mlp:setup", torch.device("cpu"))
        total = time.perf_counter() - started
        totals.append(total)
        layers = "  ".join(
            f"{r.result.layer.value} {r.result.phase} {r.seconds:.2f}s" for r in runs
        )
        print(f"run {attempt}: {layers}  total {total:.2f}s")
    print(
        f"median total: {statistics.median(totals):.2f}s over {args.repeat} runs "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
