"""The study digest: deterministic files from a synthetic study of 12 experiments, compared
with golden copies (regenerate them with PROCTOR_UPDATE_GOLDEN=1 and read the diff)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from proctor.controller import study_digest
from tests.unit.controller.objects import experiment

GOLDEN = Path(__file__).parent / "golden"

# (name, variable, value, verdict, eval accuracy, evidence, learnings)
STUDY: list[tuple[str, str, Any, str, float | None]] = [
    ("lr-3e-3", "code.config.lr", 0.003, "effective", 0.953),
    ("lr-1e-2", "code.config.lr", 0.01, "ineffective", 0.912),
    ("lr-1e-3", "code.config.lr", 0.001, "effective", 0.961),
    ("lr-3e-4", "code.config.lr", 0.0003, "ineffective", 0.930),
    ("hidden-512", "code.config.hidden", 512, "effective", 0.968),
    ("hidden-1024", "code.config.hidden", 1024, "inconclusive", None),
    ("hidden-128", "code.config.hidden", 128, "ineffective", 0.941),
    ("batch-128", "code.config.batch_size", 128, "ineffective", 0.955),
    ("batch-32", "code.config.batch_size", 32, "effective", 0.965),
    ("steps-600", "training.budget.maxSteps", 600, "effective", 0.971),
    ("seed-1", "code.config.seed", 1, "inconclusive", 0.962),
    ("dropout", "code.config.dropout", 0.1, "ineffective", 0.949),
]


def _member(index: int, name: str, variable: str, value: Any, verdict: str, accuracy):
    obj = experiment(name)
    obj["metadata"]["creationTimestamp"] = f"2026-11-{index + 1:02d}T09:00:00Z"
    obj["metadata"]["labels"] = {"proctor.dev/study": "digits"}
    spec = obj["spec"]
    spec["hypothesis"]["independentVariable"] = variable
    node = spec
    *parents, leaf = variable.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    spec["conclusion"] = {
        "verdict": verdict,
        "evidence": f"eval accuracy {accuracy} at step 300" if accuracy else "NaN at step 40",
        "learnings": "keep it" if verdict == "effective" else "the loss diverged\tafter warmup",
    }
    training: dict[str, Any] = {"step": 300, "loss": round(0.05 + index / 100, 4), "mfu": 0.012}
    if accuracy is not None:
        training["lastEval"] = {"step": 300, "metrics": {"accuracy": accuracy, "loss": 0.2}}
    obj["status"] = {"phase": "Concluded", "training": training, "anomalyCount": index % 3}
    return obj


def _study() -> list[dict[str, Any]]:
    return [_member(i, *row) for i, row in enumerate(STUDY)]


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PROCTOR_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} drifted from its golden copy"


def test_the_digest_of_a_synthetic_study_matches_the_golden_files():
    table = study_digest.rows(_study())
    assert len(table) == 12
    _golden("study-results.tsv", study_digest.results_tsv(table))
    _golden("study-digest.md", study_digest.digest_md("digits", table))


def test_listing_order_does_not_change_a_byte():
    members = _study()
    shuffled = members[:]
    random.Random(7).shuffle(shuffled)
    a, b = study_digest.rows(members), study_digest.rows(shuffled)
    assert study_digest.digest_md("digits", a) == study_digest.digest_md("digits", b)
    assert study_digest.results_tsv(a) == study_digest.results_tsv(b)


def test_only_concluded_experiments_are_rows():
    members = _study()
    members[0]["status"]["phase"] = "Succeeded"
    names = [r.name for r in study_digest.rows(members)]
    assert "lr-3e-3" not in names
    assert len(names) == 11


def test_the_best_is_judged_by_eval_accuracy_higher_is_better():
    digest = study_digest.digest_md("digits", study_digest.rows(_study()))
    best = digest.split("## Current best\n\n")[1].splitlines()[0]
    assert best.startswith("steps-600 (`training.budget.maxSteps` = 600): eval accuracy 0.971")


@pytest.mark.parametrize(
    ("concluded", "recorded", "every", "due"),
    [
        (10, 0, 10, True),
        (11, 10, 10, False),
        (20, 10, 10, True),
        (9, 0, 10, False),
        (4, 2, 2, True),
    ],
)
def test_a_digest_is_due_each_time_the_count_crosses_a_multiple(concluded, recorded, every, due):
    assert study_digest.due(concluded, recorded, every) is due


def test_the_period_comes_from_the_configmap_then_the_newest_annotation_then_ten():
    members = _study()
    assert study_digest.digest_every(None, members) == 10
    members[-1]["metadata"]["annotations"] = {study_digest.EVERY_ANNOTATION: "4"}
    assert study_digest.digest_every(None, members) == 4
    assert study_digest.digest_every({"data": {"digestEvery": "3"}}, members) == 3
    assert study_digest.digest_every({"data": {"digestEvery": "often"}}, members) == 4
