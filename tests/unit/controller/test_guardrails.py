"""The research guardrails, as pure decisions and through the Experiment reconcile."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from proctor.api.v1alpha1 import Experiment, ExperimentSpec
from proctor.controller import guardrails
from proctor.controller.experiment_reconcile import Observed, reconcile_experiment
from proctor.controller.settings import ControllerSettings
from tests.unit.controller.objects import experiment

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _obj(name: str, *, created: str = "2026-11-22T10:00:00Z", phase: str | None = None, **spec):
    obj = experiment(name, **spec)
    obj["metadata"]["creationTimestamp"] = created
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def _spec(obj: dict) -> ExperimentSpec:
    return ExperimentSpec.model_validate(obj["spec"])


def _check(obj: dict, *others: dict) -> guardrails.Block | None:
    return guardrails.check(Experiment.model_validate(obj), obj, list(others))


def _cites(*citations: dict) -> dict:
    base = experiment()["spec"]["hypothesis"]
    return {**base, "inspiredBy": list(citations)}


def _with_config(obj: dict, **config) -> dict:
    obj = copy.deepcopy(obj)
    obj["spec"]["code"]["config"] = {**obj["spec"]["code"]["config"], **config}
    return obj


def _in_study(obj: dict, study: str) -> dict:
    obj["metadata"]["labels"] = {guardrails.STUDY_LABEL: study}
    return obj


def _concluded(obj: dict, verdict: str = "ineffective") -> dict:
    obj = copy.deepcopy(obj)
    obj["status"] = {"phase": "Concluded"}
    obj["spec"]["conclusion"] = {"verdict": verdict, "evidence": "acc 0.91", "learnings": "x"}
    return obj


# ---- citations ---------------------------------------------------------------------------


def test_citing_an_experiment_that_does_not_exist_blocks_and_says_what_to_cite():
    obj = _obj("b", hypothesis=_cites({"kind": "Experiment", "ref": "ghost"}))
    block = _check(obj)
    assert block is not None
    assert block.reason == "CitationMissing"
    assert "'ghost', which does not exist" in block.message
    assert "Paper or a Note" in block.message
    assert _check(obj, _obj("ghost")) is None


def test_a_citation_must_not_be_blank_nor_the_experiment_itself():
    blank = _obj("b", hypothesis=_cites({"kind": "Paper", "ref": "   "}))
    assert _check(blank).reason == "CitationMissing"
    selfish = _obj("b", hypothesis=_cites({"kind": "Experiment", "ref": "b"}))
    assert "cites this experiment itself" in _check(selfish).message


def test_papers_and_notes_need_no_experiment():
    obj = _obj("b", hypothesis=_cites({"kind": "Paper", "ref": "arXiv:1412.6980"}))
    assert _check(obj) is None


# ---- single variable ---------------------------------------------------------------------


def test_a_baseline_that_does_not_exist_blocks():
    block = _check(_obj("b", baseline="base"))
    assert block.reason == "BaselineNotFound"
    assert "'base', which does not exist" in block.message


def test_changing_only_the_independent_variable_passes():
    base = _obj("base")
    child = _with_config(_obj("b", baseline="base"), hidden=512)  # the declared variable
    child["spec"]["hypothesis"]["independentVariable"] = "code.config.hidden"
    assert _check(child, base) is None


def test_changing_more_lists_every_other_difference():
    base = _obj("base")
    child = _with_config(_obj("b", baseline="base"), hidden=512, lr=0.01)
    child["spec"]["code"]["image"] = "registry.example/digits:2.0"
    child["spec"]["training"]["budget"]["maxSteps"] = 600
    child["spec"]["hypothesis"]["independentVariable"] = "code.config.hidden"
    block = _check(child, base)
    assert block.reason == "MultipleVariablesChanged"
    assert "code.config.lr, code.image, training.budget.maxSteps" in block.message
    assert "code.config.hidden" not in block.message.split("in: ")[1]
    child["spec"]["guardrails"] = {"allowMultipleChanges": {"reason": "a joint lr/size sweep"}}
    assert _check(child, base) is None


def test_where_it_runs_and_how_it_checkpoints_are_not_variables():
    base = _obj("base")
    child = _obj("b", baseline="base")
    child["spec"]["training"]["queueName"] = "other-queue"
    child["spec"]["training"]["checkpoint"] = {"uri": "s3://elsewhere/runs", "everySteps": 10}
    assert guardrails.differences(_spec(child), _spec(base)) == []


def test_a_whole_object_as_the_variable_still_changes_one_setting_at_a_time():
    base = _obj("base")
    child = _with_config(_obj("b", baseline="base"), hidden=512)
    child["spec"]["hypothesis"]["independentVariable"] = "code.config"
    assert _check(child, base) is None  # one setting changed: the variable covers it
    both = _with_config(child, lr=0.01)
    block = _check(both, base)
    assert block.reason == "MultipleVariablesChanged"
    assert "(code.config) covers 2 settings" in block.message
    assert "code.config.hidden, code.config.lr" in block.message
    both["spec"]["guardrails"] = {"allowMultipleChanges": {"reason": "a joint lr/size sweep"}}
    assert _check(both, base) is None


def test_an_experiment_that_changes_nothing_or_not_its_variable_is_blocked():
    base = _obj("base")
    same = _obj("b", baseline="base")
    same["spec"]["hypothesis"]["independentVariable"] = "code.config.lr"
    block = _check(same, base)
    assert block.reason == "VariableUnchanged"
    assert "code.config.lr, but it has the same value as in the baseline base" in block.message
    assert "as does everything else" in block.message
    other = _with_config(same, hidden=512)
    block = _check(other, base)
    assert block.reason == "VariableUnchanged"
    assert "(what differs is: code.config.hidden)" in block.message
    # allowMultipleChanges is about several variables, not none: it does not lift this one
    other["spec"]["guardrails"] = {"allowMultipleChanges": {"reason": "joint"}}
    assert _check(other, base).reason == "VariableUnchanged"


def test_spellings_of_the_same_setting_are_not_changes():
    base = _obj("base")
    base["spec"]["code"]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    base["spec"]["training"]["resources"] = {"cpu": "1", "memory": "1Gi", "gpus": 0}
    base["spec"]["training"]["budget"]["maxDuration"] = "1h"
    child = _with_config(_obj("b", baseline="base"), hidden=512)
    child["spec"]["hypothesis"]["independentVariable"] = "code.config.hidden"
    child["spec"]["code"]["env"] = [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    child["spec"]["training"]["resources"] = {"cpu": "1000m", "memory": "1024Mi", "gpus": 0}
    child["spec"]["training"]["budget"]["maxDuration"] = "60m"
    assert guardrails.differences(_spec(child), _spec(base)) == ["code.config.hidden"]
    assert _check(child, base) is None


def test_an_env_variable_is_a_variable_of_its_own():
    base = _obj("base")
    base["spec"]["code"]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    child = _obj("b", baseline="base")
    child["spec"]["code"]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]
    child["spec"]["hypothesis"]["independentVariable"] = "code.env.B"
    assert guardrails.differences(_spec(child), _spec(base)) == ["code.env.B.value"]
    assert _check(child, base) is None
    child["spec"]["hypothesis"]["independentVariable"] = "code.env.A"
    assert _check(child, base).reason == "VariableUnchanged"


# ---- do not retry ------------------------------------------------------------------------


def test_rerunning_a_concluded_experiment_blocks_naming_it_unless_allowed():
    done = _concluded(_obj("first"))
    again = _obj("again")
    block = _check(again, done)
    assert block.reason == "DuplicateOfConcluded"
    assert "as first, already concluded (ineffective)" in block.message
    again["spec"]["guardrails"] = {"allowRetry": {"reason": "seed variance"}}
    assert _check(again, done) is None


def test_a_different_setting_or_an_unconcluded_twin_is_not_a_retry():
    done = _concluded(_obj("first"))
    assert _check(_with_config(_obj("again"), lr=0.01), done) is None
    assert _check(_obj("again"), _obj("first", phase="Succeeded")) is None


def test_the_fingerprint_ignores_scheduling_key_order_env_order_and_spelling():
    a = _obj("a")["spec"]
    a["code"]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    b = copy.deepcopy(a)
    b["training"]["queueName"] = "q"
    b["code"]["config"] = dict(reversed(list(b["code"]["config"].items())))
    b["code"]["env"].reverse()
    b["training"]["budget"]["maxDuration"] = "60m"
    a["training"]["budget"]["maxDuration"] = "1h"
    fingerprint = guardrails.fingerprint
    assert fingerprint(ExperimentSpec.model_validate(a)) == fingerprint(
        ExperimentSpec.model_validate(b)
    )
    b["code"]["config"]["lr"] = 0.5
    assert fingerprint(ExperimentSpec.model_validate(a)) != fingerprint(
        ExperimentSpec.model_validate(b)
    )


def test_a_reordered_env_is_still_a_retry():
    done = _concluded(_obj("first"))
    done["spec"]["code"]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    again = _obj("again")
    again["spec"]["code"]["env"] = [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    assert _check(again, done).reason == "DuplicateOfConcluded"


# ---- conclude before the next ------------------------------------------------------------


def test_an_earlier_finished_unconcluded_experiment_of_the_study_blocks_the_next():
    earlier = _in_study(_obj("s1", phase="Succeeded", created="2026-11-22T09:00:00Z"), "lr")
    later = _in_study(_with_config(_obj("s2"), lr=0.01), "lr")
    block = _check(later, earlier)
    assert block.reason == "EarlierExperimentNotConcluded"
    assert block.message.startswith("conclude s1 first: patch spec.conclusion with verdict")
    assert _check(later, _concluded(earlier)) is None


def test_a_conclusion_the_operator_refused_does_not_unblock_the_next():
    earlier = _in_study(_obj("s1", phase="Failed", created="2026-11-22T09:00:00Z"), "lr")
    earlier["spec"]["conclusion"] = {"verdict": "effective", "evidence": "1", "learnings": "x"}
    earlier["status"]["conditions"] = [
        {"type": "Concluded", "status": "False", "reason": "ConclusionInvalid", "message": "m"}
    ]
    later = _in_study(_with_config(_obj("s2"), lr=0.01), "lr")
    assert _check(later, earlier).reason == "EarlierExperimentNotConcluded"


@pytest.mark.parametrize(
    ("phase", "study", "created"),
    [
        ("Training", "lr", "2026-11-22T09:00:00Z"),  # still running: nothing to conclude yet
        ("Succeeded", "other", "2026-11-22T09:00:00Z"),  # another study
        ("Succeeded", "lr", "2026-11-22T11:00:00Z"),  # created after this one
    ],
)
def test_only_earlier_finished_experiments_of_the_same_study_count(phase, study, created):
    other = _in_study(_obj("s1", phase=phase, created=created), study)
    assert _check(_in_study(_with_config(_obj("s2"), lr=0.01), "lr"), other) is None


# ---- through the reconcile ---------------------------------------------------------------


def _reconcile(obj: dict, *others: dict) -> dict:
    plan = reconcile_experiment(obj, Observed(neighbours=list(others)), NOW, ControllerSettings())
    return plan


def _blocked(status: dict) -> dict:
    return next(c for c in status["conditions"] if c["type"] == "Blocked")


def test_a_blocked_experiment_creates_nothing_and_unblocks_when_the_cause_is_gone():
    obj = _with_config(_obj("b", baseline="base"), hidden=512)
    obj["spec"]["hypothesis"]["independentVariable"] = "code.config.hidden"
    plan = _reconcile(obj)
    assert plan.status["phase"] == "Blocked"
    assert plan.create == []
    assert _blocked(plan.status)["reason"] == "BaselineNotFound"
    assert [e.reason for e in plan.events] == ["Blocked"]
    assert "does not exist" in plan.events[0].message  # the Event says why

    obj["status"] = plan.status
    plan = _reconcile(obj, _obj("base"))
    assert plan.status["phase"] == "Validating"
    assert _blocked(plan.status)["status"] == "False"
    assert [c["kind"] for c in plan.create] == ["ValidationPyramid"]


def test_a_new_cause_of_a_block_is_a_new_event_and_the_same_cause_is_not():
    obj = _with_config(_obj("b", baseline="base"), hidden=512)
    obj["spec"]["hypothesis"]["independentVariable"] = "code.config.hidden"
    plan = _reconcile(obj)
    assert _blocked(plan.status)["reason"] == "BaselineNotFound"
    obj["status"] = plan.status
    assert _reconcile(obj).events == []  # still the same cause: said once
    base = _obj("base")
    base["spec"]["code"]["image"] = "registry.example/digits:2.0"
    plan = _reconcile(obj, base)  # the baseline now exists, but differs in a second setting
    assert plan.status["phase"] == "Blocked"
    assert [e.reason for e in plan.events] == ["Blocked"]
    assert _blocked(plan.status)["reason"] == "MultipleVariablesChanged"
    assert "code.image" in plan.events[0].message


def test_guardrails_are_not_checked_once_the_experiment_started():
    obj = _obj("b", baseline="base", phase="Validating")
    plan = _reconcile(obj)  # the baseline is gone now; what ran is already on the record
    assert plan.status["phase"] != "Blocked"


# ---- conclusions -------------------------------------------------------------------------


def _stopped_by_anomaly(verdict: str, evidence: str) -> dict:
    obj = _obj("b")
    obj["status"] = {
        "phase": "Failed",
        "conditions": [
            {
                "type": "Trained",
                "status": "False",
                "reason": "StoppedOnAnomaly",
                "message": "stopped",
                "lastTransitionTime": "2026-11-22T11:00:00Z",
            }
        ],
        "anomalies": [
            {
                "kind": "NonFiniteLoss",
                "severity": "Critical",
                "time": "2026-11-22T10:59:00Z",
                "message": "loss nan at step 80",
                "bundleURI": "s3://bundles/ml/b/20261122T105900Z-nan_loss-abc123/",
            }
        ],
    }
    obj["spec"]["conclusion"] = {"verdict": verdict, "evidence": evidence, "learnings": "lower lr"}
    return obj


def test_a_run_stopped_by_an_anomaly_concludes_inconclusive_or_cites_its_bundle():
    refused = _reconcile(_stopped_by_anomaly("ineffective", "loss went to nan at step 80"))
    assert refused.status["phase"] == "Failed"
    concluded = next(c for c in refused.status["conditions"] if c["type"] == "Concluded")
    assert concluded["reason"] == "ConclusionInvalid"
    assert "s3://bundles/ml/b/20261122T105900Z-nan_loss-abc123/" in concluded["message"]

    inconclusive = _reconcile(_stopped_by_anomaly("inconclusive", "nan at step 80"))
    assert inconclusive.status["phase"] == "Concluded"
    cited = _reconcile(
        _stopped_by_anomaly(
            "ineffective", "nan at step 80, s3://bundles/ml/b/20261122T105900Z-nan_loss-abc123"
        )
    )
    assert cited.status["phase"] == "Concluded"


def test_evidence_without_numbers_is_refused_by_the_model():
    from pydantic import ValidationError

    from proctor.api.v1alpha1 import Conclusion

    with pytest.raises(ValidationError, match="must cite numbers"):
        Conclusion.model_validate(
            {"verdict": "effective", "evidence": "it worked well", "learnings": "keep it"}
        )


# ---- review findings: what one setting is, and variables outside what is compared --------


def test_adding_one_env_variable_or_config_object_is_one_setting():
    base = _obj("base")
    added = _obj("b", baseline="base")
    secret = {"secretKeyRef": {"name": "hf", "key": "token"}}
    added["spec"]["code"]["env"] = [{"name": "HF_TOKEN", "valueFrom": secret}]
    added["spec"]["hypothesis"]["independentVariable"] = "code.env.HF_TOKEN"
    assert _check(added, base) is None
    nested = _with_config(_obj("c", baseline="base"), schedule={"kind": "cosine", "warmup": 10})
    nested["spec"]["hypothesis"]["independentVariable"] = "code.config.schedule"
    assert _check(nested, base) is None


def test_where_it_runs_can_be_the_variable_and_is_compared_as_is():
    base = _obj("base")
    moved = _obj("b", baseline="base")
    moved["spec"]["training"]["scheduling"] = {"nodeSelector": {"gpu": "h100"}}
    moved["spec"]["hypothesis"]["independentVariable"] = "training.scheduling.nodeSelector"
    assert _check(moved, base) is None
    same = _obj("c", baseline="base")
    same["spec"]["hypothesis"]["independentVariable"] = "training.scheduling.nodeSelector"
    assert _check(same, base).reason == "VariableUnchanged"
    both = _with_config(moved, lr=0.01)
    block = _check(both, base)
    assert block.reason == "MultipleVariablesChanged"
    assert "code.config.lr" in block.message


def test_a_conclusion_not_yet_judged_does_not_unblock_the_next():
    earlier = _in_study(_obj("s1", phase="Succeeded", created="2026-11-22T09:00:00Z"), "lr")
    earlier["spec"]["conclusion"] = {
        "verdict": "effective",
        "evidence": "acc 0.97",
        "learnings": "x",
    }
    later = _in_study(_with_config(_obj("s2"), lr=0.01), "lr")
    assert _check(later, earlier).reason == "EarlierExperimentNotConcluded"
    earlier["status"]["phase"] = "Concluded"  # the operator accepted it
    assert _check(later, earlier) is None
