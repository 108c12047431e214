"""The watchdog's detectors on synthetic runs (seeded, no numpy, no torch): healthy noisy runs raise
nothing, every injected anomaly is found with its kind, severity and one stable key, a recovery
then a recurrence is a new incident, warm-up silences throughput, MFU and GPU findings."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from proctor.api.v1alpha1 import AnomalyKind
from proctor.api.v1alpha1.experiment import Severity, WatchdogThresholds
from proctor.watchdog import detectors
from proctor.watchdog.detectors import ALL_DETECTORS, detect_all, detect_plateau
from proctor.watchdog.observations import (
    Context,
    Finding,
    GpuSample,
    LossPoint,
    TrainerSample,
    Window,
)

START = 1_800_000_000.0
WARMUP = 600.0
THRESHOLDS = WatchdogThresholds(min_mfu_ratio=0.3)
DEFAULT_DETECTORS = [d for d in ALL_DETECTORS if d is not detect_plateau]


@dataclass
class Sim:
    """A training run scraped every `interval` seconds. Steps take ~1 s (5% noise), the trainer
    logs every 10 steps, checkpoints every `checkpoint_every` seconds with a 30-90 s pause (GPUs
    idle meanwhile), warms up at half speed; loss a*exp(-t/tau)+floor with 7% multiplicative
    noise and rare outliers, throughput with 5% noise and rare single slow windows, GPUs busy at
    90-99%. The knobs below inject anomalies; set them back to recover."""

    seed: int = 0
    interval: float = 30.0
    gpus: int = 2
    checkpoint_every: float | None = 600.0
    warmup: float = WARMUP  # what the watchdog is told
    window: Window = field(default_factory=Window)
    # knobs
    loss_scale: float = 1.0
    loss_drift: float = 1.0  # loss_scale is multiplied by it at every scrape
    loss_value: float | None = None  # e.g. nan
    speed: float = 1.0
    mfu_scale: float = 1.0
    frozen: bool = False
    utilization: float | None = None
    tensor_active: float | None = None
    xid: dict[int, int] = field(default_factory=dict)
    memory: dict[int, float] = field(default_factory=dict)
    reachable: bool = True
    exit_code: int | None = None  # set: the trainer exited with it
    checkpointing: bool = True
    # state
    now: float = START
    trainer_time: float = START + 30.0
    step: int = 0
    pending: tuple[float, float] | None = None
    pause: tuple[float, float] = (0.0, 0.0)
    last_checkpoint: float = START + 30.0
    checkpoint: tuple[float, int] | None = None
    sample: dict[str, float] = field(default_factory=dict)
    context: Context | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _plan(self) -> tuple[float, float]:
        rng = self.rng
        speed = self.speed * (0.5 if self.trainer_time < START + WARMUP else 1.0)
        duration = 10 / speed * math.exp(rng.gauss(0, 0.05))
        if rng.random() < 0.01:
            duration *= rng.uniform(2, 3)
        pause = 0.0
        every = self.checkpoint_every
        if every and self.checkpointing and self.trainer_time - self.last_checkpoint >= every:
            pause = rng.uniform(30, 90)
            self.pause = (self.trainer_time, self.trainer_time + pause)
        return duration, pause

    def _advance(self) -> None:
        while not self.frozen and self.exit_code is None:
            if self.pending is None:
                self.pending = self._plan()
            duration, pause = self.pending
            if self.trainer_time + duration + pause > self.now:
                return
            self.pending = None
            if pause:
                self.last_checkpoint = self.trainer_time + pause
                self.checkpoint = (self.last_checkpoint, self.step)
            self.trainer_time += duration + pause
            self.step += 10
            loss = (6 * math.exp(-self.step / 5000) + 2) * math.exp(self.rng.gauss(0, 0.07))
            if self.rng.random() < 0.003:
                loss *= self.rng.uniform(1.3, 2.0)
            loss = self.loss_value if self.loss_value is not None else loss * self.loss_scale
            elapsed = duration + pause
            self.sample = {
                "loss": loss,
                "samples_per_second": 2560 / elapsed,
                "mfu": 0.42 * 10 / elapsed * self.mfu_scale,
                "step_seconds": elapsed / 10,
            }
            self.window.add_loss(LossPoint(self.trainer_time, self.step, loss))

    def scrape(self) -> Context:
        self.now += self.interval
        self.loss_scale *= self.loss_drift
        self._advance()
        rng = self.rng
        if not self.reachable or self.step == 0 or self.exit_code is not None:
            self.window.add_trainer(TrainerSample(time=self.now, reachable=False))
        else:
            checkpoint = self.checkpoint
            self.window.add_trainer(
                TrainerSample(
                    time=self.now,
                    step=self.step,
                    loss=self.sample["loss"],
                    samples_per_second=self.sample["samples_per_second"],
                    mfu=self.sample["mfu"],
                    step_seconds=self.sample["step_seconds"],
                    last_checkpoint_time=checkpoint[0] if checkpoint else None,
                    last_checkpoint_step=checkpoint[1] if checkpoint else None,
                )
            )
        paused = self.pause[0] <= self.now <= self.pause[1]
        samples = []
        for g in range(self.gpus):
            if self.utilization is not None:
                util, tensor = self.utilization, self.tensor_active
            elif paused or self.exit_code is not None:
                util, tensor = rng.uniform(0, 5), 0.0
            elif self.now < START + WARMUP:
                util, tensor = rng.uniform(30, 90), 0.2
            else:
                util, tensor = rng.uniform(90, 99), rng.uniform(0.45, 0.55)
            used = self.memory.get(g, 0.85 + 0.01 * g) + rng.uniform(-0.003, 0.003)
            samples.append(
                GpuSample(
                    time=self.now,
                    gpu=str(g),
                    uuid=f"GPU-{g}",
                    utilization=round(util),
                    tensor_active=tensor,
                    fb_used_mib=80000 * used,
                    fb_free_mib=80000 * (1 - used),
                    xid=self.xid.get(g, 0),
                )
            )
        self.window.add_gpus(samples)
        return Context(
            now=self.now,
            started=START,
            warmup_seconds=self.warmup,
            checkpoint_every_seconds=self.checkpoint_every,
            trainer_exited=self.exit_code is not None,
            trainer_exit_code=self.exit_code,
        )

    def check(self, thresholds: WatchdogThresholds = THRESHOLDS) -> list[Finding]:
        """One scrape, then every detector (called directly, so a failing one fails the test)."""
        context = self.scrape()
        self.context = context
        return [f for d in DEFAULT_DETECTORS for f in d(self.window, thresholds, context)]

    def run(self, scrapes: int) -> list[list[Finding]]:
        return [self.check() for _ in range(scrapes)]


def _keys(checks: list[list[Finding]], kind: AnomalyKind) -> list[str]:
    return [f.key for findings in checks for f in findings if f.kind is kind]


def _healthy(seed: int = 0, scrapes: int = 150, **knobs: object) -> Sim:
    sim = Sim(seed=seed, **knobs)  # type: ignore[arg-type]
    for findings in sim.run(scrapes):
        assert findings == [], findings
    return sim


def _until(sim: Sim, kind: AnomalyKind, limit: int = 60) -> Finding:
    for _ in range(limit):
        found = [f for f in sim.check() if f.kind is kind]
        if found:
            return found[0]
    raise AssertionError(f"no {kind.value} within {limit} scrapes")


def _absent(sim: Sim, kind: AnomalyKind, scrapes: int) -> None:
    for _ in range(scrapes):
        assert not [f for f in sim.check() if f.kind is kind]


# ---- healthy runs ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_healthy_noisy_run_raises_nothing(seed):
    """Four hours of scrapes with checkpoint pauses, slow windows, loss outliers and a warm-up:
    no detector says anything (each is called directly: a crash would fail here too)."""
    sim = Sim(seed=seed)
    for findings in sim.run(480):
        assert findings == [], findings


def test_a_healthy_run_scraped_densely_and_with_timeouts_raises_nothing():
    sim = Sim(seed=7, interval=15.0, gpus=4)
    for i in range(600):
        sim.reachable = i % 97 != 0  # a scrape that times out now and then
        assert sim.check() == []
    assert detect_all(sim.window, THRESHOLDS, sim.context) == []


# ---- each anomaly: found, with its kind, severity and one stable key -----------------------


def _nan(sim: Sim) -> None:
    sim.loss_value = math.nan


def _spike(sim: Sim) -> None:
    sim.loss_scale = 3.0


def _diverge(sim: Sim) -> None:
    sim.loss_drift = 1.06


def _stall(sim: Sim) -> None:
    sim.frozen = True
    sim.utilization, sim.tensor_active = 100.0, 0.0  # spinning in a collective


def _slow(sim: Sim) -> None:
    sim.speed = 0.3


def _low_mfu(sim: Sim) -> None:
    sim.mfu_scale = 0.6


def _starved(sim: Sim) -> None:
    sim.speed = 0.8
    sim.utilization, sim.tensor_active = 8.0, 0.02


def _xid(sim: Sim) -> None:
    sim.xid = {1: 79}


def _memory(sim: Sim) -> None:
    sim.memory = {0: 0.97}


def _no_checkpoints(sim: Sim) -> None:
    sim.checkpointing = False


def _exit(sim: Sim) -> None:
    sim.exit_code = 1


def _unreachable(sim: Sim) -> None:
    sim.reachable = False


ANOMALIES: list[tuple[AnomalyKind, Severity, Callable[[Sim], None]]] = [
    (AnomalyKind.NON_FINITE_LOSS, Severity.CRITICAL, _nan),
    (AnomalyKind.LOSS_SPIKE, Severity.WARNING, _spike),
    (AnomalyKind.DIVERGENCE, Severity.CRITICAL, _diverge),
    (AnomalyKind.STALL, Severity.CRITICAL, _stall),
    (AnomalyKind.THROUGHPUT_DROP, Severity.WARNING, _slow),
    (AnomalyKind.LOW_MFU, Severity.WARNING, _low_mfu),
    (AnomalyKind.GPU_IDLE, Severity.WARNING, _starved),
    (AnomalyKind.FATAL_XID, Severity.CRITICAL, _xid),
    (AnomalyKind.MEMORY_NEAR_LIMIT, Severity.WARNING, _memory),
    (AnomalyKind.CHECKPOINT_STALE, Severity.WARNING, _no_checkpoints),
    (AnomalyKind.TRAINER_GONE, Severity.CRITICAL, _exit),
    (AnomalyKind.TRAINER_GONE, Severity.CRITICAL, _unreachable),
]


@pytest.mark.parametrize(
    ("kind", "severity", "inject"),
    ANOMALIES,
    ids=[f"{k.value}-{i.__name__}" for k, _, i in ANOMALIES],
)
def test_an_injected_anomaly_is_found_once_with_a_stable_key(kind, severity, inject):
    sim = _healthy(seed=11)
    inject(sim)
    finding = None
    for _ in range(80):
        found = [f for f in sim.check() if f.kind is kind]
        if found:
            finding = found[0]
            break
    assert finding is not None, f"{kind.value} not found within 80 scrapes"
    assert finding.severity is severity
    assert finding.key.startswith(f"{kind.value}:")
    assert finding.evidence, "a finding shows the numbers it judged"
    assert any(ch.isdigit() for ch in finding.message), finding.message
    # Asking again about the same window gives the same finding.
    again = [f for f in detect_all(sim.window, THRESHOLDS, sim.context) if f.kind is kind]
    assert again == [finding]
    # The same incident, scraped on, keeps its key (a spike is over once it scrolls past).
    later = []
    for _ in range(8):
        later += [f.key for f in sim.check() if f.kind is kind]
    if kind is not AnomalyKind.LOSS_SPIKE:
        assert later
    assert set(later) <= {finding.key}


def test_the_non_finite_key_is_the_first_bad_step():
    sim = _healthy()
    _nan(sim)
    finding = _until(sim, AnomalyKind.NON_FINITE_LOSS)
    first_bad = next(p.step for p in sim.window.losses if math.isnan(p.loss))
    assert finding.key == f"NonFiniteLoss:step-{first_bad}"
    assert finding.step == first_bad


def test_a_non_finite_loss_between_two_checks_is_still_caught():
    sim = _healthy()
    step = sim.step
    for i, loss in enumerate([math.inf, 2.5, 2.5, 2.5], start=1):
        sim.window.add_loss(LossPoint(sim.now + i, step + i, loss))
    context = sim.scrape()
    findings = detectors.detect_non_finite_loss(sim.window, THRESHOLDS, context)
    assert [f.key for f in findings] == [f"NonFiniteLoss:step-{step + 1}"]
    assert findings[0].evidence["ongoing"] == "no"


# ---- recovery, then recurrence: a new key ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "inject", "recover", "scrapes_to_recover"),
    [
        (AnomalyKind.LOSS_SPIKE, _spike, lambda s: setattr(s, "loss_scale", 1.0), 40),
        (AnomalyKind.NON_FINITE_LOSS, _nan, lambda s: setattr(s, "loss_value", None), 10),
        (AnomalyKind.STALL, _stall, lambda s: _restore(s, frozen=False), 10),
        (AnomalyKind.THROUGHPUT_DROP, _slow, lambda s: setattr(s, "speed", 1.0), 40),
        (AnomalyKind.LOW_MFU, _low_mfu, lambda s: setattr(s, "mfu_scale", 1.0), 10),
        (AnomalyKind.GPU_IDLE, _starved, lambda s: _restore(s, speed=1.0), 10),
        (AnomalyKind.MEMORY_NEAR_LIMIT, _memory, lambda s: setattr(s, "memory", {}), 10),
        (AnomalyKind.TRAINER_GONE, _unreachable, lambda s: setattr(s, "reachable", True), 10),
        (
            AnomalyKind.CHECKPOINT_STALE,
            _no_checkpoints,
            lambda s: _restore(s, checkpointing=True),
            40,
        ),
    ],
    ids=lambda x: x.value if isinstance(x, AnomalyKind) else None,
)
def test_a_recovery_then_a_recurrence_is_a_new_incident(kind, inject, recover, scrapes_to_recover):
    sim = _healthy(seed=5)
    inject(sim)
    first = _until(sim, kind)
    recover(sim)
    for _ in range(scrapes_to_recover):
        sim.check()
    _absent(sim, kind, 3)
    inject(sim)
    second = _until(sim, kind, limit=100)
    assert second.key != first.key


def _restore(sim: Sim, **knobs: object) -> None:
    for name, value in knobs.items():
        setattr(sim, name, value)
    sim.utilization = sim.tensor_active = None


def test_a_fatal_xid_already_there_at_start_counts_once_and_a_change_is_new():
    sim = Sim(seed=3, xid={0: 79, 1: 13})  # 13: the application's own fault, not a finding
    checks = sim.run(40)
    assert set(_keys(checks, AnomalyKind.FATAL_XID)) == {"FatalXID:gpu-0:GPU-0:xid-79"}
    assert all(f.kind is AnomalyKind.FATAL_XID for c in checks for f in c)
    sim.xid = {0: 48, 1: 13}
    assert _until(sim, AnomalyKind.FATAL_XID).key == "FatalXID:gpu-0:GPU-0:xid-48"
    sim.xid = {0: 79, 1: 13}  # back to 79 after another XID: a new incident
    back = _until(sim, AnomalyKind.FATAL_XID).key
    assert back.startswith("FatalXID:gpu-0:GPU-0:xid-79:t")
    assert set(_keys(sim.run(5), AnomalyKind.FATAL_XID)) == {back}


def test_a_restarted_watchdog_sees_an_old_fatal_xid_under_the_same_key():
    sim = Sim(seed=3, xid={0: 79})
    key = _until(sim, AnomalyKind.FATAL_XID).key
    fresh = Sim(seed=4, xid={0: 79})
    assert _until(fresh, AnomalyKind.FATAL_XID).key == key


# ---- warm-up, thresholds, defaults -------------------------------------------------------------


@pytest.mark.parametrize("warmup", [1800.0, 0.0])
def test_warm_up_silences_throughput_mfu_and_gpu_findings(warmup):
    """Throughput, MFU and GPUs collapse 5 minutes in: inside a 30-minute warm-up nothing is said;
    told there is no warm-up, the watchdog reports all three."""
    sim = Sim(seed=2, warmup=warmup)
    sim.run(10)  # at half speed: the trainer's own warm-up
    sim.speed, sim.mfu_scale, sim.utilization, sim.tensor_active = 0.3, 0.3, 5.0, 0.0
    kinds = {f.kind for c in sim.run(40) for f in c}  # up to 25 minutes in
    quiet = {AnomalyKind.THROUGHPUT_DROP, AnomalyKind.LOW_MFU, AnomalyKind.GPU_IDLE}
    if warmup:
        assert not kinds & quiet
    else:
        assert quiet <= kinds


def test_plateau_is_off_by_default_and_found_when_asked():
    window = Window()
    rng = random.Random(4)
    for i in range(600):
        window.add_loss(LossPoint(START + 60 * i, 10 * i, 2.0 * math.exp(rng.gauss(0, 0.05))))
    context = Context(now=START + 36_000, started=START, warmup_seconds=WARMUP)
    assert detect_all(window, THRESHOLDS, context) == []
    plateau = detect_all(window, THRESHOLDS, context, plateau=True)
    assert [(f.kind, f.severity) for f in plateau] == [(AnomalyKind.PLATEAU, Severity.WARNING)]


def test_no_mfu_floor_no_mfu_finding():
    sim = _healthy(seed=6)
    sim.mfu_scale = 0.1
    for _ in range(20):
        context = sim.scrape()
        assert not detectors.detect_low_mfu(sim.window, WatchdogThresholds(), context)


def test_a_flat_loss_with_tiny_noise_does_not_spike_and_one_outlier_is_not_a_spike():
    window = Window()
    rng = random.Random(0)
    for i in range(300):
        window.add_loss(LossPoint(START + i, i * 10, 2.302585 + rng.gauss(0, 1e-6)))
    window.add_loss(LossPoint(START + 300, 3000, 2.31))  # far above a MAD of 1e-6, but +0.3%
    window.add_loss(LossPoint(START + 301, 3010, 2.31))
    context = Context(now=START + 302, started=START, warmup_seconds=0)
    assert detectors.detect_loss_spike(window, THRESHOLDS, context) == []
    window.add_loss(LossPoint(START + 302, 3020, 9.0))  # one batch's outlier
    window.add_loss(LossPoint(START + 303, 3030, 2.302585))
    assert detectors.detect_loss_spike(window, THRESHOLDS, context) == []


def test_a_stall_at_a_checkpoint_gets_an_allowance():
    def stalled_for(steps_every: int | None, frozen_scrapes: int) -> list[Finding]:
        window = Window()
        for i in range(100):
            window.add_trainer(
                TrainerSample(time=START + 30 * i, step=1000 + 30 * i, step_seconds=1.0)
            )
        last = 1000 + 30 * 99
        for j in range(frozen_scrapes):
            window.add_trainer(
                TrainerSample(time=START + 30 * (100 + j), step=last, step_seconds=1.0)
            )
        context = Context(
            now=START + 30 * (99 + frozen_scrapes),
            started=START,
            warmup_seconds=0,
            checkpoint_every_steps=steps_every,
        )
        return detectors.detect_stall(window, THRESHOLDS, context)

    assert stalled_for(None, 10) == [], "within 5 minutes"
    assert [f.key for f in stalled_for(None, 12)] == ["Stall:step-3970"]
    assert stalled_for(3970, 12) == [], "at a checkpoint step: it may be writing one"
    assert [f.kind for f in stalled_for(3970, 40)] == [AnomalyKind.STALL]


@pytest.mark.parametrize(
    ("code", "found"), [(0, False), (4, False), (None, False), (1, True), (137, True)]
)
def test_only_a_failed_exit_is_the_trainer_gone(code, found):
    window = Window()
    window.add_trainer(TrainerSample(time=START, step=10))
    context = Context(
        now=START + 30, started=START, warmup_seconds=0, trainer_exited=True, trainer_exit_code=code
    )
    findings = detectors.detect_trainer_gone(window, THRESHOLDS, context)
    assert bool(findings) is found
    if found:
        assert findings[0].key == f"TrainerGone:exit-{code}"
        assert str(code) in findings[0].message


def test_an_endpoint_that_never_answered_is_not_the_trainer_gone():
    sim = Sim(seed=1, reachable=False)
    assert not _keys(sim.run(30), AnomalyKind.TRAINER_GONE)


def test_a_missing_checkpoint_is_stale_and_no_checkpointing_is_not_judged():
    sim = Sim(seed=8, checkpointing=False)
    finding = _until(sim, AnomalyKind.CHECKPOINT_STALE, limit=80)
    assert finding.key == "CheckpointStale:none"
    unconfigured = Sim(seed=8, checkpoint_every=None)
    assert not _keys(unconfigured.run(80), AnomalyKind.CHECKPOINT_STALE)


def test_an_fp32_model_busy_without_the_tensor_pipe_is_not_idle_but_a_starved_one_is():
    busy = GpuSample(time=START, gpu="0", utilization=97, tensor_active=0.0)
    starved = GpuSample(time=START, gpu="0", utilization=23, tensor_active=0.04)  # DCGM fixture
    assert not detectors._idle(busy)
    assert detectors._idle(starved)


def test_an_incident_longer_than_the_window_keeps_one_key():
    sim = Sim(seed=9, window=Window(max_points=40), memory={0: 0.97})
    keys = _keys(sim.run(250), AnomalyKind.MEMORY_NEAR_LIMIT)
    assert set(keys) == {keys[0], "MemoryNearLimit:since-window-start"}
    assert keys[-50:] == ["MemoryNearLimit:since-window-start"] * 50


@pytest.mark.parametrize(
    ("xid", "fatal"),
    [(x, True) for x in (48, 62, 64, 74, 79, 95, 119, 120, 140)]
    + [(x, False) for x in (13, 31, 43)],
)
def test_the_documented_fatal_xids_are_found_and_application_xids_are_not(xid, fatal):
    window = Window()
    for i in range(6):  # the value changes from 0 to the XID at the fourth sample
        window.add_gpus([GpuSample(time=START + 15 * i, gpu="0", xid=0 if i < 3 else xid)])
    context = Context(now=START + 90, started=START, warmup_seconds=0)
    findings = detectors.detect_fatal_xid(window, THRESHOLDS, context)
    assert [f.kind for f in findings] == ([AnomalyKind.FATAL_XID] if fatal else [])


def test_without_a_metrics_file_the_endpoint_loss_is_judged():
    window = Window()
    for i in range(40):
        loss = math.nan if i >= 30 else 2.0
        window.add_trainer(TrainerSample(time=START + 30 * i, step=10 * (i + 1), loss=loss))
        window.add_trainer(TrainerSample(time=START + 30 * i + 15, step=10 * (i + 1), loss=loss))
    context = Context(now=START + 1200, started=START, warmup_seconds=0)
    findings = detectors.detect_non_finite_loss(window, THRESHOLDS, context)
    assert [f.key for f in findings] == ["NonFiniteLoss:step-310"]


def test_an_unanswering_endpoint_is_not_a_stall():
    sim = _healthy(seed=12)
    _unreachable(sim)
    checks = sim.run(40)
    assert not _keys(checks, AnomalyKind.STALL)
    assert len(set(_keys(checks, AnomalyKind.TRAINER_GONE))) == 1
