"""Each research guardrail blocks an Experiment and lets it go once the cause is gone, on the
emulated cluster with the real operator. The experiments run no training code (validation
skipped on the record, `true` as the trainer, or parked in a Kueue queue that never admits), so
what is measured is the operator's decision."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.operator import apply, digits_experiment, get, phase, wait_for

pytestmark = [pytest.mark.kubectl, pytest.mark.slow]

PARKED = {"queueName": "parked"}  # no Kueue here: the Job stays suspended, the phase Queued


def _experiment(name: str, tmp, *, study: str | None = None, **changes: Any) -> dict[str, Any]:
    manifest = digits_experiment(
        name,
        tmp,
        validation={"skip": {"reason": "a guardrail test: no code needs to run"}},
        watchdog={"enabled": False},
        **changes,
    )
    manifest["spec"].pop("guardrails")  # the discipline applies here
    if study:
        manifest["metadata"]["labels"] = {"proctor.dev/study": study}
    return manifest


def _blocked(cluster, name: str) -> dict[str, Any] | None:
    status = get(cluster, f"experiment/{name}").get("status") or {}
    if status.get("phase") != "Blocked":
        return None
    return next(c for c in status["conditions"] if c["type"] == "Blocked")


def _patch(cluster, name: str, patch: dict[str, Any], check: bool = True):
    return cluster.kubectl(
        "patch", f"experiment/{name}", "--type=merge", "-p", json.dumps(patch), check=check
    )


def _left_blocked(cluster, name: str, phases: tuple[str, ...]) -> str:
    return wait_for(
        lambda: (
            phase(cluster, f"experiment/{name}") in phases and phase(cluster, f"experiment/{name}")
        ),
        60,
        f"{name} to leave Blocked for {phases}",
    )


def test_a_citation_of_a_missing_experiment_blocks_until_it_exists(cluster, operator, tmp_path):
    citing = _experiment("cites-ghost", tmp_path, training=PARKED)
    citing["spec"]["hypothesis"]["inspiredBy"] = [{"kind": "Experiment", "ref": "ghost"}]
    apply(cluster, citing)
    blocked = wait_for(lambda: _blocked(cluster, "cites-ghost"), 60, "cites-ghost Blocked")
    assert blocked["reason"] == "CitationMissing"
    assert "'ghost', which does not exist" in blocked["message"]

    apply(cluster, _experiment("ghost", tmp_path, training={**PARKED, "budget": {"maxSteps": 7}}))
    _left_blocked(cluster, "cites-ghost", ("Queued",))


def test_more_than_the_independent_variable_changed_blocks_until_made_equal(
    cluster, operator, tmp_path
):
    apply(cluster, _experiment("base", tmp_path, training={**PARKED, "budget": {"maxSteps": 11}}))
    child = _experiment(
        "wider",
        tmp_path,
        baseline="base",
        training={**PARKED, "budget": {"maxSteps": 11}},
        code={"config": {"hidden": 512, "lr": 0.01}},
    )
    apply(cluster, child)
    blocked = wait_for(lambda: _blocked(cluster, "wider"), 60, "wider Blocked")
    assert blocked["reason"] == "MultipleVariablesChanged"
    assert "differs from its baseline base in: code.config.lr." in blocked["message"]

    _patch(cluster, "wider", {"spec": {"code": {"config": {"lr": 0.003}}}})  # lr back to base's
    _left_blocked(cluster, "wider", ("Queued",))


def test_a_study_concludes_one_experiment_before_the_next_and_never_reruns_one(
    cluster, operator, tmp_path
):
    quick = {"command": ["true"], "budget": {"maxSteps": 13}}  # the "training" succeeds at once
    apply(cluster, _experiment("lr-a", tmp_path, study="lr", training=quick))
    wait_for(lambda: phase(cluster, "experiment/lr-a") == "Succeeded", 90, "lr-a Succeeded")

    apply(
        cluster,
        _experiment("lr-b", tmp_path, study="lr", training=quick, code={"config": {"lr": 0.01}}),
    )
    blocked = wait_for(lambda: _blocked(cluster, "lr-b"), 60, "lr-b Blocked")
    assert blocked["reason"] == "EarlierExperimentNotConcluded"
    assert blocked["message"].startswith("conclude lr-a first: patch spec.conclusion")

    # A conclusion without numbers is refused by the API server itself, saying why.
    vague = {"verdict": "effective", "evidence": "it worked", "learnings": "keep going"}
    refused = _patch(cluster, "lr-a", {"spec": {"conclusion": vague}}, check=False)
    assert refused.returncode != 0
    assert "must cite numbers" in refused.stderr

    conclusion = {"verdict": "inconclusive", "evidence": "exit 0 at step 0", "learnings": "n/a"}
    _patch(cluster, "lr-a", {"spec": {"conclusion": conclusion}})
    wait_for(lambda: phase(cluster, "experiment/lr-a") == "Concluded", 60, "lr-a Concluded")
    _left_blocked(cluster, "lr-b", ("Training", "Succeeded"))

    # The same code, config and training settings as lr-a, which is concluded: a retry.
    apply(cluster, _experiment("lr-a-again", tmp_path, training=quick))
    blocked = wait_for(lambda: _blocked(cluster, "lr-a-again"), 60, "lr-a-again Blocked")
    assert blocked["reason"] == "DuplicateOfConcluded"
    assert "as lr-a, already concluded (inconclusive)" in blocked["message"]
    _patch(
        cluster,
        "lr-a-again",
        {"spec": {"guardrails": {"allowRetry": {"reason": "measuring run-to-run variance"}}}},
    )
    _left_blocked(cluster, "lr-a-again", ("Training", "Succeeded"))
