"""L0, engineering efficiency: is the hardware used well, and is the core code isolated?"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from proctor.api.v1alpha1 import CheckResult
from proctor.api.v1alpha1.pyramid import EfficiencySettings
from proctor.pyramid import isolation
from proctor.pyramid.checks import check, info, names, on_device, skipped
from proctor.pyramid.contract import TrainingSetup
from proctor.pyramid.flops import device_peak, flops_per_step
from proctor.pyramid.steps import synchronize, train_step

MIN_WINDOW = 0.5  # seconds
# A wait this short per step is loop overhead (a DataLoader's own bookkeeping is ~0.2 ms), not a
# starving device; judged, it would fail healthy sub-millisecond CPU steps on a busy machine.
NEGLIGIBLE_WAIT = 2e-3  # seconds per step


class TimedBatches:
    """Wraps the user's batches and measures the wall time the loop waits in next() for each:
    sleeping, I/O, loader workers, or decoding done in the main process."""

    def __init__(self, batches: Iterator[Any]) -> None:
        self._batches = batches
        self.last_wait = 0.0

    def __iter__(self) -> TimedBatches:
        return self

    def __next__(self) -> Any:
        started = time.perf_counter()
        batch = next(self._batches)
        self.last_wait = time.perf_counter() - started
        return batch


def run(
    setup: TrainingSetup,
    settings: EfficiencySettings,
    device: torch.device,
    entrypoint: str,
) -> tuple[list[CheckResult], dict[str, Any]]:
    """The L0 checks and the measurements behind them."""
    checks = [_device_report(device, setup)]
    batches = TimedBatches(on_device(setup.batches(), device))
    first = next(batches)
    flops = flops_per_step(setup, first)
    train_step(setup, first)
    for _ in range(max(0, settings.warmup_steps - 1)):
        train_step(setup, next(batches))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    samples = steps = 0
    waits: list[float] = []
    intervals: list[float] = []
    started = last = time.perf_counter()
    # At least `steps`, and at least MIN_WINDOW seconds: a few sub-millisecond steps are too
    # short to time (and a wrong data-wait ratio on a healthy model is a false alarm).
    while steps < settings.steps or (
        time.perf_counter() - started < MIN_WINDOW and steps < 50 * settings.steps
    ):
        batch = next(batches)
        samples += setup.samples_in(batch)
        train_step(setup, batch)
        steps += 1
        now = time.perf_counter()
        waits.append(batches.last_wait)
        intervals.append(now - last)
        last = now
    synchronize(device)
    elapsed = time.perf_counter() - started
    steps_per_second = steps / elapsed
    # Medians, not sums: a busy machine preempts the process at random moments, and one long
    # preemption inside next() must not read as a starving loader.
    wait_per_step = statistics.median(waits)
    wait_ratio = wait_per_step / statistics.median(intervals)
    checks.append(
        info(
            "throughput",
            f"{steps_per_second:.1f} steps/s, {samples / elapsed:.0f} samples/s",
            steps_per_second,
            "steps/s",
        )
    )
    starving = wait_ratio > settings.max_data_wait_ratio and wait_per_step > NEGLIGIBLE_WAIT
    checks.append(
        check(
            "data_wait_ratio",
            not starving,
            value=wait_ratio,
            threshold=settings.max_data_wait_ratio,
            unit="ratio",
            passed=f"{wait_ratio:.0%} of step time waiting for data "
            f"({wait_per_step * 1e3:.2f} ms per step)",
            failed=f"{wait_ratio:.0%} of step time ({wait_per_step * 1e3:.1f} ms per step) is "
            "spent waiting for the next batch: the device starves. Use DataLoader workers "
            "(num_workers>0, persistent_workers), pin_memory, prefetching, and keep slow work "
            "(decoding, sleeps, I/O) out of __getitem__.",
        )
    )
    checks.append(_memory(device, settings))
    checks.append(
        info(
            "flops_per_step",
            f"{flops / 1e9:.3f} GFLOP per step (forward and backward, torch.utils.flop_counter)",
            float(flops),
            "FLOP",
        )
    )
    checks.append(_mfu(device, settings, flops * steps_per_second))
    checks.append(_isolation(entrypoint))
    measurements = {
        "flops_per_step": flops,
        "steps_per_second": steps_per_second,
        "data_wait_ratio": wait_ratio,
        "step_seconds": elapsed / steps,
        "timed_steps": steps,
    }
    return checks, measurements


def _device_report(device: torch.device, setup: TrainingSetup) -> CheckResult:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        detail = (
            f"CUDA {torch.version.cuda} on {name}; TF32 matmul {'on' if tf32 else 'off'}, "
            f"cuDNN {torch.backends.cudnn.version()}"
        )
    else:
        detail = f"CPU, {torch.get_num_threads()} threads; no accelerator visible to PyTorch"
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in setup.model.parameters()})
    return info("device", f"torch {torch.__version__}, {detail}; parameters in {', '.join(dtypes)}")


def _memory(device: torch.device, settings: EfficiencySettings) -> CheckResult:
    if device.type == "cuda":
        peak = float(torch.cuda.max_memory_allocated(device))
        total = float(torch.cuda.get_device_properties(device).total_memory)
        where = "of the GPU's memory"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux
        total, limit_kind = _memory_limit()
        where = f"of the {limit_kind} (process peak RSS)"
    ratio = peak / total if total else 0.0
    return check(
        "peak_memory_ratio",
        ratio <= settings.max_memory_ratio,
        value=ratio,
        threshold=settings.max_memory_ratio,
        unit="ratio",
        passed=f"peak {peak / 2**30:.2f} GiB, {ratio:.0%} {where}",
        failed=f"peak {peak / 2**30:.2f} GiB is {ratio:.0%} {where}: a longer sequence or a "
        "fragmented allocator will run out. Lower the batch size, use activation checkpointing "
        "or mixed precision.",
    )


def _memory_limit() -> tuple[float, str]:
    """The container's memory limit (cgroup v2) if it has one, else the host's memory."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            return float(limit), "container's memory limit"
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024, "host's memory"
    except OSError:
        pass
    return 0.0, "unknown memory"


def _mfu(device: torch.device, settings: EfficiencySettings, achieved: float) -> CheckResult:
    peak = device_peak(device, settings.peak_flops)
    if peak is None:
        return skipped(
            "mfu",
            f"{achieved / 1e9:.2f} GFLOP/s achieved; no peak known for this "
            "device: set layers.l0.peakFlops to judge MFU",
        )
    mfu = achieved / peak.flops
    floor = settings.min_mfu_ratio
    message = (
        f"MFU {mfu:.1%} ({achieved / 1e12:.3f} of {peak.flops / 1e12:.0f} TFLOP/s; {peak.source})"
    )
    if floor is None:
        return info("mfu", message, mfu, "ratio")
    return check(
        "mfu",
        mfu >= floor,
        value=mfu,
        threshold=floor,
        unit="ratio",
        passed=message,
        failed=f"{message} is under the floor {floor:.0%}: use bf16 autocast, larger batches, "
        "torch.compile, or fuse small kernels; check data_wait_ratio first.",
    )


def _isolation(entrypoint: str) -> CheckResult:
    root, files = isolation.package_files(entrypoint)
    if not files:
        return skipped("isolation", f"could not locate the source of {entrypoint}")
    violations = isolation.scan(root, files)
    return check(
        "isolation",
        not violations,
        value=float(len(violations)),
        threshold=0.0,
        unit="imports",
        passed=f"{len(files)} module(s) of the package import no test or validation code",
        failed=f"core code imports test or validation code ({names([str(v) for v in violations])})"
        ": "
        "move the helper into the package proper, or the test into tests/; production code must "
        "ship without test dependencies.",
    )
