"""The research guardrails: what must hold before an Experiment may spend compute.

Checked while an Experiment has not started (Pending or Blocked); a violation keeps it Blocked
with a message that says what to change. Pure functions over the Experiment and the other
Experiments of its namespace, as the API server returned them (wire form), so an unreadable
neighbour is skipped rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from proctor.api.studies import STUDY_LABEL
from proctor.api.v1alpha1 import (
    CitationKind,
    Experiment,
    ExperimentPhase,
    ExperimentSpec,
    Reason,
    duration_seconds,
    quantity_value,
)

# What ran, for the single-variable and do-not-retry guardrails: the code and the training
# settings. Where and how it was scheduled and checkpointed does not change what it measures.
_TRAINING_IGNORED = {"queue_name", "scheduling", "checkpoint", "service_account_name"}
_QUANTITIES = ("cpu", "memory", "sharedMemory")
_FINISHED = (ExperimentPhase.SUCCEEDED.value, ExperimentPhase.FAILED.value)


@dataclass(frozen=True)
class Block:
    """Why an Experiment may not start yet, and what to do about it."""

    reason: Reason
    message: str


GUARDRAIL_REASONS = (
    Reason.CITATION_MISSING,
    Reason.BASELINE_NOT_FOUND,
    Reason.MULTIPLE_VARIABLES_CHANGED,
    Reason.VARIABLE_UNCHANGED,
    Reason.DUPLICATE_OF_CONCLUDED,
    Reason.EARLIER_EXPERIMENT_NOT_CONCLUDED,
)


def what_ran(spec: ExperimentSpec) -> dict[str, Any]:
    """What decides what an experiment measures, in one spelling: defaults filled in by the
    model, env keyed by name (its order is not a setting), quantities as amounts ("1Gi" is
    "1024Mi") and the time budget in seconds ("1h" is "60m")."""
    env = {
        var.name: var.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"name"})
        for var in spec.code.env
    }
    training = spec.training.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude=_TRAINING_IGNORED
    )
    resources = training.get("resources") or {}
    for key in _QUANTITIES:
        if key in resources:
            resources[key] = format(quantity_value(resources[key]).normalize(), "f")
    budget = training.get("budget") or {}
    if "maxDuration" in budget:
        budget["maxDuration"] = duration_seconds(budget["maxDuration"])
    code = spec.code
    return {
        "code": {
            "image": code.image,
            "entrypoint": code.entrypoint,
            "config": code.config,
            "env": env,
        },
        "training": training,
    }


def fingerprint(spec: ExperimentSpec) -> str:
    """A stable hash of what ran: equal for two experiments that would run the same thing."""
    canonical = json.dumps(what_ran(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def differences(spec: ExperimentSpec, baseline: ExperimentSpec) -> list[str]:
    """Dotted paths (under spec) where what ran differs; lists compare as a whole."""
    mine, theirs = dict(_leaves(what_ran(spec))), dict(_leaves(what_ran(baseline)))
    return sorted(
        path for path in mine.keys() | theirs.keys() if mine.get(path) != theirs.get(path)
    )


def readable_spec(obj: dict[str, Any]) -> ExperimentSpec | None:
    """A neighbour's spec as the model reads it; None if it does not read (then it is skipped:
    an experiment that cannot run is neither a baseline to compare with nor a duplicate)."""
    try:
        return ExperimentSpec.model_validate(obj.get("spec") or {})
    except ValidationError:
        return None


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf; an empty map has none (no entries, as if absent)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{path}.{key}" if path else str(key))
    else:
        yield path, value


def setting(path: str) -> str:
    """The setting a changed leaf belongs to: one config key or one env variable is one setting,
    however many fields it holds (an env var's valueFrom, a nested config object)."""
    parts = path.split(".")
    if parts[:2] in (["code", "config"], ["code", "env"]) and len(parts) > 3:
        return ".".join(parts[:3])
    return path


def _compared(variable: str) -> bool:
    """Whether `variable` lies in what the comparison covers (code, and the training settings
    other than where and how it runs)."""
    parts = variable.split(".")
    if parts[0] == "code":
        return True
    ignored = {_camel(key) for key in _TRAINING_IGNORED}
    return parts[0] == "training" and (len(parts) == 1 or parts[1] not in ignored)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _value_at(spec: ExperimentSpec, path: str) -> Any:
    """The value at a dotted path under spec, in the wire form; None where it is absent."""
    value: Any = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _within(path: str, variable: str) -> bool:
    """Whether a difference at `path` is a change of `variable` (the same field, or inside it;
    or a whole list that contains it)."""
    return path == variable or path.startswith(f"{variable}.") or variable.startswith(f"{path}.")


def check(
    experiment: Experiment, obj: dict[str, Any], others: Sequence[dict[str, Any]]
) -> Block | None:
    """The first guardrail `obj` violates, given the other Experiments of its namespace."""
    name = obj["metadata"]["name"]
    by_name = {o["metadata"]["name"]: o for o in others if o["metadata"]["name"] != name}
    return (
        _citations(experiment, name, by_name)
        or _single_variable(experiment, by_name)
        or _not_a_retry(experiment, by_name)
        or _earlier_concluded(obj, by_name)
    )


def _citations(
    experiment: Experiment, name: str, by_name: dict[str, dict[str, Any]]
) -> Block | None:
    for citation in experiment.spec.hypothesis.inspired_by:
        ref = citation.ref.strip()
        if not ref:
            return Block(
                Reason.CITATION_MISSING,
                f"spec.hypothesis.inspiredBy has an empty {citation.kind.value} citation: say "
                "where the idea came from (a prior Experiment's name, a paper, or a note)",
            )
        if citation.kind != CitationKind.EXPERIMENT:
            continue
        if ref == name:
            return Block(
                Reason.CITATION_MISSING,
                "spec.hypothesis.inspiredBy cites this experiment itself: cite the earlier "
                "experiment, paper or note the idea came from",
            )
        if ref not in by_name:
            return Block(
                Reason.CITATION_MISSING,
                f"spec.hypothesis.inspiredBy cites Experiment {ref!r}, which does not exist in "
                "this namespace: cite an existing one (kubectl get experiments), or cite a "
                "Paper or a Note instead",
            )
    return None


def _single_variable(experiment: Experiment, by_name: dict[str, dict[str, Any]]) -> Block | None:
    baseline_name = experiment.spec.baseline
    if baseline_name is None:
        return None
    if baseline_name not in by_name:
        return Block(
            Reason.BASELINE_NOT_FOUND,
            f"spec.baseline names Experiment {baseline_name!r}, which does not exist in this "
            "namespace: name an existing experiment (kubectl get experiments), or remove "
            "spec.baseline",
        )
    baseline = readable_spec(by_name[baseline_name])
    if baseline is None:
        return Block(
            Reason.BASELINE_NOT_FOUND,
            f"spec.baseline names Experiment {baseline_name!r}, whose spec this operator cannot "
            "read (kubectl describe experiment it for why): name another baseline",
        )
    variable = experiment.spec.hypothesis.independent_variable
    changed = differences(experiment.spec, baseline)
    if _compared(variable):
        inside = sorted({setting(path) for path in changed if _within(path, variable)})
        outside = sorted({setting(path) for path in changed if not _within(path, variable)})
    else:  # where it runs (training.scheduling...): a variable of its own, compared as is
        varies = _value_at(experiment.spec, variable) != _value_at(baseline, variable)
        inside, outside = ([variable] if varies else []), sorted(set(map(setting, changed)))
    if not inside:
        return Block(
            Reason.VARIABLE_UNCHANGED,
            f"hypothesis.independentVariable is {variable}, but it has the same value as in the "
            f"baseline {baseline_name}"
            + (
                f" (what differs is: {_listed(outside)})"
                if outside
                else ", as does everything else"
            )
            + ": change the variable the hypothesis is about, or name the one you changed",
        )
    if experiment.spec.guardrails.allow_multiple_changes is not None:
        return None
    if outside:
        return Block(
            Reason.MULTIPLE_VARIABLES_CHANGED,
            f"besides hypothesis.independentVariable ({variable}), this experiment differs from "
            f"its baseline {baseline_name} in: {_listed(outside)}. Change one variable at a time: "
            "make these equal to the baseline, or declare the variable you meant, or set "
            "spec.guardrails.allowMultipleChanges.reason to say why several must change together",
        )
    if len(inside) > 1:
        return Block(
            Reason.MULTIPLE_VARIABLES_CHANGED,
            f"hypothesis.independentVariable ({variable}) covers {len(inside)} settings that "
            f"differ from the baseline {baseline_name}: {_listed(inside)}. Change one at a time "
            "and name it, or set spec.guardrails.allowMultipleChanges.reason to say why they "
            "must change together",
        )
    return None


def _listed(paths: list[str], limit: int = 20) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def _not_a_retry(experiment: Experiment, by_name: dict[str, dict[str, Any]]) -> Block | None:
    if experiment.spec.guardrails.allow_retry is not None:
        return None
    mine = fingerprint(experiment.spec)
    for other_name, other in sorted(by_name.items()):
        if (other.get("status") or {}).get("phase") != ExperimentPhase.CONCLUDED.value:
            continue  # only concluded neighbours are read: few, however large the namespace
        spec = readable_spec(other)
        if spec is not None and fingerprint(spec) == mine:
            verdict = spec.conclusion.verdict.value if spec.conclusion else "?"
            return Block(
                Reason.DUPLICATE_OF_CONCLUDED,
                f"this experiment runs the same code, config and training settings as "
                f"{other_name}, already concluded ({verdict}): read its conclusion (kubectl get "
                f"experiment {other_name} -o yaml) and change something worth testing, or set "
                "spec.guardrails.allowRetry.reason (a seed sweep, a flaky node) to run it again",
            )
    return None


def _earlier_concluded(obj: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> Block | None:
    study = (obj["metadata"].get("labels") or {}).get(STUDY_LABEL)
    if not study:
        return None
    mine = _created(obj)
    waiting = sorted(
        (_created(other), other_name)
        for other_name, other in by_name.items()
        if (other["metadata"].get("labels") or {}).get(STUDY_LABEL) == study
        and _created(other) < mine
        # Succeeded or Failed is not concluded yet, even with a conclusion written: the
        # operator has not judged it (a refused one keeps the phase), and only Concluded counts.
        and (other.get("status") or {}).get("phase") in _FINISHED
    )
    if not waiting:
        return None
    earlier = waiting[0][1]
    return Block(
        Reason.EARLIER_EXPERIMENT_NOT_CONCLUDED,
        f"conclude {earlier} first: patch spec.conclusion with verdict, evidence, learnings "
        f"(proctor conclude {earlier} --verdict ... --evidence ... --learnings ...). Study "
        f"{study} runs one question at a time; this experiment starts once it is concluded",
    )


def _created(obj: dict[str, Any]) -> tuple[str, str]:
    """Creation order; RFC 3339 UTC timestamps sort as strings, the name breaks ties."""
    meta = obj["metadata"]
    return (str(meta.get("creationTimestamp") or ""), str(meta["name"]))
