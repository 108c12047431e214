"""The default trainer (`proctor train`): the user's setup under a budget, checkpointed, resumable.

It runs the same setup function the pyramid validated, reports through the telemetry library,
checkpoints every N steps and every T seconds, and on start resumes from the newest checkpoint
that loads, so a Job retry or a Kueue eviction continues where it stopped.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from proctor.pyramid.checks import on_device, to_device
from proctor.pyramid.contract import ContractError, SetupFactory, TrainingSetup
from proctor.pyramid.flops import device_peak, flops_per_step
from proctor.pyramid.steps import evaluating, train_step
from proctor.storage import StorageError, open_store
from proctor.train import distributed
from proctor.train.checkpoints import CheckpointStore
from proctor.train.distributed import Topology
from proctor.train.telemetry import Telemetry

logger = logging.getLogger(__name__)


class ExitCode(enum.IntEnum):
    """How `proctor train` ends; the operator maps them to the Experiment's outcome."""

    DONE = 0  # maxSteps reached
    CRASHED = 1  # the training code raised, or the loss became non-finite
    BAD_CONFIG = 2  # the setup or the arguments are wrong: retrying will not help
    BUDGET_EXHAUSTED = 3  # maxDuration reached before maxSteps (checkpointed; `proctor train`
    # exits 0 for it, since a spent budget is a planned end, and reports it as its outcome)
    PREEMPTED = 4  # SIGTERM (eviction, drain): checkpointed, resumes on the next start


@dataclass(frozen=True)
class TrainingPlan:
    """What to run and for how long; every field has the meaning of the Experiment's spec."""

    max_steps: int | None = None
    max_seconds: float | None = None
    checkpoint_uri: str | None = None
    checkpoint_every_steps: int | None = None
    checkpoint_every_seconds: float | None = 1800.0
    keep_last: int = 3
    eval_every_steps: int | None = None

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_seconds is None:
            raise ValueError("a training plan needs max_steps, max_seconds or both")
        for name in ("max_steps", "checkpoint_every_steps", "eval_every_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


@dataclass
class TrainingResult:
    exit_code: ExitCode
    step: int
    resumed_from: int | None
    message: str


def train(
    factory: SetupFactory, plan: TrainingPlan, telemetry: Telemetry, device: torch.device
) -> TrainingResult:
    """Run the plan to its end; never raises for problems in the user's code (see ExitCode).
    Under torchrun (WORLD_SIZE > 1) it trains data-parallel; see proctor.train.distributed."""
    topology = Topology.from_environment()
    device = distributed.start(topology, device)
    try:
        return _train(factory, plan, telemetry, device, topology)
    finally:
        distributed.finish(topology)


def _train(
    factory: SetupFactory,
    plan: TrainingPlan,
    telemetry: Telemetry,
    device: torch.device,
    topology: Topology,
) -> TrainingResult:
    try:
        setup, step, resumed = _start(factory, plan, device)
    except ContractError as exc:
        return TrainingResult(ExitCode.BAD_CONFIG, 0, None, str(exc))
    except StorageError as exc:
        if not exc.transient:
            logger.exception("the checkpoint store refused")
            return TrainingResult(ExitCode.BAD_CONFIG, 0, None, f"StorageError: {exc}")
        # Down longer than the checkpoints' patience: crashed, so the Job retries, not failed.
        logger.exception("the checkpoint store stayed unreachable")
        return TrainingResult(ExitCode.CRASHED, 0, None, f"StorageError: {exc}")
    except Exception as exc:  # the setup or the checkpoint store cannot even start
        logger.exception("training could not start")
        return TrainingResult(ExitCode.BAD_CONFIG, 0, None, f"{type(exc).__name__}: {exc}")
    store = (
        CheckpointStore(open_store(plan.checkpoint_uri), plan.keep_last)
        if plan.checkpoint_uri and topology.writes_checkpoints
        else None
    )
    stepping = distributed.for_stepping(setup, topology, device)
    stop = _StopRequest.install()
    started = last_checkpoint = time.monotonic()
    batches = on_device(setup.batches(), device)
    for _ in range(step):  # the batches the interrupted run already trained on, in order
        next(batches)
    batches = _measure_flops(setup, telemetry, device, batches)
    last_loss: torch.Tensor | None = None

    def finish(code: ExitCode, message: str, save: bool = True) -> TrainingResult:
        if save:
            _checkpoint(store, setup, step, telemetry, last_loss)
        distributed.barrier(topology)  # no rank exits while rank 0 is still saving
        return TrainingResult(code, step, resumed, message)

    try:
        while plan.max_steps is None or step < plan.max_steps:
            # Checked by every rank together, so all stop at the same step. Distributed, that is
            # an all-reduce and a device sync: every STOP_CHECK_EVERY steps, not on every step.
            out_of_time = plan.max_seconds is not None and (
                time.monotonic() - started >= plan.max_seconds
            )
            check_now = not topology.distributed or step % STOP_CHECK_EVERY == 0
            if check_now and distributed.any_rank(out_of_time or stop.requested, topology, device):
                if stop.requested:
                    return finish(ExitCode.PREEMPTED, f"SIGTERM at step {step}: checkpointed")
                return finish(ExitCode.BUDGET_EXHAUSTED, f"maxDuration reached at step {step}")
            waited = time.perf_counter()
            batch = next(batches)
            waited = time.perf_counter() - waited
            last_loss = train_step(stepping, batch)
            step += 1
            telemetry.step(
                step,
                last_loss,
                samples=setup.samples_in(batch),
                tokens=setup.tokens_per_batch or 0,
                learning_rate=setup.optimizer.param_groups[0].get("lr"),
                data_wait_seconds=waited,
            )
            record = telemetry.last
            if record.get("step") == step and not _finite(record.get("loss")):
                return finish(
                    ExitCode.CRASHED, f"the loss became {record['loss']} by step {step}", save=False
                )
            due_by_steps = plan.checkpoint_every_steps and step % plan.checkpoint_every_steps == 0
            due_by_time = (
                plan.checkpoint_every_seconds is not None
                and time.monotonic() - last_checkpoint >= plan.checkpoint_every_seconds
            )
            if store is not None and (due_by_steps or due_by_time):
                _checkpoint(store, setup, step, telemetry, last_loss)
                last_checkpoint = time.monotonic()
            if plan.eval_every_steps and step % plan.eval_every_steps == 0:
                _evaluate(setup, step, telemetry, device)
        result = finish(ExitCode.DONE, f"maxSteps {plan.max_steps} reached")
        _evaluate(setup, step, telemetry, device)
        return result
    except ContractError as exc:
        return TrainingResult(ExitCode.BAD_CONFIG, step, resumed, str(exc))
    except NonFiniteLossError as exc:
        return TrainingResult(ExitCode.CRASHED, step, resumed, str(exc))
    except Exception as exc:
        logger.exception("training crashed at step %d", step)
        return TrainingResult(ExitCode.CRASHED, step, resumed, f"{type(exc).__name__}: {exc}")
    finally:
        stop.uninstall()
        telemetry.flush()


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


class NonFiniteLossError(RuntimeError):
    """The loss is NaN or infinite: a checkpoint of these weights would crash-loop every retry."""


class _StopRequest:
    """SIGTERM (a Kueue eviction, a node drain) asks for a checkpoint at the next step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    @classmethod
    def install(cls) -> _StopRequest:
        request = cls()
        if threading.current_thread() is threading.main_thread():
            request._previous = signal.signal(signal.SIGTERM, request._on_signal)
        return request

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _measure_flops(
    setup: TrainingSetup, telemetry: Telemetry, device: torch.device, batches: Iterator[Any]
) -> Iterator[Any]:
    """FLOPs per step, counted once on the next batch (which is then trained on as usual, so the
    data order is untouched), and the device's peak, for the MFU series."""
    peak = device_peak(device, telemetry.peak_flops)
    if peak is None or telemetry.flops_per_step is not None:
        return batches
    first = next(batches)
    try:
        telemetry.flops_per_step = flops_per_step(setup, first)
        telemetry.peak_flops = peak.flops
    except Exception:  # MFU is a nicety; never fail training over it
        logger.warning("could not count FLOPs per step; MFU will not be reported", exc_info=True)
    return itertools.chain([first], batches)


TRAINER_STATE = "proctor-trainer.pt"
STOP_CHECK_EVERY = 10  # steps between the ranks' agreement on stopping (budget, SIGTERM)


def _start(
    factory: SetupFactory, plan: TrainingPlan, device: torch.device
) -> tuple[TrainingSetup, int, int | None]:
    """A setup, resumed from the newest checkpoint that loads (each try on a fresh setup, so a
    checkpoint that fails half-way leaves nothing behind), with the random state it was saved
    with, so the resumed run continues the interrupted one step for step."""
    if plan.checkpoint_uri is not None:
        store = CheckpointStore(open_store(plan.checkpoint_uri), plan.keep_last)
        for checkpoint in store.complete():
            setup = factory()
            setup.model.to(device)
            try:
                with tempfile.TemporaryDirectory(prefix="proctor-resume-") as directory:
                    store.download(checkpoint, Path(directory))
                    setup.load(Path(directory))
                    state_file = Path(directory) / TRAINER_STATE
                    state = (
                        torch.load(state_file, weights_only=False) if state_file.exists() else {}
                    )
            except Exception as exc:
                logger.warning(
                    "checkpoint %s cannot be loaded (%s: %s); trying an older one",
                    checkpoint.uri,
                    type(exc).__name__,
                    exc,
                )
                continue
            if "torch_rng" in state:
                torch.set_rng_state(state["torch_rng"])
            if "cuda_rng" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            logger.info("resumed from %s (step %d)", checkpoint.uri, checkpoint.step)
            return setup, checkpoint.step, checkpoint.step
    setup = factory()
    setup.model.to(device)
    return setup, 0, None


def _checkpoint(
    store: CheckpointStore | None,
    setup: TrainingSetup,
    step: int,
    telemetry: Telemetry,
    loss: torch.Tensor | None = None,
) -> None:
    if store is None or step == 0:
        return
    if loss is not None and not math.isfinite(float(loss)):  # one sync, once per checkpoint
        raise NonFiniteLossError(f"the loss is {float(loss)} at step {step}: not checkpointed")
    if any(c.step == step for c in store.complete()):
        return  # already saved (a resumed run that had finished): never replace a good one
    state = {"step": step, "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()

    def write(directory: Path) -> None:
        setup.save(directory)
        torch.save(state, directory / TRAINER_STATE)

    checkpoint = store.save(step, write)
    telemetry.checkpoint(step, checkpoint.uri)


def _evaluate(setup: TrainingSetup, step: int, telemetry: Telemetry, device: torch.device) -> None:
    if setup.eval_fn is None or setup.eval_data is None:
        return
    data = (to_device(batch, device) for batch in setup.eval_data)
    with evaluating(setup.model), torch.no_grad():
        telemetry.evaluation(step, setup.eval_fn(setup.model, data))
