"""`wait NAME --for PHASE[,PHASE]`: block until the experiment reaches an awaited phase, reporting
progress on the way.

A wait never outlives its point: it returns at once when the experiment ends in a phase that
was not awaited (waiting longer cannot change a final phase) or is Blocked by a guardrail (only
the agent can lift it), each with the report that says what happened. It polls `status`: one GET
of the Experiment and one of its pyramid per interval, as cheap as a watch for one object and
immune to dropped watch streams.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from proctor.agent.connection import Connection
from proctor.agent.errors import AgentError
from proctor.agent.models import ExperimentReport, WaitOutcome, WaitResult
from proctor.agent.report import status
from proctor.api.v1alpha1 import ExperimentPhase

FINAL_PHASES = frozenset(
    {ExperimentPhase.SUCCEEDED, ExperimentPhase.FAILED, ExperimentPhase.CONCLUDED}
)
PHASES = [p.value for p in ExperimentPhase]


@dataclass(frozen=True)
class Progress:
    """One step of a wait: `count` grows by one per change seen (MCP wants a rising number),
    `message` says what changed."""

    count: int
    message: str
    report: ExperimentReport


def parse_phases(text: str | list[str]) -> list[str]:
    """Awaited phases from "Succeeded,Failed" (or a list), spelled as the API spells them;
    an AgentError listing the valid ones otherwise."""
    items = text.split(",") if isinstance(text, str) else text
    phases = [item.strip() for item in items if item.strip()]
    by_lower = {p.lower(): p for p in PHASES}
    unknown = [p for p in phases if p.lower() not in by_lower]
    if unknown or not phases:
        raise AgentError(
            f"cannot wait for {', '.join(unknown) or 'no phase'}: not an Experiment phase",
            f"name one or more of {', '.join(PHASES)}, comma-separated "
            "(for example --for Succeeded,Failed)",
        )
    return [by_lower[p.lower()] for p in phases]


def decide(report: ExperimentReport, awaited: list[str]) -> WaitOutcome | None:
    """Whether the wait ends now, and how; None to keep waiting."""
    if report.phase in awaited:
        return "reached"
    if report.phase in FINAL_PHASES:
        # A conclusion can still follow Succeeded or Failed; nothing follows Concluded.
        ended = report.phase == ExperimentPhase.CONCLUDED or "Concluded" not in awaited
        return "ended" if ended else None
    if report.phase == ExperimentPhase.BLOCKED:
        return "blocked"
    return None


def describe(report: ExperimentReport) -> str:
    """One line of progress: the phase and what moves inside it."""
    parts = [report.phase]
    pyramid = report.pyramid
    if report.phase == ExperimentPhase.VALIDATING and pyramid is not None:
        if pyramid.current_layer:
            parts.append(f"layer {pyramid.current_layer}")
        done = [layer.layer for layer in pyramid.layers if layer.phase == "Passed"]
        if done:
            parts.append(f"passed {', '.join(done)}")
    training = report.training
    if training is not None and training.step is not None:
        total = f"/{training.max_steps}" if training.max_steps else ""
        parts.append(f"step {training.step}{total}")
        if training.loss is not None:
            parts.append(f"loss {training.loss:.4g}")
    if report.anomaly_count:
        parts.append(f"{report.anomaly_count} anomalies")
    return ", ".join(parts)


class WaitCancelledError(Exception):
    """The caller gave up on the wait (`cancel` was set): nobody reads a result any more."""


def wait(
    connection: Connection,
    name: str,
    awaited: list[str],
    timeout: float,
    on_progress: Callable[[Progress], None] | None = None,
    interval: float = 1.0,
    cancel: threading.Event | None = None,
) -> WaitResult:
    """Wait up to `timeout` seconds for Experiment `name` to reach one of `awaited`.

    `cancel`, set from another thread, ends the wait within one poll (WaitCancelledError): a client
    that cancels a long wait must not leave it polling the API server until its timeout."""
    awaited = parse_phases(awaited)
    cancel = cancel or threading.Event()
    start = time.monotonic()
    last = ""
    count = 0
    while True:
        if cancel.is_set():
            raise WaitCancelledError(name)
        report = status(connection, name)
        line = describe(report)
        if line != last and on_progress is not None:
            count += 1
            on_progress(Progress(count, line, report))
        last = line
        outcome = decide(report, awaited)
        elapsed = time.monotonic() - start
        if outcome is None and elapsed >= timeout:
            outcome = "timedOut"
        if outcome is not None:
            return WaitResult(
                reached=outcome == "reached",
                outcome=outcome,
                awaited=awaited,
                waited_seconds=round(elapsed, 1),
                status=report,
            )
        cancel.wait(min(interval, max(0.0, timeout - elapsed)))
