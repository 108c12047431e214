"""How a local run ends: its exit code and its record as JSON (`--output json`, for agents)."""

from __future__ import annotations

from dataclasses import asdict
from enum import IntEnum
from typing import Any

from proctor.local.progress import RunView


class ExitCode(IntEnum):
    SUCCEEDED = 0  # every run succeeded
    FAILED = 1  # at least one run failed or is blocked by a guardrail
    INVALID = 2  # a manifest is invalid or the cluster refused it: nothing ran
    TIMED_OUT = 3  # --timeout passed before every run finished


def exit_code(views: list[RunView], timed_out: bool) -> ExitCode:
    if timed_out:
        return ExitCode.TIMED_OUT
    if all(view.succeeded for view in views):
        return ExitCode.SUCCEEDED
    return ExitCode.FAILED


def summary_json(
    views: list[RunView], *, elapsed: float, timed_out: bool, bundle_uri: str | None, log: str
) -> dict[str, Any]:
    """The whole outcome, one object: what each run did and where its bundles are."""
    return {
        "succeeded": exit_code(views, timed_out) == ExitCode.SUCCEEDED,
        "exitCode": int(exit_code(views, timed_out)),
        "timedOut": timed_out,
        "elapsedSeconds": round(elapsed, 1),
        "bundleURI": bundle_uri,
        "operatorLog": log,
        "runs": [_run(view) for view in views],
    }


def _run(view: RunView) -> dict[str, Any]:
    training = None
    if view.training is not None:
        training = {
            "job": view.training.job,
            "step": view.training.step,
            "maxSteps": view.training.max_steps,
            "loss": view.training.loss,
            "samplesPerSecond": view.training.samples_per_second,
            "mfu": view.training.mfu,
            "eval": view.training.eval,
        }
    return {
        "kind": view.kind,
        "name": view.name,
        "phase": view.phase,
        "succeeded": view.succeeded,
        "blocked": view.blocked,
        "reason": view.reason,
        "message": view.message,
        "pyramid": [
            {
                "layer": layer.layer,
                "phase": layer.phase,
                "message": layer.message,
                "checks": [asdict(check) for check in layer.checks],
            }
            for layer in view.layers
        ],
        "training": training,
        "anomalies": [
            {
                "kind": anomaly.kind,
                "severity": anomaly.severity,
                "step": anomaly.step,
                "message": anomaly.message,
                "bundleURI": anomaly.bundle_uri,
            }
            for anomaly in view.anomalies
        ],
    }
