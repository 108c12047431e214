"""Each run's state as the live view and the summary need it, read from the API objects.

Pure: `experiment_view` and `pyramid_view` turn an object (a dict, as the API server returns it)
into a `RunView`; they never call the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINISHED_PHASES = {"Succeeded", "Failed", "Concluded"}
GOOD_PHASES = {"Succeeded", "Concluded"}
LAYERS = ("L0", "L1", "L2", "L3")


@dataclass(frozen=True)
class CheckView:
    name: str
    verdict: str
    value: float | None
    threshold: float | None
    message: str


@dataclass(frozen=True)
class LayerView:
    layer: str
    phase: str
    checks: tuple[CheckView, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class TrainingView:
    job: str | None
    step: int | None
    max_steps: int | None
    loss: float | None
    samples_per_second: float | None
    mfu: float | None
    eval: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AnomalyView:
    kind: str
    severity: str
    step: int | None
    message: str
    bundle_uri: str | None


@dataclass(frozen=True)
class RunView:
    """One Experiment (or standalone ValidationPyramid) as local mode shows it."""

    kind: str
    name: str
    phase: str
    layers: tuple[LayerView, ...] = ()
    training: TrainingView | None = None
    anomalies: tuple[AnomalyView, ...] = ()
    reason: str = ""
    message: str = ""
    blocked: bool = False
    """Stuck until a person acts: a guardrail (phase Blocked), a name taken, or pods that
    cannot be scheduled (condition Blocked True while Pending or Training)."""

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    @property
    def succeeded(self) -> bool:
        return self.phase in GOOD_PHASES

    @property
    def failed_layer(self) -> LayerView | None:
        return next((layer for layer in self.layers if layer.phase == "Failed"), None)


def experiment_view(experiment: dict[str, Any], pyramid: dict[str, Any] | None) -> RunView:
    """`experiment` as the API returns it, with its owned pyramid when it exists yet."""
    status = experiment.get("status") or {}
    spec = experiment.get("spec") or {}
    reason, message, blocked = _headline(status.get("conditions") or [], status.get("phase"))
    training = status.get("training")
    return RunView(
        kind="Experiment",
        name=experiment["metadata"]["name"],
        phase=status.get("phase") or "Pending",
        layers=_layers(pyramid),
        training=_training(training, spec) if training else None,
        anomalies=tuple(_anomaly(a) for a in status.get("anomalies") or []),
        reason=reason,
        message=message,
        blocked=blocked,
    )


def pyramid_view(pyramid: dict[str, Any]) -> RunView:
    """A ValidationPyramid applied on its own: its phase and layers, no training."""
    status = pyramid.get("status") or {}
    phase = status.get("phase") or "Pending"
    reason, message, _ = _headline(status.get("conditions") or [], phase)
    return RunView(
        kind="ValidationPyramid",
        name=pyramid["metadata"]["name"],
        # A pyramid ends Passed or Failed; local mode reads Passed as success.
        phase={"Passed": "Succeeded"}.get(phase, phase),
        layers=_layers(pyramid),
        reason=reason,
        message=message,
    )


def _layers(pyramid: dict[str, Any] | None) -> tuple[LayerView, ...]:
    results = ((pyramid or {}).get("status") or {}).get("layers") or []
    by_name = {result.get("layer"): result for result in results}
    return tuple(
        LayerView(
            layer=layer,
            phase=(by_name.get(layer) or {}).get("phase") or "Pending",
            checks=tuple(
                CheckView(
                    name=check.get("name", "?"),
                    verdict=check.get("verdict", "?"),
                    value=check.get("value"),
                    threshold=check.get("threshold"),
                    message=check.get("message", ""),
                )
                for check in (by_name.get(layer) or {}).get("checks") or []
            ),
            message=(by_name.get(layer) or {}).get("message", ""),
        )
        for layer in LAYERS
    )


def _training(training: dict[str, Any], spec: dict[str, Any]) -> TrainingView:
    budget = (spec.get("training") or {}).get("budget") or {}
    last_eval = training.get("lastEval") or {}
    return TrainingView(
        job=training.get("jobName"),
        step=training.get("step"),
        max_steps=budget.get("maxSteps"),
        loss=training.get("loss"),
        samples_per_second=training.get("samplesPerSecond"),
        mfu=training.get("mfu"),
        eval=dict(last_eval.get("metrics") or {}),
    )


def _anomaly(anomaly: dict[str, Any]) -> AnomalyView:
    return AnomalyView(
        kind=anomaly.get("kind", "?"),
        severity=anomaly.get("severity", "?"),
        step=anomaly.get("step"),
        message=anomaly.get("message", ""),
        bundle_uri=anomaly.get("bundleURI"),
    )


def _headline(conditions: list[dict[str, Any]], phase: str | None) -> tuple[str, str, bool]:
    """The condition that explains the phase best: a block, then a failure, then the newest."""
    by_type = {c.get("type"): c for c in conditions}
    blocked = by_type.get("Blocked")
    if blocked and blocked.get("status") == "True":
        return blocked.get("reason", ""), blocked.get("message", ""), True
    failing = [c for c in conditions if c.get("status") == "False" and c.get("type") != "Blocked"]
    if phase == "Failed" and failing:
        return failing[0].get("reason", ""), failing[0].get("message", ""), False
    chosen = max(
        (c for c in conditions if c.get("type") != "Blocked"),
        key=lambda c: c.get("lastTransitionTime") or "",
        default=None,
    )
    if chosen is None:
        return "", "", False
    return chosen.get("reason", ""), chosen.get("message", ""), False
