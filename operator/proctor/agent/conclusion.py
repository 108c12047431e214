"""`conclude NAME --verdict --evidence --learnings`: write spec.conclusion, the record of what the
experiment showed, and report how the operator judged it.

Two judges, each with a message that teaches: the API server refuses a conclusion written
before the run ended (a CEL rule), and the operator refuses one that the run cannot support (for
example a verdict on a run an anomaly stopped) with the Concluded condition False. The write is
a merge patch of spec.conclusion alone, so it never touches the frozen rest of the spec.
"""

from __future__ import annotations

import time

from pydantic import ValidationError

from proctor.agent.connection import API_VERSION, Connection
from proctor.agent.errors import AgentError
from proctor.agent.models import ConcludeResult, ConclusionView, ExperimentReport
from proctor.agent.report import get_experiment, status
from proctor.api.manifests import field_errors
from proctor.api.v1alpha1 import ExperimentPhase
from proctor.api.v1alpha1.conditions import ExperimentConditionType, Reason
from proctor.api.v1alpha1.experiment import Conclusion
from proctor.kube import KubeError, RejectedError


def check_conclusion(verdict: str, evidence: str, learnings: str) -> Conclusion:
    """The conclusion as the API model reads it; an AgentError naming the field otherwise."""
    try:
        return Conclusion.model_validate(
            {"verdict": verdict, "evidence": evidence, "learnings": learnings}
        )
    except ValidationError as exc:
        raise AgentError(
            "the conclusion is not valid; nothing was written",
            "verdict is one of effective, ineffective, inconclusive; evidence cites the numbers "
            "(for example 'eval accuracy 0.962 vs 0.95 expected at step 300'); learnings say "
            "what the next experiment should take from this one",
            [str(e) for e in field_errors(exc)],
        ) from None


def conclude(
    connection: Connection,
    name: str,
    verdict: str,
    evidence: str,
    learnings: str,
    settle: float = 15.0,
) -> ConcludeResult:
    """Write the conclusion, then wait up to `settle` seconds for the operator's judgement."""
    conclusion = check_conclusion(verdict, evidence, learnings)
    get_experiment(connection, name)  # a missing name gets its own teaching error
    body = conclusion.model_dump(mode="json", by_alias=True)
    try:
        stored = connection.kube.patch(
            API_VERSION, "Experiment", connection.namespace, name, {"spec": {"conclusion": body}}
        )
    except RejectedError as exc:
        raise AgentError(
            f"the API server refused the conclusion of {name}: {exc}",
            f"wait for the run to end (`proctor wait {name} --for Succeeded,Failed`), then "
            "conclude it from the evidence",
            [f"{c['field']}: {c['message']}" for c in exc.causes if c["field"]],
        ) from None
    except KubeError as exc:
        raise AgentError(
            f"could not write the conclusion of {name}: {exc}",
            "check that the cluster answers (`kubectl get exp`), then conclude again",
        ) from None
    generation = int((stored.get("metadata") or {}).get("generation") or 0)
    report = _judged(connection, name, generation, settle)
    concluded = next((c for c in report.conditions if c.type == "Concluded"), None)
    if concluded is not None and concluded.reason == Reason.CONCLUSION_INVALID:
        raise AgentError(
            f"the operator refused the conclusion of {name}: {concluded.message}",
            f"conclude again with `proctor conclude {name} ...` as the message asks",
        )
    done = report.phase == ExperimentPhase.CONCLUDED
    return ConcludeResult(
        name=name,
        namespace=connection.namespace,
        phase=report.phase,
        conclusion=ConclusionView(**body),
        next=(
            f"concluded: state the next hypothesis and submit it citing {name} in "
            "spec.hypothesis.inspiredBy (kind: Experiment)"
            if done
            else f"written; the operator has not judged it yet: `proctor status {name}` shows "
            "the Concluded condition once it has"
        ),
    )


def _judged(connection: Connection, name: str, generation: int, settle: float) -> ExperimentReport:
    """The report once the operator has judged the conclusion (Concluded phase, or the Concluded
    condition refusing it for this generation), or as it stands after `settle` seconds."""
    deadline = time.monotonic() + settle
    while True:
        experiment = get_experiment(connection, name)
        report = status(connection, name)
        observed = int((experiment.get("status") or {}).get("observedGeneration") or 0)
        concluded = next(
            (c for c in report.conditions if c.type == ExperimentConditionType.CONCLUDED), None
        )
        judged = report.phase == ExperimentPhase.CONCLUDED or (
            concluded is not None
            and concluded.reason == Reason.CONCLUSION_INVALID
            and observed >= generation
        )
        if judged or time.monotonic() >= deadline:
            return report
        time.sleep(0.5)
