"""Objects as the API server returns them in each stage of the demo, for the view tests."""

from __future__ import annotations

import copy
from typing import Any

import pytest

HYPOTHESIS = {
    "statement": "A warm restart helps.",
    "expectedOutcome": "accuracy above the baseline",
    "inspiredBy": [{"kind": "Paper", "ref": "SGDR"}],
    "independentVariable": "code.config.restart_factor",
    "controls": ["seed 0"],
}


def experiment(name: str, status: dict[str, Any], max_steps: int = 800) -> dict[str, Any]:
    return {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hypothesis": HYPOTHESIS,
            "training": {"budget": {"maxSteps": max_steps}},
        },
        "status": status,
    }


def check(name: str, verdict: str = "Passed", message: str = "fine") -> dict[str, Any]:
    return {"name": name, "verdict": verdict, "value": 1.0, "threshold": 2.0, "message": message}


def pyramid(name: str, layers: list[tuple[str, str, list[dict[str, Any]]]]) -> dict[str, Any]:
    return {
        "apiVersion": "proctor.dev/v1alpha1",
        "kind": "ValidationPyramid",
        "metadata": {"name": name, "namespace": "default"},
        "status": {
            "phase": "Failed" if any(p == "Failed" for _, p, _ in layers) else "Running",
            "layers": [
                {"layer": layer, "phase": phase, "checks": checks}
                for layer, phase, checks in layers
            ],
        },
    }


PASSED_LAYERS = [
    ("L0", "Passed", [check("throughput"), check("mfu")]),
    ("L1", "Passed", [check("gradients_present"), check("attention_entropy", "Skipped")]),
    ("L2", "Passed", [check("loss_reaches_target")]),
    ("L3", "Passed", [check("resume_matches")]),
]
DETACHED_LAYERS = [
    ("L0", "Passed", [check("throughput")]),
    (
        "L1",
        "Failed",
        [
            check("parameters_in_optimizer"),
            check(
                "gradients_present",
                "Failed",
                "2 of 4 parameters got no gradient (hidden.bias, hidden.weight): is their output "
                "detached?",
            ),
        ],
    ),
]
ANOMALY = {
    "kind": "NonFiniteLoss",
    "severity": "Critical",
    "time": "2026-11-22T08:00:00Z",
    "step": 410,
    "message": "The loss became nan at step 410.",
    "bundleURI": "file:///b/default/digits-lr-restart/20261122T080000Z-NonFiniteLoss-1/",
}


@pytest.fixture
def demo_objects() -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """The demo's three experiments as they end, each with its pyramid."""
    healthy = experiment(
        "digits-healthy",
        {
            "phase": "Succeeded",
            "validation": {"pyramidName": "digits-healthy"},
            "training": {"jobName": "digits-healthy-train", "step": 300, "loss": 0.0731},
            "conditions": [
                {
                    "type": "Trained",
                    "status": "True",
                    "reason": "TrainingSucceeded",
                    "message": "training finished at step 300",
                    "lastTransitionTime": "2026-11-22T08:01:00Z",
                }
            ],
        },
        max_steps=300,
    )
    detached = experiment(
        "digits-detached",
        {
            "phase": "Failed",
            "validation": {"pyramidName": "digits-detached"},
            "conditions": [
                {
                    "type": "Validated",
                    "status": "False",
                    "reason": "PyramidFailed",
                    "message": "validation pyramid digits-detached failed at L1",
                    "lastTransitionTime": "2026-11-22T08:00:30Z",
                }
            ],
        },
    )
    restart = experiment(
        "digits-lr-restart",
        {
            "phase": "Failed",
            "validation": {"pyramidName": "digits-lr-restart"},
            "training": {"jobName": "digits-lr-restart-train", "step": 390, "loss": 0.0466},
            "anomalies": [ANOMALY],
            "conditions": [
                {
                    "type": "Trained",
                    "status": "False",
                    "reason": "StoppedOnAnomaly",
                    "message": "stopped by the operator after NonFiniteLoss",
                    "lastTransitionTime": "2026-11-22T08:01:10Z",
                }
            ],
        },
    )
    return [
        (healthy, pyramid("digits-healthy", PASSED_LAYERS)),
        (detached, pyramid("digits-detached", DETACHED_LAYERS)),
        (restart, pyramid("digits-lr-restart", copy.deepcopy(PASSED_LAYERS))),
    ]
