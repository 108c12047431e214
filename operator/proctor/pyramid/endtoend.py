"""L3, end to end: train, save, rebuild from the entrypoint, load, and behave identically."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from proctor.api.v1alpha1 import CheckResult
from proctor.api.v1alpha1.pyramid import EndToEndSettings
from proctor.pyramid.checks import check, names, on_device, skipped, to_device
from proctor.pyramid.contract import SetupFactory, TrainingSetup
from proctor.pyramid.steps import evaluating, seeded, train_step

RESUME_SEED = 20240601


def run(
    factory: SetupFactory, settings: EndToEndSettings, device: torch.device
) -> list[CheckResult]:
    original = factory()
    original.model.to(device)
    batches = on_device(original.batches(), device)
    for _ in range(settings.steps):
        train_step(original, next(batches))
    probe, resume_batch, after_batch = next(batches), next(batches), next(batches)
    with tempfile.TemporaryDirectory(prefix="proctor-l3-") as directory:
        original.save(Path(directory))
        reloaded = factory()
        reloaded.model.to(device)
        reloaded.load(Path(directory))
    checks = [_model_state(original, reloaded), _optimizer_state(original, reloaded)]
    checks += _predictions(original, reloaded, probe, settings)
    checks.append(_eval_metrics(original, device))
    checks.append(_resume(original, reloaded, resume_batch, after_batch, settings, device))
    return checks


def _model_state(original: TrainingSetup, reloaded: TrainingSetup) -> CheckResult:
    a, b = original.model.state_dict(), reloaded.model.state_dict()
    differing = sorted(
        k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k])
    )
    return check(
        "model_state_restored",
        not differing,
        value=float(len(differing)),
        threshold=0.0,
        unit="tensors",
        passed=f"all {len(a)} model tensors identical after save and load",
        failed=f"{len(differing)} model tensors differ after save and load ({names(differing)}): "
        "does load skip keys (strict=False, renamed modules), or save only part of the model?",
    )


def _optimizer_state(original: TrainingSetup, reloaded: TrainingSetup) -> CheckResult:
    problems = _differences(
        original.optimizer.state_dict(), reloaded.optimizer.state_dict(), "optimizer"
    )
    return check(
        "optimizer_state_restored",
        not problems,
        value=float(len(problems)),
        threshold=0.0,
        unit="entries",
        passed="optimizer state (moments, step counts, hyperparameters) identical after load",
        failed=f"optimizer state differs after load ({names(problems)}): save and load the "
        "optimizer's state_dict too, or a resumed run restarts its moments and learning-rate "
        "schedule.",
    )


def _differences(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and torch.equal(a, b)
        )
        return [] if same else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        found = [f"{path}.{k}" for k in a.keys() ^ b.keys()]
        for key in a.keys() & b.keys():
            found += _differences(a[key], b[key], f"{path}.{key}")
        return found
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [path]


def _predictions(
    original: TrainingSetup, reloaded: TrainingSetup, batch: Any, settings: EndToEndSettings
) -> list[CheckResult]:
    with evaluating(original.model), evaluating(reloaded.model), torch.no_grad():
        first, second = original.predict(batch), original.predict(batch)
        restored = reloaded.predict(batch)
        switched = sorted(n or "(model)" for n, m in original.model.named_modules() if m.training)
    deterministic = torch.equal(first, second) and not switched
    difference = (
        float((first - restored).abs().max()) if first.shape == restored.shape else math.inf
    )
    return [
        check(
            "predictions_deterministic",
            deterministic,
            passed="predicting the same batch twice in eval mode gives identical outputs",
            failed=(
                f"predict switches modules back to training mode ({names(switched)}): "
                "dropout and BatchNorm then behave as in training. Do not call model.train() "
                "in predict."
            )
            if switched
            else "predicting the same batch twice in eval mode gives different outputs: dropout "
            "or another random layer is active at inference. Call model.eval() and do not switch "
            "to train() (or use F.dropout(training=True)) in predict.",
        ),
        check(
            "predictions_restored",
            difference <= settings.prediction_tolerance,
            value=difference,
            threshold=settings.prediction_tolerance,
            unit="abs",
            passed=f"the reloaded model predicts the same (max difference {difference:.2g})",
            failed=f"the reloaded model's predictions differ by up to {difference:.3g}: the "
            "checkpoint does not capture everything the model uses (buffers, a module outside "
            "the state_dict), or predict is not deterministic.",
        ),
    ]


def _eval_metrics(original: TrainingSetup, device: torch.device) -> CheckResult:
    if original.eval_fn is None or original.eval_data is None:
        return skipped("eval_metrics_finite", "no eval_fn and eval_data in the setup")
    data = (to_device(b, device) for b in original.eval_data)
    with evaluating(original.model):
        metrics = original.eval_fn(original.model, data)
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(float(v)))
    shown = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(metrics.items()))
    return check(
        "eval_metrics_finite",
        bool(metrics) and not bad,
        value=float(len(bad)),
        threshold=0.0,
        passed=f"eval metrics finite: {shown}",
        failed=f"eval metrics missing or not finite ({shown or 'none returned'}): check for empty "
        "eval data, division by zero, or NaN weights.",
    )


def _resume(
    original: TrainingSetup,
    reloaded: TrainingSetup,
    batch: Any,
    after: Any,
    settings: EndToEndSettings,
    device: torch.device,
) -> CheckResult:
    # The same random draws for both steps (dropout), and the next loss in eval mode, so only
    # what the checkpoint restored can make the two runs differ.
    for setup in (original, reloaded):
        with seeded(RESUME_SEED, device):
            train_step(setup, batch)
    with torch.no_grad(), evaluating(original.model), evaluating(reloaded.model):
        expected = float(original.loss_fn(original.model, after))
        resumed = float(reloaded.loss_fn(reloaded.model, after))
    relative = abs(resumed - expected) / max(abs(expected), 1e-12)
    return check(
        "resume_matches",
        relative <= settings.resume_loss_tolerance,
        value=relative,
        threshold=settings.resume_loss_tolerance,
        unit="relative",
        passed=f"one step from the checkpoint gives the same next loss ({resumed:.6g})",
        failed=f"one step from the checkpoint gives loss {resumed:.6g}, the original run "
        f"{expected:.6g}: the resumed run diverges from the original. Save and load the "
        "optimizer state (and any learning-rate schedule or other state the step uses).",
    )
