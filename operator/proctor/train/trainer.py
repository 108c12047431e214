"""The default trainer (`proctor train`): the user's setup under a budget, checkpointed, resumable.

It runs the same setup function the pyramid validated, reports through the telemetry library,
checkpoints every N steps and every T seconds, and on start resumes from the newest checkpoint
that loads, so a Job retry or a Kueue eviction continues where it stopped.
"""

from __future__ import annotations

import enum
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from proctor.pyramid.checks import on_device, to_device
from proctor.pyramid.contract import ContractError, SetupFactory, TrainingSetup
from proctor.pyramid.steps import evaluating, train_step
from proctor.storage import open_store
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
    BUDGET_EXHAUSTED = 3  # maxDuration reached before maxSteps (a checkpoint was written)


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
    store = (
        CheckpointStore(open_store(plan.checkpoint_uri), plan.keep_last)
        if plan.checkpoint_uri and topology.writes_checkpoints
        else None
    )
    stepping = distributed.for_stepping(setup, topology, device)
    started = last_checkpoint = time.monotonic()
    batches = on_device(setup.batches(), device)
    try:
        while plan.max_steps is None or step < plan.max_steps:
            # Checked by every rank together, so all stop at the same step (one small
            # all-reduce per step, and only when a duration budget is set).
            out_of_time = plan.max_seconds is not None and distributed.any_rank(
                time.monotonic() - started >= plan.max_seconds, topology
            )
            if out_of_time:
                _checkpoint(store, setup, step, telemetry)
                return TrainingResult(
                    ExitCode.BUDGET_EXHAUSTED, step, resumed, f"maxDuration reached at step {step}"
                )
            batch = next(batches)
            loss = train_step(stepping, batch)
            step += 1
            telemetry.step(step, loss, samples=setup.samples_in(batch))
            record = telemetry.last
            if record.get("step") == step and not math.isfinite(record.get("loss") or 0.0):
                return TrainingResult(
                    ExitCode.CRASHED,
                    step,
                    resumed,
                    f"the loss became {record['loss']} by step {step}",
                )
            due_by_steps = plan.checkpoint_every_steps and step % plan.checkpoint_every_steps == 0
            due_by_time = (
                plan.checkpoint_every_seconds is not None
                and time.monotonic() - last_checkpoint >= plan.checkpoint_every_seconds
            )
            if store is not None and (due_by_steps or due_by_time):
                _checkpoint(store, setup, step, telemetry)
                last_checkpoint = time.monotonic()
            if plan.eval_every_steps and step % plan.eval_every_steps == 0:
                _evaluate(setup, step, telemetry, device)
        _checkpoint(store, setup, step, telemetry)
        _evaluate(setup, step, telemetry, device)
        return TrainingResult(ExitCode.DONE, step, resumed, f"maxSteps {plan.max_steps} reached")
    except ContractError as exc:
        return TrainingResult(ExitCode.BAD_CONFIG, step, resumed, str(exc))
    except Exception as exc:
        logger.exception("training crashed at step %d", step)
        return TrainingResult(ExitCode.CRASHED, step, resumed, f"{type(exc).__name__}: {exc}")
    finally:
        telemetry.flush()


def _start(
    factory: SetupFactory, plan: TrainingPlan, device: torch.device
) -> tuple[TrainingSetup, int, int | None]:
    """A setup, resumed from the newest checkpoint that loads (each try on a fresh setup, so a
    checkpoint that fails half-way leaves nothing behind)."""
    if plan.checkpoint_uri is not None:
        store = CheckpointStore(open_store(plan.checkpoint_uri), plan.keep_last)
        for checkpoint in store.complete():
            setup = factory()
            setup.model.to(device)
            try:
                with tempfile.TemporaryDirectory(prefix="proctor-resume-") as directory:
                    store.download(checkpoint, Path(directory))
                    setup.load(Path(directory))
            except Exception as exc:
                logger.warning(
                    "checkpoint %s cannot be loaded (%s: %s); trying an older one",
                    checkpoint.uri,
                    type(exc).__name__,
                    exc,
                )
                continue
            logger.info("resumed from %s (step %d)", checkpoint.uri, checkpoint.step)
            return setup, checkpoint.step, checkpoint.step
    setup = factory()
    setup.model.to(device)
    return setup, 0, None


def _checkpoint(
    store: CheckpointStore | None, setup: TrainingSetup, step: int, telemetry: Telemetry
) -> None:
    if store is None or step == 0:
        return
    checkpoint = store.save(step, setup.save)
    telemetry.checkpoint(step, checkpoint.uri)


def _evaluate(setup: TrainingSetup, step: int, telemetry: Telemetry, device: torch.device) -> None:
    if setup.eval_fn is None or setup.eval_data is None:
        return
    data = (to_device(batch, device) for batch in setup.eval_data)
    with evaluating(setup.model), torch.no_grad():
        telemetry.evaluation(step, setup.eval_fn(setup.model, data))
