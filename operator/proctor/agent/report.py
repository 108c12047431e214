"""`status NAME`: an Experiment and its ValidationPyramid as one typed report, with the next
step of the research loop spelled out.

The report is built from the stored objects by a pure function (build_report), so what an agent
reads is tested without a cluster. The status is read through the API models; the spec only
for the few fields the report quotes, so a CLI one minor version behind still reads it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from proctor.agent.connection import API_VERSION, Connection
from proctor.agent.errors import AgentError
from proctor.agent.models import (
    AnomalyView,
    CheckpointView,
    CheckView,
    ConclusionView,
    ConditionView,
    EvalView,
    ExperimentReport,
    HypothesisView,
    LayerView,
    PyramidView,
    TrainingView,
)
from proctor.api.studies import STUDY_LABEL
from proctor.api.v1alpha1 import ExperimentPhase, ExperimentStatus, ValidationPyramidStatus
from proctor.api.v1alpha1.conditions import ExperimentConditionType
from proctor.api.v1alpha1.pyramid import CheckVerdict, LayerResult
from proctor.kube import KubeError


def status(connection: Connection, name: str) -> ExperimentReport:
    """The report on Experiment `name` in the connection's namespace."""
    experiment = get_experiment(connection, name)
    pyramid_name = ((experiment.get("status") or {}).get("validation") or {}).get("pyramidName")
    pyramid = None
    if pyramid_name:
        try:
            pyramid = connection.kube.get(
                API_VERSION, "ValidationPyramid", connection.namespace, pyramid_name
            )
        except KubeError as exc:
            raise AgentError(
                f"cannot read ValidationPyramid {pyramid_name}: {exc}",
                "check that the cluster answers (`kubectl get vp`), then ask again",
            ) from None
    return build_report(experiment, pyramid)


def get_experiment(connection: Connection, name: str) -> dict[str, Any]:
    """The stored Experiment, or an AgentError that lists what does exist."""
    try:
        experiment = connection.kube.get(API_VERSION, "Experiment", connection.namespace, name)
    except KubeError as exc:
        raise AgentError(
            f"cannot read Experiment {name} in namespace {connection.namespace}: {exc}",
            "check that the cluster answers and the Proctor CRDs are installed "
            "(`kubectl get exp`), then ask again",
        ) from None
    if experiment is None:
        raise AgentError(
            f"no Experiment {name} in namespace {connection.namespace}",
            "check the name with `kubectl get exp` (or pass --namespace); submit it first with "
            "`proctor submit FILE`",
        )
    return experiment


def build_report(experiment: dict[str, Any], pyramid: dict[str, Any] | None) -> ExperimentReport:
    """The report, from the stored Experiment and its ValidationPyramid (None before it exists)."""
    meta = experiment.get("metadata") or {}
    spec = experiment.get("spec") or {}
    try:
        state = ExperimentStatus.model_validate(experiment.get("status") or {})
    except ValidationError as exc:
        raise AgentError(
            f"Experiment {meta.get('name')} has a status this proctor cannot read: {exc}",
            "use the proctor CLI of the operator's version (`pip install proctor==<version>`)",
        ) from None
    phase = (state.phase or ExperimentPhase.PENDING).value
    report = ExperimentReport(
        name=meta.get("name", ""),
        namespace=meta.get("namespace", ""),
        phase=phase,
        study=(meta.get("labels") or {}).get(STUDY_LABEL),
        hypothesis=_hypothesis(spec),
        conditions=[
            ConditionView(type=c.type, status=c.status.value, reason=c.reason, message=c.message)
            for c in state.conditions
        ],
        pyramid=_pyramid(spec, state, pyramid),
        training=_training(spec, state),
        anomaly_count=state.anomaly_count or len(state.anomalies),
        anomalies=[
            AnomalyView(
                kind=a.kind.value,
                severity=a.severity.value,
                time=a.time,
                step=a.step,
                message=a.message,
                bundle_uri=a.bundle_uri,
            )
            for a in state.anomalies
        ],
        conclusion=_conclusion(spec),
        next="",
    )
    return report.model_copy(update={"next": next_step(report)})


def next_step(report: ExperimentReport) -> str:
    """What the research loop asks of the agent now, given the report."""
    name = report.name
    wait = f"`proctor wait {name} --for Succeeded,Failed`"
    if report.phase == ExperimentPhase.BLOCKED:
        blocked = _condition(report, ExperimentConditionType.BLOCKED)
        why = blocked.message if blocked and blocked.message else "a guardrail holds it"
        return f"blocked: {why}"
    if report.phase in (ExperimentPhase.PENDING, ExperimentPhase.VALIDATING):
        return f"the pyramid runs before training; {wait} and read pyramid.layers if it fails"
    if report.phase in (ExperimentPhase.QUEUED, ExperimentPhase.TRAINING):
        extra = (
            f"; {report.anomaly_count} anomalies so far: `proctor bundles {name}`"
            if report.anomaly_count
            else ""
        )
        return f"training runs under the watchdog; {wait}{extra}"
    conclude = (
        f"`proctor conclude {name} --verdict effective|ineffective|inconclusive "
        "--evidence '<numbers>' --learnings '<what the next experiment takes from this>'`"
    )
    if report.phase == ExperimentPhase.FAILED:
        failed = _failed_checks(report)
        if failed:
            return (
                f"the pyramid stopped it: read pyramid.layers[].failedChecks ({failed}), fix the "
                f"code, conclude this one ({conclude}, usually inconclusive), then submit a new "
                f"experiment citing {name} in spec.hypothesis.inspiredBy"
            )
        bundles = f"read `proctor bundles {name}` first, then " if report.anomaly_count else ""
        return f"training failed: {bundles}conclude it ({conclude}) before the next experiment"
    if report.phase == ExperimentPhase.SUCCEEDED:
        bundles = (
            f"read its {report.anomaly_count} anomalies (`proctor bundles {name}`), "
            if report.anomaly_count
            else ""
        )
        return (
            f"the run ended: compare training.lastEval with hypothesis.expectedOutcome, "
            f"{bundles}then conclude it ({conclude}) before the next experiment"
        )
    return (
        f"concluded: state the next hypothesis and submit it citing {name} in "
        "spec.hypothesis.inspiredBy (kind: Experiment)"
    )


def _condition(report: ExperimentReport, kind: ExperimentConditionType) -> ConditionView | None:
    return next((c for c in report.conditions if c.type == kind.value), None)


def _failed_checks(report: ExperimentReport) -> str:
    if report.pyramid is None:
        return ""
    names = [
        f"{layer.layer} {check.name}"
        for layer in report.pyramid.layers
        for check in layer.failed_checks
    ]
    failed_layers = [layer.layer for layer in report.pyramid.layers if layer.phase == "Failed"]
    return ", ".join(names) or ", ".join(f"{layer} failed" for layer in failed_layers)


def _hypothesis(spec: dict[str, Any]) -> HypothesisView | None:
    hypothesis = spec.get("hypothesis")
    if not isinstance(hypothesis, dict):
        return None
    return HypothesisView(
        statement=str(hypothesis.get("statement", "")),
        expected_outcome=str(hypothesis.get("expectedOutcome", "")),
        independent_variable=str(hypothesis.get("independentVariable", "")),
    )


def _pyramid(
    spec: dict[str, Any], state: ExperimentStatus, pyramid: dict[str, Any] | None
) -> PyramidView | None:
    skip = ((spec.get("validation") or {}).get("skip") or {}).get("reason")
    summary = state.validation
    if pyramid is None and summary is None and skip is None:
        return None
    view = PyramidView(
        name=summary.pyramid_name if summary else None,
        phase=summary.phase.value if summary and summary.phase else None,
        current_layer=summary.layer.value if summary and summary.layer else None,
        skipped=skip,
    )
    if pyramid is None:
        return view
    try:
        pyramid_status = ValidationPyramidStatus.model_validate(pyramid.get("status") or {})
    except ValidationError:
        return view  # the summary above still stands; the layers are a bonus
    return view.model_copy(
        update={
            "phase": (pyramid_status.phase.value if pyramid_status.phase else view.phase),
            "layers": [_layer(layer) for layer in pyramid_status.layers],
        }
    )


def _layer(layer: LayerResult) -> LayerView:
    def view(verdict: CheckVerdict) -> list[CheckView]:
        return [
            CheckView(
                name=c.name,
                verdict=c.verdict.value,
                value=c.value,
                threshold=c.threshold,
                unit=c.unit,
                message=c.message,
            )
            for c in layer.checks
            if c.verdict == verdict
        ]

    return LayerView(
        layer=layer.layer.value,
        phase=layer.phase.value,
        attempts=layer.attempts,
        passed_checks=sum(c.verdict == CheckVerdict.PASSED for c in layer.checks),
        total_checks=len(layer.checks),
        failed_checks=view(CheckVerdict.FAILED),
        warnings=view(CheckVerdict.WARNING),
        message=layer.message,
    )


def _training(spec: dict[str, Any], state: ExperimentStatus) -> TrainingView | None:
    budget = (spec.get("training") or {}).get("budget") or {}
    progress = state.training
    if progress is None:
        if not budget:
            return None
        return TrainingView(
            max_steps=budget.get("maxSteps"), max_duration=budget.get("maxDuration")
        )
    checkpoint = progress.last_checkpoint
    evaluation = progress.last_eval
    return TrainingView(
        job_name=progress.job_name,
        step=progress.step,
        max_steps=budget.get("maxSteps"),
        max_duration=budget.get("maxDuration"),
        loss=progress.loss,
        mfu=progress.mfu,
        samples_per_second=progress.samples_per_second,
        tokens_per_second=progress.tokens_per_second,
        last_checkpoint=(
            CheckpointView(uri=checkpoint.uri, step=checkpoint.step) if checkpoint else None
        ),
        last_eval=EvalView(step=evaluation.step, metrics=evaluation.metrics)
        if evaluation
        else None,
    )


def _conclusion(spec: dict[str, Any]) -> ConclusionView | None:
    conclusion = spec.get("conclusion")
    if not isinstance(conclusion, dict):
        return None
    return ConclusionView(
        verdict=str(conclusion.get("verdict", "")),
        evidence=str(conclusion.get("evidence", "")),
        learnings=str(conclusion.get("learnings", "")),
    )
