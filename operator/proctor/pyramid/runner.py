"""Runs the layers in order, stopping at the first failure, and reports each one.

The same code runs locally (`proctor pyramid run`) and inside each layer's Job (`--layer Lk`),
where the compact result becomes the pod's termination message.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from proctor.api.v1alpha1 import CheckResult, CheckVerdict, LayerName, LayerPhase, LayerResult
from proctor.api.v1alpha1.pyramid import PyramidLayers
from proctor.pyramid import efficiency, endtoend, health, overfit
from proctor.pyramid.checks import check
from proctor.pyramid.contract import ContractError, SetupFactory
from proctor.pyramid.steps import seeded

TERMINATION_MESSAGE_LIMIT = 4096
LAYER_SEED = 0
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # operator/proctor
LAYER_ORDER = (LayerName.L0, LayerName.L1, LayerName.L2, LayerName.L3)


@dataclass
class LayerRun:
    """A layer's compact result and the details that go only into the full report."""

    result: LayerResult
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def run_layer(
    layer: LayerName,
    factory: SetupFactory,
    layers: PyramidLayers,
    entrypoint: str,
    device: torch.device,
) -> LayerRun:
    settings = getattr(layers, layer.value.lower())
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    if not settings.enabled:
        result = LayerResult(
            layer=layer, phase=LayerPhase.SKIPPED, message=f"{layer.value} is disabled in the spec"
        )
        return LayerRun(result)
    details: dict[str, Any] = {}
    try:
        # Each layer starts from the same seed, so a layer run alone in its Job behaves as in a
        # local run of the whole pyramid; the caller's generators are left as they were.
        with seeded(LAYER_SEED, device):
            checks = _checks(layer, factory, settings, entrypoint, device, details)
    except ContractError as exc:
        checks = [check("contract", False, passed="", failed=str(exc))]
    except Exception as exc:
        if _raised_by_proctor(exc):
            raise  # our bug, not a finding about the user's code
        details["traceback"] = traceback.format_exc()
        checks = [
            check(
                "runs",
                False,
                passed="",
                failed=f"the training code raised {type(exc).__name__}: {exc}"[:1000],
            )
        ]
    failed = [c for c in checks if c.verdict == CheckVerdict.FAILED]
    message = (
        f"{len(failed)} of {len(checks)} checks failed; first: {failed[0].name}: "
        f"{failed[0].message}"
        if failed
        else f"all {len(checks)} checks passed"
    )
    result = LayerResult(
        layer=layer,
        phase=LayerPhase.FAILED if failed else LayerPhase.PASSED,
        checks=checks,
        start_time=started_at,
        completion_time=datetime.now(UTC),
        attempts=1,
        message=message[:4000],
    )
    return LayerRun(result, details, time.perf_counter() - started)


def _raised_by_proctor(exc: BaseException) -> bool:
    """Whether the innermost frame that raised `exc` is Proctor's own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and Path(frames[-1].filename).is_relative_to(PACKAGE_DIR)


def _checks(
    layer: LayerName,
    factory: SetupFactory,
    settings: Any,
    entrypoint: str,
    device: torch.device,
    details: dict[str, Any],
) -> list[CheckResult]:
    if layer == LayerName.L3:
        return endtoend.run(factory, settings, device)
    setup = factory()
    setup.model.to(device)
    if layer == LayerName.L0:
        checks, details["measurements"] = efficiency.run(setup, settings, device, entrypoint)
        return checks
    if layer == LayerName.L1:
        return health.run(setup, settings, device, details)
    checks, details["curve"] = overfit.run(setup, settings, device)
    return checks


def run_pyramid(
    factory: SetupFactory,
    layers: PyramidLayers,
    entrypoint: str,
    device: torch.device,
    only: LayerName | None = None,
    on_layer: Callable[[LayerRun], None] | None = None,
) -> list[LayerRun]:
    """Every layer in order (or just `only`), stopping after the first that fails."""
    runs = []
    for layer in LAYER_ORDER:
        if only is not None and layer != only:
            continue
        run = run_layer(layer, factory, layers, entrypoint, device)
        runs.append(run)
        if on_layer is not None:
            on_layer(run)
        if run.result.phase == LayerPhase.FAILED:
            break
    return runs


def termination_message(result: LayerResult) -> str:
    """The layer's result as compact JSON under the 4 KiB a termination message may hold;
    messages are shortened (never checks dropped) until it fits."""
    wire = result.to_wire()
    for limit in (1000, 400, 160, 60, 0):
        text = json.dumps(wire, separators=(",", ":"))
        if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return text
        wire["message"] = wire.get("message", "")[:limit]
        for item in wire.get("checks", []):
            item["message"] = item.get("message", "")[:limit]
    raise ValueError("a layer result does not fit a termination message even without messages")


def write_report(runs: list[LayerRun], directory: Path, entrypoint: str) -> Path:
    """The full report (every check, curves, timings) as JSON in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "pyramid-report.json"
    report = {
        "entrypoint": entrypoint,
        "layers": [
            {**run.result.to_wire(), "seconds": round(run.seconds, 3), "details": run.details}
            for run in runs
        ],
    }
    path.write_text(json.dumps(report, indent=2, default=str))
    return path
