"""Building check results: every check says what it saw, against what, and what to do."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from proctor.api.v1alpha1 import CheckResult, CheckVerdict


def check(
    name: str,
    ok: bool,
    *,
    value: float | None = None,
    threshold: float | None = None,
    unit: str | None = None,
    passed: str,
    failed: str,
    warn_only: bool = False,
) -> CheckResult:
    """A check that passed or failed (or only warns), with the message for its outcome."""
    verdict = (
        CheckVerdict.PASSED if ok else (CheckVerdict.WARNING if warn_only else CheckVerdict.FAILED)
    )
    return CheckResult(
        name=name,
        verdict=verdict,
        value=_finite(value),
        threshold=threshold,
        unit=unit,
        message=passed if ok else failed,
    )


def info(
    name: str, message: str, value: float | None = None, unit: str | None = None
) -> CheckResult:
    """A measurement reported without a judgement."""
    return CheckResult(
        name=name, verdict=CheckVerdict.PASSED, value=_finite(value), unit=unit, message=message
    )


def skipped(name: str, message: str) -> CheckResult:
    return CheckResult(name=name, verdict=CheckVerdict.SKIPPED, message=message)


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def to_device(batch: Any, device: torch.device) -> Any:
    """The batch with every tensor in it on `device` (tuples, lists and dicts walked)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):  # dicts, and tokenizer outputs such as BatchEncoding
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def on_device(batches: Iterator[Any], device: torch.device) -> Iterator[Any]:
    for batch in batches:
        yield to_device(batch, device)


def names(items: list[str], limit: int = 5) -> str:
    """`a, b, c and 4 more`: a list short enough for a message."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
