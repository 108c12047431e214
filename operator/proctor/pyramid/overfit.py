"""L2, overfit: can the model memorise a tiny fixed subset? If it cannot, it cannot learn at all."""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch

from proctor.api.v1alpha1 import CheckResult
from proctor.api.v1alpha1.pyramid import OverfitSettings
from proctor.pyramid.checks import check, info, on_device
from proctor.pyramid.contract import TrainingSetup
from proctor.pyramid.steps import evaluating, train_step


def run(
    setup: TrainingSetup, settings: OverfitSettings, device: torch.device
) -> tuple[list[CheckResult], dict[str, Any]]:
    subset: list[Any] = []
    samples = 0
    for batch in on_device(setup.batches(), device):
        subset.append(batch)
        samples += setup.samples_in(batch)
        if samples >= settings.samples:
            break
    initial = _mean_loss(setup, subset)
    floor = settings.loss_floor
    target = floor + settings.target_loss_ratio * (initial - floor)
    curve = [initial]
    steps = 0
    while steps < settings.max_steps and curve[-1] > target:
        for batch in subset:
            train_step(setup, batch)
            steps += 1
        curve.append(_mean_loss(setup, subset))
    final = curve[-1]
    ratio = (final - floor) / (initial - floor) if initial > floor else math.inf
    trend = _monotonicity(curve)
    checks = [
        info("subset", f"{samples} samples in {len(subset)} fixed batches, {steps} steps"),
        check(
            "loss_reaches_target",
            math.isfinite(final) and final <= target,
            value=ratio,
            threshold=settings.target_loss_ratio,
            unit="ratio",
            passed=f"loss fell from {initial:.4g} to {final:.4g} ({ratio:.1%} of the start) in "
            f"{steps} steps",
            failed=f"after {steps} steps the loss on {samples} fixed samples is {final:.4g}, "
            f"{ratio:.0%} of its start {initial:.4g} (target {settings.target_loss_ratio:.0%}): "
            "the model cannot even memorise a tiny set. Check that labels match inputs, the "
            "learning rate is not ~0, the loss compares the right tensors, and the model has "
            "capacity. If label smoothing or a regulariser keeps the loss above 0, set "
            "layers.l2.lossFloor.",
        ),
        check(
            "loss_trend",
            trend >= settings.min_monotonicity,
            value=trend,
            threshold=settings.min_monotonicity,
            unit="ratio",
            passed=f"the smoothed loss fell in {trend:.0%} of epochs",
            failed=f"the smoothed loss fell in only {trend:.0%} of epochs: it thrashes. Lower the "
            "learning rate or check for shuffled or noisy labels.",
        ),
    ]
    return checks, {"curve": curve, "steps": steps, "initial_loss": initial, "final_loss": final}


@torch.no_grad()
def _mean_loss(setup: TrainingSetup, subset: list[Any]) -> float:
    """The subset's loss in eval mode: the curve shows learning, not dropout noise."""
    with evaluating(setup.model):
        return sum(float(setup.loss_fn(setup.model, batch)) for batch in subset) / len(subset)


def _monotonicity(curve: list[float], smoothing: float = 0.5) -> float:
    """Share of epochs whose exponentially smoothed loss fell."""
    if len(curve) < 3:
        return 1.0
    smoothed = [curve[0]]
    for value in curve[1:]:
        smoothed.append(smoothing * smoothed[-1] + (1 - smoothing) * value)
    falls = sum(1 for a, b in itertools.pairwise(smoothed) if b < a)
    return falls / (len(smoothed) - 1)
