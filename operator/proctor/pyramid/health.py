"""L1, internal health: do gradients flow, do parameters learn, do activations live?

Observed from outside with forward hooks on activation, attention and embedding modules and by
reading gradients after backward; the user's code is never edited.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from proctor.api.v1alpha1 import CheckResult
from proctor.api.v1alpha1.pyramid import HealthSettings
from proctor.pyramid.checks import check, names, on_device, skipped
from proctor.pyramid.contract import ContractError, TrainingSetup
from proctor.pyramid.steps import checked_loss

DEAD_ONLY = (nn.ReLU, nn.ReLU6)  # units that output exactly 0 when dead


def run(
    setup: TrainingSetup,
    settings: HealthSettings,
    device: torch.device,
    details: dict[str, Any] | None = None,
) -> list[CheckResult]:
    """The L1 checks; `details`, if given, receives the per-parameter table for the report."""
    model = setup.model
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ContractError(
            "the model has no trainable parameters: nothing can learn (is everything frozen, or "
            "are the layers kept in plain lists?)"
        )
    checks = [_unregistered(model), _in_optimizer(setup, trainable)]
    before = {n: p.detach().clone() for n, p in trainable.items()}
    embeddings = {n: m for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    embedding_norms = {n: _mean_row_norm(m) for n, m in embeddings.items()}

    dead = _DeadUnits(model)
    entropy = _AttentionEntropy(model)
    batches = on_device(setup.batches(), device)
    losses: list[float] = []
    grad_norms: dict[str, float] = {}
    missing_grad: set[str] = set(trainable)
    try:
        for step in range(settings.steps):
            batch = next(batches)
            setup.optimizer.zero_grad(set_to_none=True)
            loss = checked_loss(setup.loss_fn(model, batch))
            loss.backward()
            # Over every step, not just the first: a zero-initialised adapter or an expert the
            # router skipped at first gets its gradient a step later.
            for name, param in trainable.items():
                if param.grad is not None:
                    missing_grad.discard(name)
                    norm = float(param.grad.detach().norm())
                    grad_norms[name] = max(grad_norms.get(name, norm), norm)
            setup.optimizer.step()
            losses.append(float(loss.detach()))
            # Activations on the first batch and on the last: ReLUs can die during the steps.
            dead.measuring = entropy.measuring = step == settings.steps - 2
    finally:
        dead.remove()
        entropy.remove()

    checks.append(
        check(
            "loss_finite",
            all(math.isfinite(v) for v in losses),
            value=losses[-1] if losses else None,
            passed=f"loss finite over {len(losses)} steps ({losses[0]:.4g} -> {losses[-1]:.4g})",
            failed=f"loss became non-finite ({losses}): look for log(0), division by zero, an "
            "unscaled fp16 loss, or a learning rate that diverges at once.",
        )
    )
    checks.append(
        check(
            "gradients_present",
            not missing_grad,
            value=float(len(missing_grad)),
            threshold=0.0,
            unit="parameters",
            passed=f"all {len(trainable)} trainable parameters received a gradient",
            failed=f"{len(missing_grad)} of {len(trainable)} parameters got no gradient "
            f"({names(sorted(missing_grad))}): is their output detached (.detach(), .data, "
            "torch.no_grad) or unused in the loss? Freeze them (requires_grad=False) if intended.",
        )
    )
    nonfinite = sorted(n for n, g in grad_norms.items() if not math.isfinite(g))
    exploding = sorted(
        n for n, g in grad_norms.items() if math.isfinite(g) and g > settings.max_grad_norm
    )
    vanishing = sorted(n for n, g in grad_norms.items() if g < settings.min_grad_norm)
    largest = max(grad_norms.values(), default=0.0)
    checks.append(
        check(
            "gradient_norms",
            not (nonfinite or exploding or vanishing),
            value=largest,
            threshold=settings.max_grad_norm,
            unit="norm",
            passed=f"per-parameter gradient norms within [{settings.min_grad_norm:g}, "
            f"{settings.max_grad_norm:g}] (largest {largest:.3g})",
            failed=_gradient_message(nonfinite, exploding, vanishing, settings),
        )
    )
    unchanged = sorted(n for n, p in trainable.items() if torch.equal(before[n], p.detach()))
    everything = len(unchanged) == len(trainable)
    checks.append(
        check(
            "parameters_update",
            not unchanged,
            value=float(len(unchanged)),
            threshold=0.0,
            unit="parameters",
            passed=f"all {len(trainable)} trainable parameters changed after {settings.steps} "
            "steps",
            failed=(
                f"no parameter changed after {settings.steps} steps: is the learning rate 0, or "
                "does the optimizer hold tensors other than the model's?"
            )
            if everything
            else (
                f"{len(unchanged)} of {len(trainable)} parameters never changed "
                f"({names(unchanged)}): are they missing from the optimizer, or is their output "
                "detached?"
            ),
        )
    )
    checks.append(dead.result(settings))
    checks.append(entropy.result(settings))
    checks.append(_embedding_drift(embeddings, embedding_norms, settings))
    if details is not None:
        details["parameters"] = {
            name: {
                "grad_norm_max": grad_norms.get(name),
                "updated": name not in unchanged,
                "shape": list(param.shape),
            }
            for name, param in trainable.items()
        }
        details["losses"] = losses
        details["dead_unit_ratio"] = dead.fractions
    return checks


def _gradient_message(
    nonfinite: list[str], exploding: list[str], vanishing: list[str], settings: HealthSettings
) -> str:
    parts = []
    if nonfinite:
        parts.append(f"non-finite gradients in {names(nonfinite)}")
    if exploding:
        parts.append(
            f"exploding gradients (> {settings.max_grad_norm:g}) in {names(exploding)}: "
            "check the initialisation scale, add normalisation or gradient clipping"
        )
    if vanishing:
        parts.append(
            f"vanishing gradients (< {settings.min_grad_norm:g}) in {names(vanishing)}: "
            "check saturating activations, depth without residuals, or a frozen path"
        )
    return "; ".join(parts) + "."


def _unregistered(model: nn.Module) -> CheckResult:
    """Modules or parameters kept only in plain lists or dicts are invisible to .parameters()."""
    registered = {id(p) for p in model.parameters()}

    def hidden(item: object) -> bool:
        if isinstance(item, nn.Parameter):
            return id(item) not in registered
        if isinstance(item, nn.Module):
            return any(id(p) not in registered for p in item.parameters())
        return False

    found = []
    for module_name, module in model.named_modules():
        for attribute, value in vars(module).items():
            if attribute.startswith("_"):
                continue
            items = (
                value.values()
                if isinstance(value, dict)
                else value
                if isinstance(value, list | tuple)
                else ()
            )
            if any(hidden(item) for item in items):
                found.append(f"{module_name + '.' if module_name else ''}{attribute}")
    return check(
        "parameters_registered",
        not found,
        value=float(len(found)),
        threshold=0.0,
        unit="attributes",
        passed="no modules or parameters hidden in plain lists or dicts",
        failed=f"modules or parameters held in plain Python containers ({names(found)}) are not "
        "registered: .parameters(), the optimizer, .to(device) and state_dict() never see them. "
        "Use nn.ModuleList, nn.ModuleDict or nn.ParameterList.",
    )


def _in_optimizer(setup: TrainingSetup, trainable: dict[str, nn.Parameter]) -> CheckResult:
    optimized = {id(p) for group in setup.optimizer.param_groups for p in group["params"]}
    outside = sorted(n for n, p in trainable.items() if id(p) not in optimized)
    return check(
        "parameters_in_optimizer",
        not outside,
        value=float(len(outside)),
        threshold=0.0,
        unit="parameters",
        passed=f"the optimizer holds all {len(trainable)} trainable parameters",
        failed=f"{len(outside)} trainable parameters are not in the optimizer ({names(outside)}): "
        "build it from model.parameters() after every module is created.",
    )


class _DeadUnits:
    """Fraction of units after ReLU-like modules that output zero for the whole batch."""

    def __init__(self, model: nn.Module) -> None:
        self.measuring = True
        self.fractions: dict[str, float] = {}
        self._handles = [
            module.register_forward_hook(self._hook(name))
            for name, module in model.named_modules()
            if isinstance(module, DEAD_ONLY)
        ]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if self.measuring and isinstance(output, torch.Tensor) and output.dim() >= 2:
                flat = output.detach().reshape(output.shape[0], -1)
                fraction = float((flat <= 0).all(dim=0).float().mean())
                self.fractions[name] = max(fraction, self.fractions.get(name, 0.0))

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def result(self, settings: HealthSettings) -> CheckResult:
        if not self.fractions:
            return skipped(
                "dead_activations", "no ReLU modules to observe (functional calls cannot be hooked)"
            )
        worst_name, worst = max(self.fractions.items(), key=lambda item: item[1])
        limit = settings.max_dead_activation_ratio
        return check(
            "dead_activations",
            worst <= limit,
            value=worst,
            threshold=limit,
            unit="ratio",
            passed=f"at most {worst:.0%} of units dead on a batch (worst: {worst_name})",
            failed=f"{worst:.0%} of the units after {worst_name} never fire on a batch: dead "
            "ReLUs. Check the bias and weight initialisation, lower the learning rate, or use "
            "LeakyReLU/GELU.",
        )


class _AttentionEntropy:
    """Normalised entropy of nn.MultiheadAttention weights; near 0 means collapse onto a token."""

    def __init__(self, model: nn.Module) -> None:
        self.measuring = True
        self.ratios: dict[str, float] = {}
        self._handles = [
            module.register_forward_hook(self._hook(name), with_kwargs=False)
            for name, module in model.named_modules()
            if isinstance(module, nn.MultiheadAttention)
        ]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if self.measuring and isinstance(weights, torch.Tensor) and weights.shape[-1] > 1:
                w = weights.detach().clamp_min(1e-12)
                entropy = -(w * w.log()).sum(-1).mean()
                self.ratios[name] = float(entropy / math.log(weights.shape[-1]))

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def result(self, settings: HealthSettings) -> CheckResult:
        if not self._handles:
            return skipped("attention_entropy", "no nn.MultiheadAttention modules")
        if not self.ratios:
            return skipped(
                "attention_entropy",
                "attention weights were not returned (need_weights=False); nothing to measure",
            )
        name, lowest = min(self.ratios.items(), key=lambda item: item[1])
        limit = settings.min_attention_entropy_ratio
        return check(
            "attention_entropy",
            lowest >= limit,
            value=lowest,
            threshold=limit,
            unit="ratio",
            passed=f"attention entropy at least {lowest:.0%} of its maximum ({name})",
            failed=f"attention in {name} has collapsed onto single tokens (entropy {lowest:.1%} of "
            "its maximum): check the attention scaling (1/sqrt(d)), masking and logit growth.",
        )


def _mean_row_norm(embedding: nn.Embedding) -> float:
    return float(embedding.weight.detach().norm(dim=-1).mean())


def _embedding_drift(
    embeddings: dict[str, nn.Embedding], before: dict[str, float], settings: HealthSettings
) -> CheckResult:
    if not embeddings:
        return skipped("embedding_norm_drift", "no nn.Embedding modules")
    drifts = {
        n: abs(_mean_row_norm(m) - before[n]) / max(before[n], 1e-12) for n, m in embeddings.items()
    }
    name, worst = max(drifts.items(), key=lambda item: item[1])
    limit = settings.max_embedding_norm_drift_ratio
    return check(
        "embedding_norm_drift",
        worst <= limit,
        value=worst,
        threshold=limit,
        unit="ratio",
        passed=f"embedding norms moved at most {worst:.1%} ({name})",
        failed=f"the mean norm of {name} changed by {worst:.0%} in a few steps: the learning rate "
        "or weight decay on embeddings is likely too high.",
    )
