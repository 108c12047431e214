"""A study's periodic distillation: `results.tsv` (one row per concluded experiment) and
`digest.md` (verdicts by independent variable, productive directions, the current best, open
questions), so an agent starting the next experiment reads one page, not fifty runs.

Pure and deterministic: the same experiments (as the API server returns them) give the same
bytes, whatever their listing order and whenever it runs.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from proctor.api.studies import DEFAULT_EVERY, EVERY_ANNOTATION, EVERY_KEY, digest_every
from proctor.api.v1alpha1 import ExperimentPhase

__all__ = ["DEFAULT_EVERY", "EVERY_ANNOTATION", "EVERY_KEY", "digest_every"]

VERDICTS = ("effective", "ineffective", "inconclusive")


@dataclass(frozen=True)
class Row:
    """One concluded experiment, as the digest sees it."""

    name: str
    created: str
    hypothesis: str
    variable: str
    value: str
    verdict: str
    evidence: str
    learnings: str
    step: int | None
    loss: float | None
    mfu: float | None
    evals: dict[str, float] = field(default_factory=dict)
    bundles: int = 0


def rows(experiments: Sequence[dict[str, Any]]) -> list[Row]:
    """The concluded experiments among `experiments`, oldest first."""
    concluded = [
        obj
        for obj in experiments
        if (obj.get("status") or {}).get("phase") == ExperimentPhase.CONCLUDED.value
        and (obj.get("spec") or {}).get("conclusion")
    ]
    concluded.sort(
        key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"])
    )
    return [_row(obj) for obj in concluded]


def _row(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    hypothesis, conclusion = spec.get("hypothesis") or {}, spec["conclusion"]
    training = status.get("training") or {}
    variable = str(hypothesis.get("independentVariable", ""))
    evals = ((training.get("lastEval") or {}).get("metrics")) or {}
    return Row(
        name=obj["metadata"]["name"],
        created=str(obj["metadata"].get("creationTimestamp") or ""),
        hypothesis=_one_line(hypothesis.get("statement", "")),
        variable=variable,
        value=_value_at(spec, variable),
        verdict=str(conclusion.get("verdict", "")),
        evidence=_one_line(conclusion.get("evidence", "")),
        learnings=_one_line(conclusion.get("learnings", "")),
        step=training.get("step"),
        loss=_number(training.get("loss")),
        mfu=_number(training.get("mfu")),
        evals={k: v for k, v in sorted(evals.items()) if _number(v) is not None},
        bundles=int(status.get("anomalyCount") or 0),
    )


def _value_at(spec: dict[str, Any], path: str) -> str:
    """The independent variable's value in this experiment's spec, as text."""
    node: Any = spec
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return "?"
        node = node[part]
    return _fmt(node)


def due(concluded: int, recorded: int, every: int) -> bool:
    """Whether a new digest is due: `concluded` crossed a multiple of `every` since the digest
    that covered `recorded` experiments."""
    return every > 0 and concluded // every > recorded // every


# ---- results.tsv ---------------------------------------------------------------------------


def results_tsv(table: Sequence[Row]) -> str:
    eval_keys = sorted({key for row in table for key in row.evals})
    header = [
        "name",
        "created",
        "hypothesis",
        "independent_variable",
        "value",
        "verdict",
        "step",
        "loss",
        "mfu",
        *(f"eval_{key}" for key in eval_keys),
        "bundles",
        "evidence",
    ]
    lines = ["\t".join(header)]
    for row in table:
        cells = [
            row.name,
            row.created,
            row.hypothesis,
            row.variable,
            row.value,
            row.verdict,
            _fmt(row.step),
            _fmt(row.loss),
            _fmt(row.mfu),
            *(_fmt(row.evals.get(key)) for key in eval_keys),
            str(row.bundles),
            row.evidence,
        ]
        lines.append("\t".join(_cell(cell) for cell in cells))
    return "\n".join(lines) + "\n"


# ---- digest.md -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Judge:
    """What "best" means for this study: the first metric every candidate can be compared on."""

    label: str
    higher_is_better: bool

    def score(self, row: Row) -> float | None:
        if self.label.startswith("eval "):
            return row.evals.get(self.label.removeprefix("eval "))
        return row.loss


def judge(table: Sequence[Row]) -> Judge | None:
    if any("accuracy" in row.evals for row in table):
        return Judge("eval accuracy", True)
    if any("loss" in row.evals for row in table):
        return Judge("eval loss", False)
    if any(row.loss is not None for row in table):
        return Judge("training loss", False)
    return None


def digest_md(study: str, table: Sequence[Row]) -> str:
    counts = {verdict: sum(row.verdict == verdict for row in table) for verdict in VERDICTS}
    out = [
        f"# Study {study}: digest of {len(table)} concluded experiments",
        "",
        f"{counts['effective']} effective, {counts['ineffective']} ineffective, "
        f"{counts['inconclusive']} inconclusive. One row per experiment: results.tsv, beside "
        "this file. Read this before proposing the next experiment of the study.",
        "",
        *_by_variable(table),
        *_directions(table),
        *_best(table),
        *_open_questions(table),
    ]
    return "\n".join(out).rstrip() + "\n"


def _by_variable(table: Sequence[Row]) -> list[str]:
    groups = _grouped(table)
    out = [
        "## Verdicts by independent variable",
        "",
        "| Independent variable | Experiments | Effective | Ineffective | Inconclusive |",
        "|---|---|---|---|---|",
    ]
    for variable, members in groups.items():
        tally = [sum(r.verdict == verdict for r in members) for verdict in VERDICTS]
        out.append(f"| `{variable}` | {len(members)} | " + " | ".join(map(str, tally)) + " |")
    return [*out, ""]


def _directions(table: Sequence[Row]) -> list[str]:
    out = ["## Which directions were productive", ""]
    for variable, members in _grouped(table).items():
        effective = [r for r in members if r.verdict == "effective"]
        ineffective = sorted({r.value for r in members if r.verdict == "ineffective"})
        if effective:
            where = "; ".join(f"{r.value} ({r.name}: {r.evidence})" for r in effective)
            line = f"- `{variable}`: effective at {where}."
        else:
            tried = ", ".join(sorted({r.value for r in members}))
            line = f"- `{variable}`: no effective change yet (tried {tried})."
        if ineffective and effective:
            line += f" Ineffective at {', '.join(ineffective)}."
        out.append(line)
    return [*out, ""]


def _best(table: Sequence[Row]) -> list[str]:
    out = ["## Current best", ""]
    how = judge(table)
    scored = [(how.score(r), r) for r in table] if how else []
    candidates = [(score, r) for score, r in scored if score is not None]
    if how is None or not candidates:
        return [*out, "No concluded experiment reported a comparable metric yet.", ""]
    sign = -1.0 if how.higher_is_better else 1.0
    score, best = min(candidates, key=lambda item: (sign * item[0], item[1].created, item[1].name))
    better = "higher" if how.higher_is_better else "lower"
    out.append(
        f"{best.name} (`{best.variable}` = {best.value}): {how.label} {_fmt(score)}, verdict "
        f"{best.verdict}. Judged by {how.label} ({better} is better), over the "
        f"{len(candidates)} experiments that report it."
    )
    return [*out, ""]


def _open_questions(table: Sequence[Row]) -> list[str]:
    out = ["## Open questions", ""]
    for row in table:
        if row.verdict == "inconclusive":
            out.append(f"- {row.name} was inconclusive: {row.learnings}")
    for variable, members in _grouped(table).items():
        if len(members) == 1:
            out.append(
                f"- `{variable}` was tried once ({members[0].name}, {members[0].verdict}): "
                "repeat it or vary it before building on it."
            )
    if len(out) == 2:
        out.append("- None recorded: every direction tried has a clear verdict.")
    return [*out, ""]


def _grouped(table: Sequence[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in table:
        groups[row.variable].append(row)
    return dict(sorted(groups.items()))


# ---- formatting ----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    """A TSV cell: no tabs or line breaks inside."""
    return " ".join(text.split("\t")).replace("\n", " ")
