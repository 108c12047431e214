"""Hand-built inputs of the pure reconcilers: resources as the API server returns them, and the
facts the operator reads back from Jobs and pods."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from proctor.api.v1alpha1 import LayerName, LayerPhase, LayerResult
from proctor.controller import names
from proctor.controller.observed import JobFacts, PodFacts
from proctor.pyramid.runner import termination_message

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
NAMESPACE = "ml"


def pyramid(name: str = "digits", **spec: Any) -> dict[str, Any]:
    """A ValidationPyramid as the API server returns it (identity set, no status yet)."""
    return {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": "ValidationPyramid",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": "uid-vp", "generation": 1},
        "spec": {
            "code": {"image": "registry.example/digits:1.0", "entrypoint": "digits_mlp:setup"},
            **spec,
        },
    }


def experiment(name: str = "exp", **spec: Any) -> dict[str, Any]:
    """An Experiment as the API server returns it; `spec` entries replace the defaults."""
    base: dict[str, Any] = {
        "hypothesis": {
            "statement": "A 256-unit MLP classifies digits well.",
            "expectedOutcome": "eval accuracy at least 0.95 after 300 steps",
            "inspiredBy": [{"kind": "Note", "ref": "a baseline for later work"}],
            "independentVariable": "code.config.hidden",
            "controls": ["seed 0"],
        },
        "code": {
            "image": "registry.example/digits:1.0",
            "entrypoint": "digits_mlp:setup",
            "config": {"hidden": 256, "lr": 0.003},
        },
        "training": {
            "budget": {"maxSteps": 300, "maxDuration": "10m"},
            "resources": {"gpus": 1, "cpu": "2", "memory": "8Gi"},
            "checkpoint": {"uri": "s3://ckpts/runs", "everySteps": 50},
        },
    }
    base.update(copy.deepcopy(spec))
    return {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": "uid-exp", "generation": 1},
        "spec": base,
    }


def layer_message(
    layer: LayerName, passed: bool = True, check: str = "loss_falls", text: str = ""
) -> str:
    """The termination message the pyramid runner writes for one layer."""
    verdict = "Passed" if passed else "Failed"
    result = LayerResult.model_validate(
        {
            "layer": layer.value,
            "phase": verdict,
            "attempts": 1,
            "checks": [
                {"name": "runs", "verdict": "Passed", "message": "the step ran"},
                {
                    "name": check,
                    "verdict": verdict,
                    "value": 0.5,
                    "threshold": 0.1,
                    "message": text,
                },
            ],
            "message": "all 2 checks passed"
            if passed
            else f"1 of 2 checks failed; first: {check}: {text}",
        }
    )
    assert result.phase == (LayerPhase.PASSED if passed else LayerPhase.FAILED)
    return termination_message(result)


def layer_job(
    layer: LayerName,
    attempt: int = 1,
    *,
    pyramid_name: str = "digits",
    state: str = "active",
    pod: PodFacts | None = None,
    failed_reason: str = "",
    finished: datetime | None = None,
) -> JobFacts:
    """JobFacts of a layer's Job; `state` is active, complete or failed."""
    return JobFacts(
        name=names.layer_job_name(pyramid_name, layer, attempt),
        labels=names.managed_labels(
            names.VALIDATION,
            **{names.PYRAMID: pyramid_name, names.LAYER: layer.value, names.ATTEMPT: str(attempt)},
        ),
        active=state == "active",
        suspended=False,
        complete=state == "complete",
        failed=state == "failed",
        failed_reason=failed_reason,
        start_time=NOW,
        finish_time=finished if state != "active" else None,
        pods=(pod,) if pod else (),
    )


def passed_layer(layer: LayerName, finished: datetime = NOW, **kwargs: Any) -> JobFacts:
    pod = PodFacts(
        name=f"digits-{layer.value.lower()}-1-abcde",
        phase="Succeeded",
        exit_code=0,
        termination_message=layer_message(layer),
    )
    return layer_job(layer, state="complete", pod=pod, finished=finished, **kwargs)


def training_pod(message: dict[str, Any] | str, phase: str = "Succeeded", **facts: Any) -> PodFacts:
    text = message if isinstance(message, str) else json.dumps(message)
    return PodFacts(name="exp-train-xyz", phase=phase, termination_message=text, **facts)


def training_job(
    state: str = "active",
    pod: PodFacts | None = None,
    *,
    suspended: bool = False,
    failed_reason: str = "",
    name: str = "exp",
) -> JobFacts:
    return JobFacts(
        name=names.training_job_name(name),
        labels=names.managed_labels(names.TRAINING, **{names.EXPERIMENT: name}),
        active=state == "active" and not suspended,
        suspended=suspended,
        complete=state == "complete",
        failed=state == "failed",
        failed_reason=failed_reason,
        start_time=NOW,
        finish_time=NOW if state in ("complete", "failed") else None,
        pods=(pod,) if pod else (),
    )
