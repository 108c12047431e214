"""The operator writes a study's digest to object storage and links it from the study's
ConfigMap, every N concluded experiments (here 2, set on the ConfigMap by a person)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_guardrails import _experiment, _patch
from tests.support.operator import apply, get, phase, wait_for

pytestmark = [pytest.mark.kubectl, pytest.mark.slow]


def _run_and_conclude(cluster, tmp_path, name: str, lr: float) -> None:
    manifest = _experiment(
        name,
        tmp_path,
        study="tiny",
        training={"command": ["true"], "budget": {"maxSteps": 17}},
        code={"config": {"lr": lr}},
        recovery={"bundleURI": f"file://{tmp_path}/bundles"},
    )
    apply(cluster, manifest)
    wait_for(lambda: phase(cluster, f"experiment/{name}") == "Succeeded", 90, f"{name} done")
    conclusion = {"verdict": "ineffective", "evidence": f"lr {lr}: 0 steps", "learnings": "n/a"}
    _patch(cluster, name, {"spec": {"conclusion": conclusion}})
    wait_for(lambda: phase(cluster, f"experiment/{name}") == "Concluded", 60, f"{name} concluded")


def test_every_second_concluded_experiment_of_the_study_writes_its_digest(
    cluster, operator, tmp_path
):
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "proctor-study-tiny", "namespace": "default"},
        "data": {"digestEvery": "2"},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(configmap))
    _run_and_conclude(cluster, tmp_path, "tiny-a", 0.003)
    assert "digestURI" not in get(cluster, "configmap/proctor-study-tiny")["data"]

    _run_and_conclude(cluster, tmp_path, "tiny-b", 0.01)
    data = wait_for(
        lambda: "digestURI" in (d := get(cluster, "configmap/proctor-study-tiny")["data"]) and d,
        60,
        "the digest's link in the study ConfigMap",
    )
    prefix = f"file://{tmp_path}/bundles/default/studies/tiny"
    assert data["digestURI"] == f"{prefix}/digest.md"
    assert data["resultsURI"] == f"{prefix}/results.tsv"
    assert data["concluded"] == "2"
    assert data["digestEvery"] == "2"  # what the person set is kept
    digest = (tmp_path / "bundles/default/studies/tiny/digest.md").read_text()
    assert digest.startswith("# Study tiny: digest of 2 concluded experiments")
    results = (tmp_path / "bundles/default/studies/tiny/results.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in results] == ["name", "tiny-a", "tiny-b"]
