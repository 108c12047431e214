"""Detectors: pure functions that judge a `Window` and return `Finding`s. No I/O, no clock: the
time is `Context.now`, the history is the window. The watchdog calls `detect_all` at every check
and reports a finding only when its `key` is new, so the keys carry the de-duplication:

- one incident keeps one key across every check that still sees it (keys name where the incident
  began: a step, a sample's time, a GPU and an XID value), and
- a new incident after a recovery gets a new key (it began somewhere else).

Keys come from the window alone. Stall, checkpoint, exit and XID keys name things that stay put
(a step, a checkpoint's time, an exit code, a GPU and its XID; an XID key survives a restart of
the watchdog). The others name where the incident began; one that began before the oldest sample
the window holds (it lasted longer than the whole window: hours to days) gets the key
`<Kind>:since-window-start` from then on, so such an incident is reported at most twice.

Every detector states its default and why in its docstring. The shared rules:

- Sustained, not momentary. Single bad samples are what healthy runs are made of (one batch's
  loss, one window that held a checkpoint write, one slow scrape): throughput, MFU, GPU and memory
  findings need several consecutive bad samples, and an incident ends only after several good
  ones (hysteresis), so a condition that hovers at its threshold stays one incident.
- One point per logging window. The trainer's gauges change only when it flushes a window (every
  `log_every` steps); scrapes that see the same step again add no evidence and are counted once.
- Warm-up: no throughput, MFU or GPU-idle judgement before `started + warmup_seconds` (compiling,
  loading data and warming caches look exactly like a starved GPU).
- Stalls and pauses are told apart by how long they last against what this run has shown:
  its step time, its logging granularity, its scrape interval and its previous pauses.

Severity: Critical for what wastes the run (non-finite loss, divergence, stall, fatal XID, the
trainer gone), Warning for what costs efficiency or deserves a look.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from proctor.api.v1alpha1 import AnomalyKind, duration_seconds
from proctor.api.v1alpha1.experiment import Severity, WatchdogThresholds
from proctor.watchdog.observations import (
    Context,
    Finding,
    GpuSample,
    LossPoint,
    TrainerSample,
    Window,
)

logger = logging.getLogger(__name__)

Detector = Callable[[Window, WatchdogThresholds, Context], list[Finding]]

MAD_TO_SIGMA = 1.4826  # a normal distribution's standard deviation, in median absolute deviations

# Non-finite loss
NON_FINITE_RECOVER = 3  # finite points that end a non-finite incident

# Loss spike
SPIKE_WINDOW = 100  # trailing points for the median and MAD (50 let a MAD 25% low cry wolf)
SPIKE_MIN_POINTS = 20  # no judgement on fewer trailing points
SPIKE_SUSTAIN = 4  # consecutive points above the threshold: one batch's loss is noise
SPIKE_RECOVER = 2
SPIKE_LOOKBACK = 100  # points judged before the recent ones, beyond their baselines
SPIKE_MIN_RELATIVE = 0.1  # and at least 10% above the median, for very smooth curves

# Divergence
DIVERGENCE_SPAN = 20  # points per running median
DIVERGENCE_RISE = 0.5  # the running median 50% above its best ...
DIVERGENCE_NOISE = 6.0  # ... and 6 standard errors of the best median above it
DIVERGENCE_SUSTAIN = 20  # for a whole span of running medians in a row
DIVERGENCE_RECOVER = 10

# Plateau (off by default)
PLATEAU_SPAN = 500  # points between the two medians compared
PLATEAU_MEDIAN = 50  # points per median
PLATEAU_MIN_IMPROVEMENT = 0.01  # less than 1% better over the span is a plateau
PLATEAU_LEVEL_STEP = 0.1  # key: the loss level, in 10% bins

# Stall
STALL_MIN_SECONDS = 300.0
STALL_RECENT = 30  # logging windows for the step time, the granularity and the scrape interval
STALL_PAUSE_MARGIN = 1.5  # times the run's usual long pause (the second longest it resumed from)
STALL_PAUSE_CAP_SECONDS = 3600.0  # pauses longer than this are not taken as normal
CHECKPOINT_WRITE_ALLOWANCE = 600.0  # extra seconds at least while a checkpoint is due

# Throughput and MFU
THROUGHPUT_WINDOW = 30  # logging windows for the running median
THROUGHPUT_MIN_BASELINE = 10
THROUGHPUT_SUSTAIN = 3  # logging windows in a row ...
THROUGHPUT_MIN_SECONDS = 90.0  # ... spanning at least this long
THROUGHPUT_RECOVER = 3
MFU_SUSTAIN = 3
MFU_MIN_SECONDS = 90.0
MFU_RECOVER = 3

# GPU idle or starved
GPU_IDLE_UTILIZATION = 20.0  # percent
GPU_STARVED_TENSOR = 0.05  # tensor pipe active ratio ...
GPU_STARVED_UTILIZATION = 50.0  # ... on a GPU that is also mostly idle
GPU_STARVED_SM = 0.2  # without utilization: SM active below this
GPU_IDLE_SUSTAIN = 4  # samples
GPU_IDLE_MIN_SECONDS = 180.0
GPU_IDLE_RECOVER = 3
GPU_IDLE_MIN_STEPS_SEEN = 3  # distinct steps during the idle stretch: training went on

# Fatal XID: the GPU needs a reset or the node a reboot; the job cannot continue on it.
# 48 double-bit ECC, 62 internal micro-controller halt, 64 ECC page retirement failure,
# 74 NVLink error, 79 fallen off the bus, 95 uncontained ECC, 119/120 GSP errors,
# 140 unrecovered ECC. Others (13 graphics engine exception, 31 MMU fault, 43 a stopped
# kernel) are the application's own faults and show in its loss or its exit.
FATAL_XIDS = frozenset({48, 62, 64, 74, 79, 95, 119, 120, 140})

# Memory
MEMORY_SUSTAIN = 3
MEMORY_RECOVER = 3

# Trainer gone
UNREACHABLE_SAMPLES = 5
UNREACHABLE_MIN_SECONDS = 120.0
NOT_FAILURES = {0: "done", 4: "preempted, checkpointed"}  # `proctor train` exit codes
SIGNALS = {137: "SIGKILL, often the out-of-memory killer", 143: "SIGTERM, from outside"}
EXIT_CODES = {1: "the training code raised or the loss became non-finite", 2: "bad configuration"}

SINCE_WINDOW_START = "since-window-start"
_LOSS = attrgetter("loss")


# ---- small statistics (no numpy in the watchdog image) -------------------------------------------


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _median_mad(values: Sequence[float]) -> tuple[float, float]:
    med = _median(values)
    return med, _median([abs(v - med) for v in values])


def _num(value: float) -> float | str:
    """A number for evidence: rounded, and non-finite values as their names (strict JSON)."""
    return round(value, 6) if math.isfinite(value) else str(value)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


# ---- incidents: stretches of bad samples, with hysteresis ----------------------------------------


@dataclass(frozen=True)
class _Incident:
    start: int  # index of its first bad sample
    end: int  # index of its last bad sample
    longest: int  # its longest run of consecutive bad samples
    ongoing: bool  # not yet ended by `recover` good samples


def _incidents(
    is_bad: Callable[[int], bool], n: int, lo: int, sustain: int, recover: int
) -> list[_Incident]:
    """The incidents among samples 0..n-1 that reach into [lo, n). An incident is a stretch of
    bad samples that no `recover` consecutive good samples interrupt, holding a run of at least
    `sustain` consecutive bad ones. Only samples in [lo, n) are judged unless one is bad: then the
    walk goes back to where its stretch began. Each index is judged at most once."""
    lo = max(0, min(lo, n))
    memo: dict[int, bool] = {}

    def bad(i: int) -> bool:
        if i not in memo:
            memo[i] = is_bad(i)
        return memo[i]

    if not any(bad(i) for i in range(lo, n)):
        return []
    scan, good, i = 0, 0, lo - 1
    while i >= 0:
        if bad(i):
            good = 0
        else:
            good += 1
            if good >= recover:
                scan = i + recover
                break
        i -= 1
    found: list[_Incident] = []
    start: int | None = None
    last = run = longest = good = 0
    for i in range(scan, n):
        if bad(i):
            if start is None:
                start, longest = i, 0
            run += 1
            longest = max(longest, run)
            last, good = i, 0
        else:
            run = 0
            if start is not None:
                good += 1
                if good >= recover:
                    found.append(_Incident(start, last, longest, ongoing=False))
                    start = None
    if start is not None:
        found.append(_Incident(start, last, longest, ongoing=True))
    return [x for x in found if x.longest >= sustain and x.end >= lo]


def _key(kind: AnomalyKind, anchor: str, at_window_start: bool) -> str:
    return f"{kind.value}:{SINCE_WINDOW_START if at_window_start else anchor}"


# ---- the series the detectors read -------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    time: float
    step: int
    value: float
    checkpoint: float | None  # the trainer's last checkpoint time when the point was first seen


def _trainer_points(
    window: Window, value: Callable[[TrainerSample], float | None], limit: int | None
) -> list[_Point]:
    """One point per logging window from the trainer's endpoint, old to new: reachable samples
    with a step and a value; a step seen again (no flush since) counted once, at the time it was
    first seen. `limit`: only the newest points, found walking back from the end."""
    out: list[_Point] = []
    first: TrainerSample | None = None  # the earliest sample seen so far of the current step
    v: float | None = None
    for sample in reversed(window.trainer):
        if not sample.reachable or sample.step is None:
            continue
        if first is not None and sample.step == first.step:
            first = sample
            continue
        if first is not None and v is not None:
            out.append(_point(first, v))
            if limit is not None and len(out) >= limit:
                first = None
                break
        first, v = sample, value(sample)
    if first is not None and v is not None:
        out.append(_point(first, v))
    out.reverse()
    return out


def _point(sample: TrainerSample, value: float) -> _Point:
    assert sample.step is not None
    return _Point(sample.time, sample.step, value, sample.last_checkpoint_time)


def _losses(window: Window) -> list[LossPoint]:
    """The logged losses: the JSON-lines file's when there is one (every window), else the
    endpoint's (the windows that scrapes caught), one per step."""
    if window.losses:
        return list(window.losses)
    out: list[LossPoint] = []
    for sample in window.trainer:
        if not sample.reachable or sample.step is None or sample.loss is None:
            continue
        if out and out[-1].step == sample.step:
            continue
        out.append(LossPoint(sample.time, sample.step, sample.loss))
    return out


def _finite_losses(points: Sequence[LossPoint]) -> list[float]:
    values = list(map(_LOSS, points))
    if math.isfinite(sum(values)):
        return values
    return [v for v in values if math.isfinite(v)]


def _loss_truncated(window: Window) -> bool:
    series = window.losses if window.losses else window.trainer
    return len(series) >= window.max_points


def _recent_time(window: Window) -> float:
    """Points newer than this are new since the last few checks (one trainer sample is added per
    check): the ones point-like detectors (non-finite loss, spikes) must look at, so an incident
    that came and went between two checks is still caught."""
    trainer = window.trainer
    return trainer[-3].time if len(trainer) >= 3 else -math.inf


def _first_after(points: Sequence[LossPoint], time: float) -> int:
    i = len(points)
    while i > 0 and points[i - 1].time > time:
        i -= 1
    return i


def _gpu_tails(window: Window, count: int) -> dict[str, list[GpuSample]]:
    """The newest `count` samples of each GPU (old to new), walking back only as far as needed."""
    tails: dict[str, list[GpuSample]] = {}
    for walked, sample in enumerate(reversed(window.gpus), start=1):
        tail = tails.setdefault(sample.gpu, [])
        if len(tail) < count:
            tail.append(sample)
        if walked >= 2 * count * len(tails) and all(len(t) >= count for t in tails.values()):
            break
    for tail in tails.values():
        tail.reverse()
    return tails


def _gpu_series(window: Window, gpu: str) -> list[GpuSample]:
    return [sample for sample in window.gpus if sample.gpu == gpu]


def _gpus_truncated(window: Window) -> bool:
    return len(window.gpus) >= window.max_points * 8


def _warm(context: Context) -> float:
    return context.started + context.warmup_seconds


# ---- the detectors ---------------------------------------------------------------------------


def detect_non_finite_loss(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """NaN or infinite loss: Critical, from the first such point, no threshold.

    A non-finite loss does not come back by itself: every step after it is wasted, and a
    checkpoint of those weights poisons every restart. Looks at the points logged since the last
    few checks, so a NaN that came and went between two checks is still reported.
    Key: the first non-finite step of the incident; finite losses for 3 points end it.
    """
    points = _losses(window)
    n = len(points)
    lo = min(_first_after(points, _recent_time(window)), n - 1)

    def bad(i: int) -> bool:
        return not math.isfinite(points[i].loss)

    findings = []
    for inc in _incidents(bad, n, lo, sustain=1, recover=NON_FINITE_RECOVER):
        first, last = points[inc.start], points[inc.end]
        before = next(
            (points[i] for i in range(inc.start - 1, -1, -1) if math.isfinite(points[i].loss)),
            None,
        )
        count = sum(1 for i in range(inc.start, inc.end + 1) if bad(i))
        previous = (
            f" (last finite loss {_fmt(before.loss)} at step {before.step})" if before else ""
        )
        findings.append(
            Finding(
                kind=AnomalyKind.NON_FINITE_LOSS,
                severity=Severity.CRITICAL,
                message=(
                    f"The loss became {first.loss} at step {first.step}{previous}; "
                    f"{count} non-finite point(s) up to step {last.step}. Steps after a "
                    "non-finite loss are wasted and a checkpoint of these weights would poison "
                    f"every restart: resume from a checkpoint before step {first.step} and look "
                    "for the cause (learning rate too high, fp16 overflow without loss scaling, "
                    "a bad batch, a log or division of zero)."
                ),
                key=_key(
                    AnomalyKind.NON_FINITE_LOSS,
                    f"step-{first.step}",
                    inc.start == 0 and _loss_truncated(window),
                ),
                evidence={
                    "observed": str(first.loss),
                    "first_bad_step": first.step,
                    "last_bad_step": last.step,
                    "non_finite_points": count,
                    "last_finite_loss": _num(before.loss) if before else None,
                    "last_finite_step": before.step if before else None,
                    "ongoing": "yes" if inc.ongoing else "no",
                },
                step=first.step,
            )
        )
    return findings


class _SpikeJudge:
    """Loss spikes among the finite points of raw[offset:] that reach past `recent`."""

    def __init__(self, raw: Sequence[LossPoint], offset: int, recent: float, factor: float) -> None:
        self.points = [p for p in raw[offset:] if math.isfinite(p.loss)]
        self.offset = offset
        self.factor = factor
        self.short = False  # an incident reached back past the suffix's first baselines
        self._limits: dict[int, tuple[float, float, float]] = {}
        n = len(self.points)
        lo = min(_first_after(self.points, recent), n - 1)
        self.incidents = _incidents(self.bad, n, lo, SPIKE_SUSTAIN, SPIKE_RECOVER)

    def limit(self, i: int) -> tuple[float, float, float]:
        """(median, MAD, threshold) of the points before point i."""
        if i not in self._limits:
            before = self.points[max(0, i - SPIKE_WINDOW) : i]
            med, mad = _median_mad([p.loss for p in before])
            margin = max(self.factor * MAD_TO_SIGMA * mad, SPIKE_MIN_RELATIVE * abs(med), 1e-12)
            self._limits[i] = (med, mad, med + margin)
        return self._limits[i]

    def bad(self, i: int) -> bool:
        if self.offset and i < SPIKE_WINDOW:
            self.short = True
            return False
        return i >= SPIKE_MIN_POINTS and self.points[i].loss > self.limit(i)[2]


def detect_loss_spike(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """Loss spike: Warning. A logged loss above median + loss_spike_factor (default 4) x 1.4826 x
    MAD of the 100 points before it (at least 20), and at least 10% above that median, for 4
    points in a row.

    Median and MAD, not mean and standard deviation, so earlier spikes do not hide later ones.
    1.4826 x MAD is the standard deviation of normal noise, so the default is a 4-sigma jump.
    The loss a trainer logs is one batch's: single-point outliers are common and harmless, and a
    real spike (an optimizer instability, a bad data shard) lasts tens of steps or more, hence 4
    points (with 2 and 3, heavy-tailed outliers side by side cried wolf on simulated healthy
    runs: about once per 6 and per 200 days of training).
    The 10% floor keeps a very smooth curve (tiny MAD) from firing on noise. Looks at the points
    logged since the last few checks. Key: the first step of the spike.
    """
    raw = _losses(window)
    recent = _recent_time(window)
    # Judge a suffix that holds the recent points and their baselines; the whole series only
    # when an incident reaches back past it.
    offset = max(0, _first_after(raw, recent) - SPIKE_WINDOW - SPIKE_LOOKBACK)
    judge = _SpikeJudge(raw, offset, recent, thresholds.loss_spike_factor)
    if judge.short:
        offset = 0
        judge = _SpikeJudge(raw, offset, recent, thresholds.loss_spike_factor)
    points, incidents, bad, limit = judge.points, judge.incidents, judge.bad, judge.limit
    factor = thresholds.loss_spike_factor
    findings = []
    for inc in incidents:
        med, mad, threshold = limit(inc.start)
        peak = max(points[inc.start : inc.end + 1], key=lambda p: p.loss)
        first = points[inc.start]
        above = sum(1 for i in range(inc.start, inc.end + 1) if bad(i))
        findings.append(
            Finding(
                kind=AnomalyKind.LOSS_SPIKE,
                severity=Severity.WARNING,
                message=(
                    f"The loss jumped to {_fmt(first.loss)} at step {first.step} (peak "
                    f"{_fmt(peak.loss)} at step {peak.step}) against a median of {_fmt(med)} over "
                    f"the {min(inc.start, SPIKE_WINDOW)} points before (threshold "
                    f"{_fmt(threshold)}: {factor:g} x 1.4826 x MAD {_fmt(mad)}); {above} points "
                    "above it. If it does not come back down, lower the learning rate or add "
                    "gradient clipping, and check the data around that step."
                ),
                key=_key(
                    AnomalyKind.LOSS_SPIKE,
                    f"step-{first.step}",
                    offset == 0 and inc.start == 0 and _loss_truncated(window),
                ),
                evidence={
                    "observed": _num(first.loss),
                    "peak": _num(peak.loss),
                    "peak_step": peak.step,
                    "baseline_median": _num(med),
                    "baseline_mad": _num(mad),
                    "threshold": _num(threshold),
                    "loss_spike_factor": factor,
                    "baseline_points": min(inc.start, SPIKE_WINDOW),
                    "points_above": above,
                    "ongoing": "yes" if inc.ongoing else "no",
                },
                step=first.step,
            )
        )
    return findings


def detect_divergence(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """Divergence: Critical. The running median of the loss (20 points) above its best earlier
    running median by 50% of it and by 6 standard errors of that median, for 20 running medians
    in a row (so the rise holds over 40 logged points).

    A spike comes back down; a divergence keeps climbing and the run is lost. The running median
    ignores single outliers; the best is taken over earlier, non-overlapping medians; the noise
    term keeps a noisy loss near zero from tripping a relative rule. Needs 60 points.
    Key: the first point whose running median crossed; it ends after 10 medians back under.
    """
    raw = _losses(window)
    xs = _finite_losses(raw)
    span = DIVERGENCE_SPAN
    n = len(xs)
    if n < 3 * span:
        return []

    def margin(values: Sequence[float], med: float) -> float:
        mad = _median([abs(v - med) for v in values])
        error = 1.2533 * MAD_TO_SIGMA * mad / math.sqrt(len(values))
        return max(DIVERGENCE_RISE * abs(med), DIVERGENCE_NOISE * error)

    # Cheap checks first: the latest median against the lowest earlier loss (no median is lower),
    # then against block medians (aligned on the newest point).
    now = _median(xs[-span:])
    lowest = min(xs[: n - span])
    if lowest > 0 and now <= (1 + DIVERGENCE_RISE) * lowest:
        return []
    ends = range(n - span, span - 1, -span)
    medians = [_median(xs[i - span : i]) for i in ends]
    best_med = min(medians)
    best_end = ends[medians.index(best_med)]
    if now <= best_med + margin(xs[best_end - span : best_end], best_med):
        return []
    # Now exactly: every running median against the best one that ended a span before it.
    points = [p for p in raw if math.isfinite(p.loss)]
    running = [_median(xs[i - span + 1 : i + 1]) if i >= span - 1 else math.nan for i in range(n)]
    limits: list[tuple[float, float, int]] = [(math.inf, math.inf, -1)] * n
    best, best_at, best_limit = math.inf, -1, math.inf
    for i in range(2 * span - 1, n):
        j = i - span
        if running[j] < best:
            best, best_at = running[j], j
            best_limit = best + margin(xs[j - span + 1 : j + 1], best)
        limits[i] = (best, best_limit, best_at)

    def bad(i: int) -> bool:
        return running[i] > limits[i][1]

    incidents = _incidents(
        bad, n, n - DIVERGENCE_RECOVER, sustain=DIVERGENCE_SUSTAIN, recover=DIVERGENCE_RECOVER
    )
    findings = []
    for inc in incidents:
        if not inc.ongoing:
            continue
        best, limit, best_at = limits[inc.start]
        first, last = points[inc.start], points[n - 1]
        findings.append(
            Finding(
                kind=AnomalyKind.DIVERGENCE,
                severity=Severity.CRITICAL,
                message=(
                    f"The loss is diverging: its running median ({span} points) rose from a best "
                    f"of {_fmt(best)} (step {points[best_at].step}) past {_fmt(limit)} at step "
                    f"{first.step} and is {_fmt(running[n - 1])} at step {last.step}. The run "
                    "will not recover by itself: resume from a checkpoint before step "
                    f"{first.step} with a lower learning rate, gradient clipping or a longer "
                    "warm-up, or revisit the change this experiment tests."
                ),
                key=_key(
                    AnomalyKind.DIVERGENCE,
                    f"step-{first.step}",
                    inc.start <= 2 * span - 1 and _loss_truncated(window),
                ),
                evidence={
                    "observed": _num(running[n - 1]),
                    "baseline_best_median": _num(best),
                    "baseline_step": points[best_at].step,
                    "threshold": _num(limit),
                    "rise_ratio": DIVERGENCE_RISE,
                    "median_points": span,
                    "medians_above": inc.end - inc.start + 1,
                    "first_step_above": first.step,
                },
                step=last.step,
            )
        )
    return findings


def detect_plateau(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """Plateau: Warning, OFF by default (`detect_all(..., plateau=True)`). The median of the
    last 50 logged losses less than 1% better than the median 500 points earlier.

    Off by default because a converged run is a plateau too, and only the experimenter knows
    whether more improvement was expected. Key: the loss level in 10% bins, so one plateau keeps
    one key and a plateau at a new level (after more progress) gets a new one.
    """
    raw = _losses(window)
    xs = _finite_losses(raw)
    n = len(xs)
    if n < PLATEAU_SPAN + PLATEAU_MEDIAN:
        return []
    now = _median(xs[-PLATEAU_MEDIAN:])
    then = _median(xs[n - PLATEAU_SPAN - PLATEAU_MEDIAN : n - PLATEAU_SPAN])
    improvement = (then - now) / abs(then) if then else 0.0
    if improvement >= PLATEAU_MIN_IMPROVEMENT:
        return []
    level = round(math.log(abs(now)) / math.log1p(PLATEAU_LEVEL_STEP)) if now else 0
    sign = "-" if now < 0 else ""
    step = raw[-1].step
    return [
        Finding(
            kind=AnomalyKind.PLATEAU,
            severity=Severity.WARNING,
            message=(
                f"The loss has not improved: its median over the last {PLATEAU_MEDIAN} points is "
                f"{_fmt(now)}, against {_fmt(then)} {PLATEAU_SPAN} points earlier "
                f"({improvement:+.2%}, less than {PLATEAU_MIN_IMPROVEMENT:.0%}). If more was "
                "expected, the learning rate may have decayed too far or the model is at its "
                "capacity: decide whether to stop and conclude, or change the schedule."
            ),
            key=f"{AnomalyKind.PLATEAU.value}:level-{sign}{level}",
            evidence={
                "observed": _num(now),
                "baseline": _num(then),
                "improvement": _num(improvement),
                "threshold": PLATEAU_MIN_IMPROVEMENT,
                "span_points": PLATEAU_SPAN,
                "median_points": PLATEAU_MEDIAN,
            },
            step=step,
        )
    ]


@dataclass(frozen=True)
class _Run:
    """Consecutive reachable samples at one step."""

    step: int
    first: float  # time first seen
    last: float  # time last seen
    step_seconds: float | None
    checkpoint_time: float | None  # the trainer's last checkpoint when the run was first seen


def _step_runs(window: Window, newest: int | None = None) -> list[_Run]:
    """Runs of reachable samples at one step, old to new; `newest`: only that many, walking back
    from the end."""
    runs: list[_Run] = []
    first: TrainerSample | None = None  # the earliest sample of the current run
    last = 0.0
    for sample in reversed(window.trainer):
        if not sample.reachable or sample.step is None:
            continue
        if first is not None and sample.step == first.step:
            first = sample
            continue
        if first is not None:
            runs.append(_run(first, last))
            if newest is not None and len(runs) >= newest:
                first = None
                break
        first, last = sample, sample.time
    if first is not None:
        runs.append(_run(first, last))
    runs.reverse()
    return runs


def _run(first: TrainerSample, last: float) -> _Run:
    assert first.step is not None
    return _Run(first.step, first.time, last, first.step_seconds, first.last_checkpoint_time)


def _step_time(runs: Sequence[_Run]) -> float | None:
    """Seconds per step: the trainer's own figure (median of recent windows, or the latest if
    larger), else from how fast the step advanced between scrapes."""
    recent = runs[-STALL_RECENT:]
    reported = [r.step_seconds for r in recent if r.step_seconds]
    if reported:
        return max(_median(reported), reported[-1])
    rates = [
        (b.first - a.first) / (b.step - a.step)
        for a, b in itertools.pairwise(recent)
        if b.step > a.step
    ]
    return _median(rates) if rates else None


def _allowed_checkpoint_age(
    thresholds: WatchdogThresholds, context: Context, step_time: float | None
) -> float | None:
    if thresholds.max_checkpoint_age is not None:
        return float(duration_seconds(thresholds.max_checkpoint_age))
    intervals = []
    if context.checkpoint_every_seconds:
        intervals.append(context.checkpoint_every_seconds)
    if context.checkpoint_every_steps and step_time:
        intervals.append(context.checkpoint_every_steps * step_time)
    return 2 * min(intervals) if intervals else None


def detect_stall(window: Window, thresholds: WatchdogThresholds, context: Context) -> list[Finding]:
    """Stall: Critical. The trainer's step has not advanced for longer than the largest of:
    stall_factor (default 10) x the step time (the trainer's median step_seconds, or its latest
    if larger), plus what the watchdog cannot see: the steps between two moves of the step gauge
    (the median increment between scrapes) x the step time and two scrape intervals; 5 minutes;
    1.5 x the run's usual long pause (the second longest pause it showed and resumed from, up to
    an hour). While a checkpoint is due (the step is at or just before a multiple of
    checkpoint_every_steps, or checkpoint_every_seconds have passed since the last one) it gets
    2 x the usual checkpoint pause more, and at least 10 minutes.

    The gauge moves once per logging window and scrapes are 15 s to 2 min apart, so "no step for
    10 step times" can only be known that much later. The 5-minute floor is what healthy runs do
    (pause to evaluate, to write, to reopen data); a real hang lasts until NCCL's timeout (10 min
    by default) or forever. The second longest pause, not the longest, so that one earlier stall
    that resolved itself does not blunt the next. Only reachable samples count: an unanswering
    endpoint is not a stall (see trainer gone), and nothing is judged once the trainer has
    exited. Key: the step it stalled at.
    """
    if context.trainer_exited:
        return []
    current_step, first, last = None, math.nan, math.nan
    for sample in reversed(window.trainer):
        if not sample.reachable or sample.step is None:
            continue
        if current_step is None:
            current_step, first, last = sample.step, sample.time, sample.time
        elif sample.step == current_step:
            first = sample.time
        else:
            break
    if current_step is None or last - first <= STALL_MIN_SECONDS:
        return []
    frozen = last - first
    runs = _step_runs(window)
    step_time = _step_time(runs) or 0.0
    recent = runs[-STALL_RECENT - 1 :]
    increments = [b.step - a.step for a, b in itertools.pairwise(recent) if b.step > a.step]
    times = [s.time for s in list(window.trainer)[-STALL_RECENT - 1 :]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    interval = _median(gaps) if gaps else 0.0
    gauge_steps = _median(increments) if increments else 1
    observable = (gauge_steps + thresholds.stall_factor) * step_time + 2 * interval
    pauses = [r.last - r.first for r in runs[:-1] if r.last - r.first <= STALL_PAUSE_CAP_SECONDS]
    checkpoint_pauses = [
        a.last - a.first
        for a, b in itertools.pairwise(runs)
        if b.checkpoint_time is not None
        and (a.checkpoint_time is None or b.checkpoint_time > a.checkpoint_time)
    ]
    usual_pause = _second_largest(pauses)
    deadline = max(STALL_MIN_SECONDS, observable, STALL_PAUSE_MARGIN * usual_pause)
    current = runs[-1]
    due = _checkpoint_due(current, runs, context, increments, step_time, interval)
    if due:
        deadline += max(CHECKPOINT_WRITE_ALLOWANCE, 2 * _second_largest(checkpoint_pauses))
    if frozen <= deadline:
        return []
    return [
        Finding(
            kind=AnomalyKind.STALL,
            severity=Severity.CRITICAL,
            message=(
                f"Training is stalled at step {current_step}: no new step for {frozen:.0f} s, "
                f"against a limit of {deadline:.0f} s (the largest of {STALL_MIN_SECONDS:.0f} s; "
                f"(stall_factor {thresholds.stall_factor:g} + {gauge_steps:g} steps between reads "
                f"of the step) x the step time {step_time:.3g} s + 2 scrape intervals of "
                f"{interval:.0f} s; 1.5 x the run's usual pause of {usual_pause:.0f} s"
                f"{'; plus an allowance for the checkpoint due' if due else ''}). The GPUs are "
                "reserved and idle or spinning: look for a hung collective (one rank failed or "
                "is slower), a dead data loader or a blocked filesystem in the log and the GPU "
                "snapshot; restart from the last checkpoint once the cause is known."
            ),
            key=f"{AnomalyKind.STALL.value}:step-{current_step}",
            evidence={
                "observed_seconds": round(frozen, 3),
                "threshold_seconds": round(deadline, 3),
                "step": current_step,
                "step_seconds": _num(step_time),
                "stall_factor": thresholds.stall_factor,
                "scrape_interval_seconds": round(interval, 3),
                "steps_per_read": gauge_steps,
                "usual_pause_seconds": round(usual_pause, 3),
                "checkpoint_due": "yes" if due else "no",
                "windows_considered": len(recent),
            },
            step=current_step,
        )
    ]


def _second_largest(values: Sequence[float]) -> float:
    """A pause seen twice is a habit of the run (an evaluation, a checkpoint write); the longest
    one alone may be an accident, such as an earlier stall that resolved itself."""
    return sorted(values)[-2] if len(values) >= 2 else 0.0


def _checkpoint_due(
    current: _Run,
    runs: Sequence[_Run],
    context: Context,
    increments: Sequence[int],
    step_time: float,
    interval: float,
) -> bool:
    """Whether the trainer was due to write a checkpoint when its step stopped: it may be
    writing one. Generous on purpose: a wrong yes delays a stall finding, a wrong no cries wolf."""
    granularity = max(_median(increments) if increments else 1, 1)
    every = context.checkpoint_every_steps
    if every:
        next_multiple = -(-current.step // every) * every
        if next_multiple - current.step <= granularity:
            return True
    if context.checkpoint_every_seconds:
        since = current.checkpoint_time
        if since is None:
            since = min(runs[0].first, context.started) if runs else context.started
        slack = granularity * step_time + 2 * interval
        if current.first + slack >= since + context.checkpoint_every_seconds:
            return True
    return False


def _drop_finding(
    kind: AnomalyKind,
    points: Sequence[_Point],
    incident: _Incident,
    at_window_start: bool,
    against: str,
    baseline: float,
    threshold: float,
    advice: str,
    evidence: dict[str, float | int | str | None],
) -> Finding:
    first, last = points[incident.start], points[-1]
    below = incident.end - incident.start + 1
    what = "Throughput" if kind is AnomalyKind.THROUGHPUT_DROP else "MFU"
    return Finding(
        kind=kind,
        severity=Severity.WARNING,
        message=(
            f"{what} fell to {_fmt(first.value)} at step {first.step} and is {_fmt(last.value)} "
            f"at step {last.step}, {against}, over {below} logging windows. {advice}"
        ),
        key=_key(kind, f"step-{first.step}", at_window_start),
        evidence={
            "observed": _num(last.value),
            "first_low": _num(first.value),
            "baseline": _num(baseline),
            "threshold": _num(threshold),
            "windows_in_incident": below,
            "longest_low_run": incident.longest,
            **evidence,
        },
        step=last.step,
    )


def _throughput(sample: TrainerSample) -> float | None:
    if sample.samples_per_second is not None:
        return sample.samples_per_second
    return sample.tokens_per_second


def _mfu(sample: TrainerSample) -> float | None:
    return sample.mfu


def _checkpointed(points: Sequence[_Point], i: int) -> bool:
    """Whether logging window i held a checkpoint write (the newest checkpoint changed during
    it): its rates measure the write, not the training."""
    return i > 0 and points[i].checkpoint != points[i - 1].checkpoint


def _low_incident(
    window: Window,
    value: Callable[[TrainerSample], float | None],
    is_low: Callable[[Sequence[_Point], int], bool],
    tail: int,
    sustain: int,
    min_seconds: float,
    recover: int,
) -> tuple[list[_Point], _Incident] | None:
    """The ongoing incident of low logging windows of one trainer series, if any: the newest
    `tail` windows first (enough to know nothing is wrong), the whole series when one is low."""

    def judge(points: Sequence[_Point]) -> Callable[[int], bool]:
        return lambda i: not _checkpointed(points, i) and is_low(points, i)

    recent = _trainer_points(window, value, tail)
    low = judge(recent)
    if not any(low(i) for i in range(max(0, len(recent) - recover), len(recent))):
        return None
    points = _trainer_points(window, value, None)
    n = len(points)
    for inc in reversed(_incidents(judge(points), n, n - recover, sustain, recover)):
        if inc.ongoing and points[inc.end].time - points[inc.start].time >= min_seconds:
            return points, inc
    return None


def detect_throughput_drop(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """Throughput drop: Warning. Samples per second (tokens per second if that is all there is)
    below throughput_drop_ratio (default 0.5) x the median of the 30 logging windows before,
    in 3 windows in a row spanning at least 90 s, judged after warm-up, with at least 10 windows
    of baseline; a window that held a checkpoint write is not judged.

    A window that held an evaluation or a slow batch dips once, and now and then two dips meet;
    a straggling node, thermal throttling, a starved data loader or a degraded interconnect stay
    down. (2 windows in a row cried wolf on simulated healthy runs; 3 and 90 s did not.)
    The baseline follows the run, so a lasting drop is reported once, not forever; an incident
    ends after 3 windows back above the threshold. Key: the step of the first low window.
    """
    if context.trainer_exited:
        return []
    ratio = thresholds.throughput_drop_ratio
    warm = _warm(context)

    def baseline(points: Sequence[_Point], i: int) -> tuple[float, int]:
        before = points[max(0, i - THROUGHPUT_WINDOW) : i]
        return _median([p.value for p in before]), len(before)

    def is_low(points: Sequence[_Point], i: int) -> bool:
        if i < THROUGHPUT_MIN_BASELINE or points[i].time < warm:
            return False
        return points[i].value < ratio * baseline(points, i)[0]

    found = _low_incident(
        window,
        _throughput,
        is_low,
        THROUGHPUT_WINDOW + THROUGHPUT_RECOVER,
        THROUGHPUT_SUSTAIN,
        THROUGHPUT_MIN_SECONDS,
        THROUGHPUT_RECOVER,
    )
    if found is None:
        return []
    points, inc = found
    base, count = baseline(points, inc.start)
    return [
        _drop_finding(
            AnomalyKind.THROUGHPUT_DROP,
            points,
            inc,
            inc.start == 0 and len(window.trainer) >= window.max_points,
            f"against {_fmt(base)}/s over the {count} windows before (threshold "
            f"{_fmt(ratio * base)}/s)",
            base,
            ratio * base,
            "Look for a straggling GPU or node (thermal throttling, a degraded link), a data "
            "loader that cannot keep up, or another job sharing the node.",
            {"throughput_drop_ratio": ratio, "baseline_windows": count},
        )
    ]


def detect_low_mfu(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """MFU under the floor: Warning, only when min_mfu_ratio is set (default unset) and the
    trainer reports MFU. Below the floor in 3 logging windows in a row spanning at least 90 s,
    judged after warm-up; a window that held a checkpoint write is not judged.

    The floor is the experimenter's statement of what this model should reach; without it there
    is no honest threshold (MFU depends on the model, the batch and the GPU). Sustained for the
    same reasons as throughput. Ends after 3 windows back above. Key: the step of the first low
    window.
    """
    floor = thresholds.min_mfu_ratio
    if floor is None or context.trainer_exited:
        return []
    warm = _warm(context)

    def is_low(points: Sequence[_Point], i: int) -> bool:
        return points[i].time >= warm and points[i].value < floor

    found = _low_incident(
        window, _mfu, is_low, MFU_RECOVER + 1, MFU_SUSTAIN, MFU_MIN_SECONDS, MFU_RECOVER
    )
    if found is None:
        return []
    points, inc = found
    return [
        _drop_finding(
            AnomalyKind.LOW_MFU,
            points,
            inc,
            inc.start == 0 and len(window.trainer) >= window.max_points,
            f"under the floor min_mfu_ratio {floor:g}",
            floor,
            floor,
            "Profile a few steps: look for small kernels, host-device synchronisation, a data "
            "loader that cannot keep up, or missing mixed precision and fused kernels.",
            {"min_mfu_ratio": floor},
        )
    ]


def _on(series: Sequence[GpuSample], bad: Callable[[GpuSample], bool]) -> Callable[[int], bool]:
    return lambda i: bad(series[i])


def _gpu_incidents(
    window: Window, bad: Callable[[GpuSample], bool], sustain: int, recover: int
) -> list[tuple[float, str, list[GpuSample], _Incident]]:
    """Per GPU, its ongoing incident: (start time, GPU, its samples, the incident)."""
    found = []
    for gpu, tail in _gpu_tails(window, recover).items():
        if not any(bad(s) for s in tail):
            continue
        series = _gpu_series(window, gpu)
        n = len(series)
        for inc in _incidents(_on(series, bad), n, n - recover, sustain, recover):
            if inc.ongoing:
                found.append((series[inc.start].time, gpu, series, inc))
    return found


def _idle(sample: GpuSample) -> bool:
    util, tensor = sample.utilization, sample.tensor_active
    if util is not None and util < GPU_IDLE_UTILIZATION:
        return True
    if tensor is None or tensor >= GPU_STARVED_TENSOR:
        return False
    if util is not None:
        return util < GPU_STARVED_UTILIZATION
    return sample.sm_active is not None and sample.sm_active < GPU_STARVED_SM


def _steps_between(window: Window, start: float, end: float) -> set[int]:
    """The steps the trainer reported between two times."""
    steps = set()
    for sample in reversed(window.trainer):
        if sample.time < start:
            break
        if sample.time <= end and sample.reachable and sample.step is not None:
            steps.add(sample.step)
    return steps


def detect_gpu_idle(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """GPU idle or starved while training runs: Warning. A GPU whose utilization is under 20%,
    or whose tensor pipe is under 0.05 while it is also under 50% utilized (or, without
    utilization, SM active under 0.2), for 4 samples and 3 minutes in a row after warm-up, while
    the trainer has not exited and either took at least 2 more steps meanwhile or has not
    reported a step at all.

    Tensor activity alone is no sign of starvation (an fp32 model never uses the tensor pipe at
    full utilization). Steps must advance because a GPU idle with the step frozen is a pause (a
    checkpoint write) or a stall, which the stall detector judges. Ends after 3 busy samples.
    One finding for all GPUs of the pod. Key: the GPU and time of the earliest ongoing idle
    stretch.
    """
    if context.trainer_exited:
        return []
    warm = _warm(context)

    def bad_sample(sample: GpuSample) -> bool:
        return sample.time >= warm and _idle(sample)

    ever = any(s.reachable and s.step is not None for s in reversed(window.trainer))
    idle = []
    steps: set[int] = set()
    for start, gpu, series, inc in _gpu_incidents(
        window, bad_sample, GPU_IDLE_SUSTAIN, GPU_IDLE_RECOVER
    ):
        end = series[inc.end].time
        if end - start < GPU_IDLE_MIN_SECONDS:
            continue
        seen = _steps_between(window, start, end)
        if ever and len(seen) < GPU_IDLE_MIN_STEPS_SEEN:
            continue  # a pause (a checkpoint write) or a stall: not starvation
        idle.append((start, gpu, series, inc))
        steps |= seen
    if not idle:
        return []
    start, gpu, series, inc = min(idle, key=lambda x: (x[0], x[1]))
    latest = series[inc.end]
    names = ",".join(sorted(g for _, g, *_ in idle))
    util = latest.utilization
    tensor = latest.tensor_active
    how = (f"utilization {util:.0f}%" if util is not None else "utilization unknown") + (
        f", tensor pipe {tensor:.2f}" if tensor is not None else ""
    )
    progress = (
        f"while the trainer went from step {min(steps)} to {max(steps)}"
        if steps
        else "and the trainer has not reported a training step"
    )
    return [
        Finding(
            kind=AnomalyKind.GPU_IDLE,
            severity=Severity.WARNING,
            message=(
                f"GPU(s) {names} idle or starved for {latest.time - start:.0f} s ({how} on GPU "
                f"{gpu}; idle means under {GPU_IDLE_UTILIZATION:.0f}%, or a tensor pipe under "
                f"{GPU_STARVED_TENSOR} while under {GPU_STARVED_UTILIZATION:.0f}% utilized) "
                f"{progress}. The GPUs wait for work: check data loading (workers, prefetch, "
                "storage throughput), host-side work in the step, and that every requested GPU "
                "is used (one process per GPU)."
            ),
            key=_key(
                AnomalyKind.GPU_IDLE,
                f"gpu-{gpu}:t{int(start)}",
                inc.start == 0 and _gpus_truncated(window),
            ),
            evidence={
                "gpus": names,
                "observed_utilization": util,
                "observed_tensor_active": tensor,
                "threshold_utilization": GPU_IDLE_UTILIZATION,
                "threshold_tensor_active": GPU_STARVED_TENSOR,
                "idle_seconds": round(latest.time - start, 3),
                "idle_samples": inc.end - inc.start + 1,
                "steps_seen": len(steps),
            },
            step=max(steps) if steps else None,
        )
    ]


def detect_fatal_xid(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """Fatal XID: Critical, one per GPU and XID value. DCGM_FI_DEV_XID_ERRORS holds the last
    XID and never resets, so what counts is a change: a GPU already at a fatal value when the
    watchdog starts counts once (and again after a restart of the watchdog it is the same key),
    a new fatal value is a new incident, and a fatal value that returns after another one is
    a new incident too. Non-fatal XIDs (13, 31, 43, ...) are the application's faults and are
    not findings. Key: GPU, UUID and value (plus the time it returned, for a recurrence).
    """
    findings = []
    for gpu, tail in _gpu_tails(window, 1).items():
        latest = tail[-1]
        if latest.xid not in FATAL_XIDS:
            continue
        series = _gpu_series(window, gpu)
        i = len(series) - 1
        while i > 0 and series[i - 1].xid == latest.xid:
            i -= 1
        onset = series[i]
        earlier = any(s.xid == latest.xid for s in series[:i])
        device = f"{gpu}:{latest.uuid}" if latest.uuid else gpu
        anchor = f"gpu-{device}:xid-{latest.xid}" + (f":t{int(onset.time)}" if earlier else "")
        findings.append(
            Finding(
                kind=AnomalyKind.FATAL_XID,
                severity=Severity.CRITICAL,
                message=(
                    f"GPU {gpu}{f' ({latest.uuid})' if latest.uuid else ''} reported XID "
                    f"{latest.xid}, a fatal error (first seen {latest.time - onset.time:.0f} s "
                    "ago): the GPU needs a reset or the node a reboot, and the job cannot go on "
                    "there. Cordon the node and resume from the last checkpoint elsewhere."
                ),
                key=f"{AnomalyKind.FATAL_XID.value}:{anchor}",
                evidence={
                    "gpu": gpu,
                    "uuid": latest.uuid,
                    "model": latest.model,
                    "xid": latest.xid,
                    "previous_xid": series[i - 1].xid if i > 0 else None,
                    "first_seen_time": onset.time,
                },
            )
        )
    return findings


def detect_memory_near_limit(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """Framebuffer near full: Warning. A GPU's used / (used + free) above max_memory_ratio
    (default 0.95) for 3 samples in a row; ends after 3 samples under.

    Near the limit, fragmentation or one longer batch ends the run with an out-of-memory error.
    Three samples so that one allocation peak is not an incident. One finding for all GPUs.
    Key: the GPU and time of the earliest ongoing stretch.
    """
    if context.trainer_exited:
        return []
    limit = thresholds.max_memory_ratio

    def bad_sample(sample: GpuSample) -> bool:
        ratio = sample.memory_ratio
        return ratio is not None and ratio > limit

    full = _gpu_incidents(window, bad_sample, MEMORY_SUSTAIN, MEMORY_RECOVER)
    if not full:
        return []
    start, gpu, series, inc = min(full, key=lambda x: (x[0], x[1]))
    latest = series[inc.end]
    ratio = latest.memory_ratio or 0.0
    names = ",".join(sorted(g for _, g, *_ in full))
    return [
        Finding(
            kind=AnomalyKind.MEMORY_NEAR_LIMIT,
            severity=Severity.WARNING,
            message=(
                f"GPU memory near full on GPU(s) {names}: {ratio:.1%} used on GPU {gpu} "
                f"({latest.fb_used_mib:.0f} MiB used, {latest.fb_free_mib:.0f} MiB free), above "
                f"the {limit:.0%} limit for {latest.time - start:.0f} s. An out-of-memory error "
                "is one longer batch away: lower the micro-batch, enable activation "
                "checkpointing, or set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True."
            ),
            key=_key(
                AnomalyKind.MEMORY_NEAR_LIMIT,
                f"gpu-{gpu}:t{int(start)}",
                inc.start == 0 and _gpus_truncated(window),
            ),
            evidence={
                "gpus": names,
                "observed": round(ratio, 4),
                "threshold": limit,
                "fb_used_mib": latest.fb_used_mib,
                "fb_free_mib": latest.fb_free_mib,
                "samples": inc.end - inc.start + 1,
            },
        )
    ]


def detect_checkpoint_stale(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """Checkpoint stale or missing: Warning, only when checkpointing is configured. The newest
    checkpoint older than max_checkpoint_age (default: twice the checkpoint interval, the
    smaller of checkpoint_every_seconds and checkpoint_every_steps x the step time), or none
    yet that long after the first training step.

    Twice the interval: one missed checkpoint can be a slow write, two is a broken save path
    (credentials, a full bucket) that a crash would turn into lost days. Judged at the latest
    reachable sample, and not after the trainer has exited. Key: the time of the newest
    checkpoint (`none` when there is none), so each missed checkpoint is one incident.
    """
    if context.trainer_exited or not (
        context.checkpoint_every_seconds or context.checkpoint_every_steps
    ):
        return []
    latest = next((x for x in reversed(window.trainer) if x.reachable and x.step is not None), None)
    first_step_time = next(
        (x.time for x in window.trainer if x.reachable and x.step is not None), None
    )
    if latest is None or first_step_time is None:
        return []
    allowed = _allowed_checkpoint_age(
        thresholds, context, _step_time(_step_runs(window, STALL_RECENT))
    )
    if allowed is None:
        return []
    since = latest.last_checkpoint_time
    if since is None:
        age = latest.time - first_step_time
        anchor = "none"
        what = f"No checkpoint has been written {age:.0f} s after the first training step"
    else:
        age = latest.time - since
        anchor = f"since-{int(since)}"
        what = (
            f"The newest checkpoint (step {latest.last_checkpoint_step}) was written {age:.0f} s "
            "ago"
        )
    if age <= allowed:
        return []
    return [
        Finding(
            kind=AnomalyKind.CHECKPOINT_STALE,
            severity=Severity.WARNING,
            message=(
                f"{what}, at step {latest.step}; allowed {allowed:.0f} s. A crash now loses all "
                "of that training: check the trainer's log for failed saves (credentials, a full "
                "bucket or disk) and that the checkpoint interval in the spec is what the trainer "
                "uses."
            ),
            key=f"{AnomalyKind.CHECKPOINT_STALE.value}:{anchor}",
            evidence={
                "observed_age_seconds": round(age, 3),
                "threshold_seconds": round(allowed, 3),
                "last_checkpoint_step": latest.last_checkpoint_step,
                "last_checkpoint_time": since,
                "checkpoint_every_seconds": context.checkpoint_every_seconds,
                "checkpoint_every_steps": context.checkpoint_every_steps,
            },
            step=latest.step,
        )
    ]


def detect_trainer_gone(
    window: Window, thresholds: WatchdogThresholds, context: Context
) -> list[Finding]:
    """Trainer gone: Critical. The trainer container exited with a code other than 0 (done) or 4
    (`proctor train`: preempted, checkpointed); or, with no exit known, its metrics endpoint
    answered before and has not for 5 scrapes and 2 minutes in a row.

    One unanswered scrape is a busy process or a slow network; five over two minutes is a
    process that is gone or wedged. An endpoint that never answered is not judged (a custom
    trainer may not serve metrics). Key: the exit code, or the time it stopped answering.
    """
    if context.trainer_exited:
        code = context.trainer_exit_code
        if code is None or code in NOT_FAILURES:
            return []
        why = SIGNALS.get(code) or EXIT_CODES.get(code) or "a failure"
        step = next(
            (s.step for s in reversed(window.trainer) if s.reachable and s.step is not None), None
        )
        return [
            Finding(
                kind=AnomalyKind.TRAINER_GONE,
                severity=Severity.CRITICAL,
                message=(
                    f"The trainer exited with code {code} ({why})"
                    f"{f' after step {step}' if step is not None else ''}. Read the log tail in "
                    "this bundle for the cause before retrying; a retry resumes from the last "
                    "checkpoint."
                ),
                key=f"{AnomalyKind.TRAINER_GONE.value}:exit-{code}",
                evidence={"exit_code": code, "reason": why, "last_step": step},
                step=step,
            )
        ]
    samples = window.trainer
    count, since = 0, math.nan
    answered = None
    for sample in reversed(samples):
        if sample.reachable:
            answered = sample
            break
        count, since = count + 1, sample.time
    if answered is None or count < UNREACHABLE_SAMPLES:
        return []
    silent = samples[-1].time - since
    if silent < UNREACHABLE_MIN_SECONDS:
        return []
    return [
        Finding(
            kind=AnomalyKind.TRAINER_GONE,
            severity=Severity.CRITICAL,
            message=(
                f"The trainer's metrics endpoint has not answered for {silent:.0f} s ({count} "
                f"scrapes in a row; it last answered at step {answered.step}) and no exit is "
                "known. The process may be wedged (deadlocked, swapping) or its endpoint "
                "dead: check the pod's state and the log tail."
            ),
            key=f"{AnomalyKind.TRAINER_GONE.value}:unreachable-since-{int(since)}",
            evidence={
                "unreachable_samples": count,
                "threshold_samples": UNREACHABLE_SAMPLES,
                "unreachable_seconds": round(silent, 3),
                "threshold_seconds": UNREACHABLE_MIN_SECONDS,
                "last_step": answered.step,
            },
            step=answered.step,
        )
    ]


ALL_DETECTORS: tuple[Detector, ...] = (
    detect_non_finite_loss,
    detect_loss_spike,
    detect_divergence,
    detect_plateau,
    detect_stall,
    detect_throughput_drop,
    detect_low_mfu,
    detect_gpu_idle,
    detect_fatal_xid,
    detect_memory_near_limit,
    detect_checkpoint_stale,
    detect_trainer_gone,
)


def detect_all(
    window: Window, thresholds: WatchdogThresholds, context: Context, plateau: bool = False
) -> list[Finding]:
    """Every detector's findings (the plateau detector only when asked). A detector that fails
    is logged and skipped: one bug must not blind the others over a days-long run."""
    findings: list[Finding] = []
    for detector in ALL_DETECTORS:
        if detector is detect_plateau and not plateau:
            continue
        try:
            findings.extend(detector(window, thresholds, context))
        except Exception:
            logger.exception("detector %s failed; the others still judge", detector.__name__)
    return findings
