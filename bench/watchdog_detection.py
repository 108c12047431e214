"""The watchdog's detectors on synthetic runs: how fast they catch, whether they cry wolf, and what
a check costs (goals: no false positive on healthy runs; latency of a few scrapes).

    .venv/bin/python bench/watchdog_detection.py [--seeds 50] [--samples 10000] [--latency-seeds 20]

A simulated run is scraped every --interval seconds (30 by default, between the watchdog's dense
15 s and sparse 2 min). Its trainer steps in about 1 s (5% noise), logs every 10 steps, writes a
checkpoint every 30 minutes that halts it for 1 to 4 minutes (GPUs idle meanwhile), starts with a
10-minute warm-up at half speed, and has the quirks of real runs: multiplicative loss noise (7%)
with heavy outliers (0.3% of points, x1.3 to x2), throughput noise (5%) with single slow windows
(1%, at a third to a half of the speed), a scrape that times out now and then (0.3%), an endpoint
that answers only after a minute, 8 GPUs at 90-99% with one carrying a harmless XID 13 from the
start, memory at 80-90%. Thresholds are the defaults, with min_mfu_ratio 0.3 (the run's MFU is
about 0.42) and checkpointing configured.

Three figures:
- (a) latency per anomaly kind: the anomaly starts at a scrape after about 1,200 healthy ones,
  `detect_all` runs after every scrape, and the latency is the number of scrapes from the first
  one that shows the anomaly to the one where its finding appears (0: the same scrape);
- (b) false positives: every finding `detect_all` returns on --seeds healthy runs of --samples
  scrapes each (findings, and distinct keys: what the watchdog would report);
- (c) the cost of one `detect_all` on a full window (2,000 scrapes, 2,000 logged losses, 16,000
  GPU samples), healthy and during an incident.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from proctor.api.v1alpha1 import AnomalyKind
from proctor.api.v1alpha1.experiment import WatchdogThresholds
from proctor.watchdog.detectors import detect_all
from proctor.watchdog.observations import (
    Context,
    Finding,
    GpuSample,
    LossPoint,
    TrainerSample,
    Window,
)

START = 1_800_000_000.0
STEP_SECONDS = 1.0
LOG_EVERY = 10
BATCH = 256
CHECKPOINT_EVERY = 1800.0
WARMUP = 600.0
GPUS = 8
MFU = 0.42
THRESHOLDS = WatchdogThresholds(min_mfu_ratio=0.3)

# What each injected anomaly is, in the simulator's terms (see Run.scrape).
ANOMALIES = {
    AnomalyKind.NON_FINITE_LOSS: "the loss becomes NaN",
    AnomalyKind.LOSS_SPIKE: "the loss x3 for 6 logged points, then back",
    AnomalyKind.DIVERGENCE: "the loss grows x e every 10 minutes",
    AnomalyKind.STALL: "the step stops; GPUs spin at 100% (a hung collective)",
    AnomalyKind.THROUGHPUT_DROP: "steps take 3x longer",
    AnomalyKind.LOW_MFU: "MFU x0.6 (0.25, floor 0.3), throughput unchanged",
    AnomalyKind.GPU_IDLE: "GPUs at 5-15%, tensor pipe 0.02; steps go on at 0.8x",
    AnomalyKind.FATAL_XID: "GPU 3 reports XID 79",
    AnomalyKind.MEMORY_NEAR_LIMIT: "GPU 0 memory at 97%",
    AnomalyKind.CHECKPOINT_STALE: "checkpoints stop (onset: when the newest is 1 h old)",
    AnomalyKind.TRAINER_GONE: "the trainer exits with code 1",
}


@dataclass
class Run:
    """A simulated training run, advanced one scrape at a time."""

    seed: int
    interval: float = 30.0
    anomaly: AnomalyKind | None = None
    onset: float = math.inf  # simulated time at which the anomaly starts
    rng: random.Random = field(init=False)
    window: Window = field(default_factory=Window)
    now: float = START
    trainer_time: float = START + 60.0  # the trainer starts answering after a minute
    step: int = 0
    loss: float = 0.0
    samples_per_second: float | None = None
    step_seconds: float | None = None
    mfu: float | None = None
    checkpoint_time: float | None = None
    checkpoint_step: int | None = None
    last_checkpoint: float = START + 60.0
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    exited: bool = False
    pending: tuple[float, float] | None = None
    spiked: int = 0
    memory: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.memory = [self.rng.uniform(0.80, 0.90) for _ in range(GPUS)]

    def active(self, kind: AnomalyKind, at: float) -> bool:
        return self.anomaly is kind and at >= self.onset

    def _loss(self, step: int, at: float) -> float:
        rng = self.rng
        value = 6.0 * math.exp(-step / 20_000) + 2.0
        value *= math.exp(rng.gauss(0, 0.07))
        if rng.random() < 0.003:
            value *= rng.uniform(1.3, 2.0)
        if self.active(AnomalyKind.LOSS_SPIKE, at) and self.spiked < 6:
            self.spiked += 1
            value *= 3
        if self.active(AnomalyKind.DIVERGENCE, at):
            value *= math.exp((at - self.onset) / 600)
        if self.active(AnomalyKind.NON_FINITE_LOSS, at):
            value = math.nan
        return value

    def _plan(self) -> tuple[float, float]:
        """The next logging window: (its steps' duration, the checkpoint pause before it)."""
        rng = self.rng
        speed = 0.5 if self.trainer_time < START + WARMUP else 1.0
        if self.active(AnomalyKind.THROUGHPUT_DROP, self.trainer_time):
            speed /= 3
        if self.active(AnomalyKind.GPU_IDLE, self.trainer_time):
            speed *= 0.8
        duration = LOG_EVERY * STEP_SECONDS / speed * math.exp(rng.gauss(0, 0.05))
        if rng.random() < 0.01:
            duration *= rng.uniform(2, 3)
        pause = 0.0
        due = self.trainer_time - self.last_checkpoint >= CHECKPOINT_EVERY
        if due and not self.active(AnomalyKind.CHECKPOINT_STALE, self.trainer_time):
            pause = rng.uniform(60, 240)
            self.pauses.append((self.trainer_time, self.trainer_time + pause))
        return duration, pause

    def _advance(self, until: float) -> None:
        """The trainer's logging windows that end before `until`."""
        while not self.exited and not self.active(AnomalyKind.STALL, self.trainer_time):
            if self.pending is None:
                self.pending = self._plan()
            duration, pause = self.pending
            end = self.trainer_time + duration + pause
            if end > until:
                return
            self.pending = None
            if pause:
                self.checkpoint_time = self.trainer_time + pause
                self.checkpoint_step = self.step
                self.last_checkpoint = self.trainer_time + pause
            self.step += LOG_EVERY
            self.trainer_time = end
            self.loss = self._loss(self.step, end)
            self.samples_per_second = LOG_EVERY * BATCH / (duration + pause)
            self.step_seconds = (duration + pause) / LOG_EVERY
            mfu = MFU * LOG_EVERY * STEP_SECONDS / (duration + pause)
            if self.active(AnomalyKind.LOW_MFU, end):
                mfu *= 0.6
            self.mfu = mfu
            self.window.add_loss(LossPoint(end, self.step, self.loss))

    def _paused(self, at: float) -> bool:
        return any(a <= at <= b for a, b in self.pauses[-2:])

    def scrape(self) -> Context:
        """Advance by one scrape interval, fill the window as the watchdog does, and return the
        context of the check that follows."""
        rng = self.rng
        self.now += self.interval
        now = self.now
        if self.active(AnomalyKind.TRAINER_GONE, now):
            self.exited = True
        self._advance(now)
        started = self.step > 0
        if not started or rng.random() < 0.003:
            self.window.add_trainer(TrainerSample(time=now, reachable=started))
        else:
            self.window.add_trainer(
                TrainerSample(
                    time=now,
                    step=self.step,
                    loss=self.loss,
                    samples_per_second=self.samples_per_second,
                    mfu=self.mfu,
                    step_seconds=self.step_seconds,
                    last_checkpoint_time=self.checkpoint_time,
                    last_checkpoint_step=self.checkpoint_step,
                )
            )
        gpus = []
        for g in range(GPUS):
            if self.exited:
                util, tensor = 0.0, 0.0
            elif self.active(AnomalyKind.STALL, now):
                util, tensor = 100.0, 0.0
            elif self.active(AnomalyKind.GPU_IDLE, now):
                util, tensor = rng.uniform(5, 15), 0.02
            elif self._paused(now):
                util, tensor = rng.uniform(0, 5), 0.0
            elif now < START + WARMUP:
                util, tensor = rng.uniform(30, 90), rng.uniform(0.1, 0.4)
            else:
                util, tensor = rng.uniform(90, 99), rng.uniform(0.45, 0.55)
            memory = self.memory[g] + rng.uniform(-0.005, 0.005)
            if g == 0 and self.active(AnomalyKind.MEMORY_NEAR_LIMIT, now):
                memory = 0.97
            xid = 13 if g == 5 else 0
            if g == 3 and self.active(AnomalyKind.FATAL_XID, now):
                xid = 79
            gpus.append(
                GpuSample(
                    time=now,
                    gpu=str(g),
                    uuid=f"GPU-{self.seed:04d}-{g}",
                    utilization=round(util),
                    tensor_active=tensor,
                    fb_used_mib=81559 * memory,
                    fb_free_mib=81559 * (1 - memory),
                    xid=xid,
                )
            )
        self.window.add_gpus(gpus)
        return Context(
            now=now,
            started=START,
            warmup_seconds=WARMUP,
            checkpoint_every_seconds=CHECKPOINT_EVERY,
            trainer_exited=self.exited,
            trainer_exit_code=1 if self.exited else None,
        )

    def observable(self) -> bool:
        """Whether the anomaly shows in what was scraped (for checkpoints: the newest is older
        than the allowed age, twice the interval)."""
        if self.anomaly is AnomalyKind.CHECKPOINT_STALE:
            return self.now - self.last_checkpoint > 2 * CHECKPOINT_EVERY
        return self.now >= self.onset


def _false_positives(job: tuple[int, int, float]) -> tuple[int, Counter[str], set[str]]:
    seed, samples, interval = job
    run = Run(seed, interval)
    kinds: Counter[str] = Counter()
    keys: set[str] = set()
    for _ in range(samples):
        for finding in detect_all(run.window, THRESHOLDS, run.scrape()):
            kinds[finding.kind.value] += 1
            keys.add(finding.key)
    return seed, kinds, keys


def _latency(job: tuple[AnomalyKind, int, float]) -> tuple[AnomalyKind, int | None, set[str], int]:
    """Scrapes from the first that shows the anomaly to its finding (None: not within 400),
    other kinds seen after the onset, and findings of any kind before it."""
    kind, seed, interval = job
    rng = random.Random(seed * 7919)
    onset_sample = 1200 + rng.randrange(60)
    run = Run(seed, interval, anomaly=kind, onset=START + onset_sample * interval + 1)
    early = 0
    shown: int | None = None
    others: set[str] = set()
    for i in range(onset_sample + 400):
        findings: list[Finding] = detect_all(run.window, THRESHOLDS, run.scrape())
        if shown is None and run.observable():
            shown = i
        if shown is None:
            early += len(findings)
            continue
        others |= {f.kind.value for f in findings if f.kind is not kind}
        if any(f.kind is kind for f in findings):
            return kind, i - shown, others, early
    return kind, None, others, early


def _cost(interval: float, calls: int) -> tuple[float, float]:
    """Microseconds per detect_all on a full window: healthy, then during a stall and a NaN."""
    run = Run(1, interval)
    context = run.scrape()
    for _ in range(2100):
        context = run.scrape()

    def per_call(window: Window, ctx: Context) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            detect_all(window, THRESHOLDS, ctx)
        return (time.perf_counter() - started) / calls * 1e6

    healthy = per_call(run.window, context)
    sick = Run(2, interval, anomaly=AnomalyKind.STALL, onset=START + 1800 * interval)
    for _ in range(2100):
        context = sick.scrape()
    return healthy, per_call(sick.window, context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=50, help="healthy runs for false positives")
    parser.add_argument("--samples", type=int, default=10_000, help="scrapes per healthy run")
    parser.add_argument("--latency-seeds", type=int, default=20, help="runs per anomaly kind")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between scrapes")
    parser.add_argument("--cost-calls", type=int, default=300)
    parser.add_argument("--processes", type=int, default=multiprocessing.cpu_count())
    args = parser.parse_args()
    started = time.perf_counter()
    with multiprocessing.Pool(args.processes) as pool:
        print(
            f"(a) detection latency, in scrapes of {args.interval:g} s "
            f"({args.latency_seeds} runs per kind)"
        )
        print(f"  {'kind':18s} {'median':>6s} {'max':>5s} {'missed':>6s}  also found; injected")
        jobs = [(k, s, args.interval) for k in ANOMALIES for s in range(args.latency_seeds)]
        results: dict[AnomalyKind, list[tuple[int | None, set[str], int]]] = {}
        for kind, latency, others, early in pool.imap(_latency, jobs):
            results.setdefault(kind, []).append((latency, others, early))
        for kind, rows in results.items():
            found = [r[0] for r in rows if r[0] is not None]
            missed = sum(1 for r in rows if r[0] is None)
            early = sum(r[2] for r in rows)
            also = sorted(set().union(*(r[1] for r in rows)))
            median = f"{statistics.median(found):6.1f}" if found else "     -"
            print(
                f"  {kind.value:18s} {median} {max(found, default=0):5d} {missed:6d}  "
                f"{','.join(also) or '-'}; {ANOMALIES[kind]}"
                + (f"  [{early} findings before the onset]" if early else "")
            )
        print(
            f"(b) false positives: {args.seeds} healthy runs x {args.samples} scrapes "
            f"({args.seeds * args.samples * args.interval / 86400:.0f} simulated days)"
        )
        kinds: Counter[str] = Counter()
        keys: set[str] = set()
        runs_with = 0
        fp_jobs = [(seed, args.samples, args.interval) for seed in range(1000, 1000 + args.seeds)]
        for seed, seen, run_keys in pool.imap_unordered(_false_positives, fp_jobs):
            kinds += seen
            keys |= {f"{seed}/{k}" for k in run_keys}
            runs_with += bool(run_keys)
        print(
            f"  findings: {sum(kinds.values())}, distinct keys (reports): {len(keys)}, "
            f"runs with any: {runs_with}/{args.seeds}"
        )
        for name, count in kinds.most_common():
            print(f"    {name}: {count}")
        for key in sorted(keys)[:20]:
            print(f"    key {key}")
    healthy, sick = _cost(args.interval, args.cost_calls)
    print(
        "(c) detect_all on a full window (2000 scrapes, 2000 losses, 16000 GPU samples): "
        f"{healthy:.0f} us healthy, {sick:.0f} us during a stall"
    )
    print(f"total {time.perf_counter() - started:.0f} s on {args.processes} processes")


if __name__ == "__main__":
    main()
