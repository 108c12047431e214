"""How a local run ends: its exit code and its record as JSON (`--output json`, for agents)."""

from __future__ import annotations

from dataclasses import asdict
from enum import IntEnum
from typing import Any

from proctor.local.progress import RunView

PHASES = {"Succeeded", "Failed", "Concluded", "Blocked"}


class ExitCode(IntEnum):
    SUCCEEDED = 0  # every run ended as expected (Succeeded, unless --expect says otherwise)
    FAILED = 1  # at least one run did not: it failed, or is blocked by a guardrail
    INVALID = 2  # a manifest is invalid or the cluster refused it: nothing ran
    TIMED_OUT = 3  # --timeout passed before every run finished
    BROKEN = 4  # the local cluster or its operator broke: nothing more could be judged


def parse_expectations(items: list[str]) -> dict[str, str]:
    """`--expect NAME=PHASE` flags as {name: phase}; ValueError says how to write one."""
    expected = {}
    for item in items:
        name, _, phase = item.partition("=")
        if not name or phase not in PHASES:
            raise ValueError(
                f"--expect {item!r}: write NAME=PHASE, PHASE one of {', '.join(sorted(PHASES))}"
            )
        expected[name] = phase
    return expected


def as_expected(view: RunView, expected: dict[str, str]) -> bool:
    phase = view.phase
    wanted = expected.get(view.name)
    return view.succeeded if wanted is None else phase == wanted


def exit_code(
    views: list[RunView], timed_out: bool, expected: dict[str, str] | None = None
) -> ExitCode:
    if timed_out:
        return ExitCode.TIMED_OUT
    if all(as_expected(view, expected or {}) for view in views):
        return ExitCode.SUCCEEDED
    return ExitCode.FAILED


def summary_json(
    views: list[RunView],
    *,
    elapsed: float,
    timed_out: bool,
    bundle_uri: str | None,
    log: str,
    expected: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The whole outcome, one object: what each run did and where its bundles are."""
    code = exit_code(views, timed_out, expected)
    return {
        "succeeded": code == ExitCode.SUCCEEDED,
        "exitCode": int(code),
        "timedOut": timed_out,
        "elapsedSeconds": round(elapsed, 1),
        "bundleURI": bundle_uri,
        "operatorLog": log,
        "runs": [{**_run(view), "asExpected": as_expected(view, expected or {})} for view in views],
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
