"""The MCP server: one typed tool per agent verb, the recovery prompt as a resource.

Tool descriptions are where an agent learns the discipline, so they say when to call each tool
in the research loop, not only what it returns. A failure is a tool error whose text is the
AgentError's message and hint (the fix), so the model reads what to do next in the same turn.
`wait` blocks (in a worker thread, so the session keeps serving), sends a progress
notification on every change it sees, and stops polling when the client cancels it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import Field

from proctor.agent.bundles import fetch_bundle, list_bundles, recovery_prompt
from proctor.agent.conclusion import conclude
from proctor.agent.connection import Connection
from proctor.agent.errors import AgentError
from proctor.agent.models import (
    BundleList,
    ConcludeResult,
    ExperimentReport,
    FetchedBundle,
    StudyDigest,
    SubmitResult,
    WaitResult,
)
from proctor.agent.report import status
from proctor.agent.study import study
from proctor.agent.submit import submit, submit_text
from proctor.agent.waiting import Progress, wait
from proctor.api.v1alpha1 import ExperimentPhase

T = TypeVar("T")
RECOVERY_URI = "proctor://experiments/{namespace}/{name}/recovery"

INSTRUCTIONS = """\
Proctor runs ML experiments with discipline. Follow the loop, one experiment at a time:
1. Read the study's digest (study) and the last conclusions; state ONE hypothesis: a statement,
   an expected outcome with a number, what inspired it, the single independent variable, the
   controls. Change only that variable against spec.baseline.
2. submit the Experiment manifest. Field errors name the field: fix and submit again.
3. wait for Training,Succeeded,Failed. If it stops in Failed during validation, read status:
   pyramid.layers[].failedChecks each give value, threshold and the fix. Fix the code; conclude
   this experiment (usually inconclusive), then submit a new one citing it in inspiredBy.
4. wait for Succeeded,Failed. If anomalies were reported, read bundles and the recovery prompt
   resource (proctor://experiments/{namespace}/{name}/recovery) of the newest one: it says which
   stage to return to.
5. conclude with a verdict, evidence that cites numbers, and learnings, BEFORE submitting the
   next experiment of the study (the next one stays Blocked until you do).
Every answer carries `next`: the step the loop asks for now."""

Name = Annotated[str, Field(description="The Experiment's metadata.name.")]
Namespace = Annotated[
    str | None,
    Field(description="The namespace; default: the one `proctor mcp` was started with."),
]


def build_server(namespace: str | None = None) -> MCPServer:
    """The server, with every tool working in `namespace` unless a call names another."""
    server = MCPServer("proctor", instructions=INSTRUCTIONS, log_level="WARNING")

    def connect(override: str | None) -> Connection:
        return Connection.from_environment(override or namespace)

    @server.tool(
        name="submit",
        description="Submit an Experiment manifest (YAML text in `manifest`, or a file `path`). "
        "Write the hypothesis first: spec.hypothesis.statement, expectedOutcome with a number, "
        "inspiredBy, the ONE independentVariable, controls. The manifest is checked against "
        "the API offline first; an error lists each field at fault and nothing is created.",
    )
    def submit_tool(
        manifest: Annotated[
            str | None, Field(description="The manifest as YAML text (one or more documents).")
        ] = None,
        path: Annotated[str | None, Field(description="Or: a manifest file's path.")] = None,
        namespace: Namespace = None,
    ) -> SubmitResult:
        if (manifest is None) == (path is None):
            raise ToolError("give exactly one of `manifest` (YAML text) or `path` (a file)")
        connection = _teach(lambda: connect(namespace))
        if manifest is not None:
            return _teach(lambda: submit_text(connection, manifest))
        return _teach(lambda: submit(connection, Path(str(path))))

    @server.tool(
        name="status",
        description="An experiment's phase, conditions, pyramid per layer (failedChecks carry "
        "value, threshold and the fix), training progress, anomalies with bundle URIs, the "
        "conclusion, and `next`: what the research loop asks for now. Read the pyramid's "
        "failures before changing any code.",
    )
    def status_tool(name: Name, namespace: Namespace = None) -> ExperimentReport:
        return _teach(lambda: status(connect(namespace), name))

    @server.tool(
        name="wait",
        description="Block until the experiment reaches one of `phases` (for example "
        "['Succeeded', 'Failed']), sending a progress notification on each change (layer, "
        "step, anomalies). Returns at once, with reached=false, when it ends in another phase "
        "or is Blocked by a guardrail (waiting cannot lift it: read status.next); "
        "outcome=timedOut after `timeout` seconds, and you may simply wait again.",
    )
    async def wait_tool(
        name: Name,
        phases: Annotated[
            list[ExperimentPhase], Field(min_length=1, description="Awaited phases.")
        ],
        ctx: Context,
        timeout: Annotated[float, Field(gt=0, le=86400, description="Seconds, at most.")] = 1800,
        namespace: Namespace = None,
    ) -> WaitResult:
        cancelled = threading.Event()

        def progress(step: Progress) -> None:
            if not cancelled.is_set():
                anyio.from_thread.run(ctx.report_progress, step.count, None, step.message)

        def blocking() -> WaitResult:
            awaited = [p.value for p in phases]
            return _teach(
                lambda: wait(connect(namespace), name, awaited, timeout, progress, cancel=cancelled)
            )

        # A client's notifications/cancelled cancels this task: abandon the thread at once and
        # tell it to stop, so it neither polls on until `timeout` nor holds a worker thread.
        try:
            return await anyio.to_thread.run_sync(blocking, abandon_on_cancel=True)
        finally:
            cancelled.set()

    @server.tool(
        name="bundles",
        description="The experiment's recovery bundles (the watchdog writes one per anomaly), "
        "oldest first, from status.anomalies and the bundle store: kind, time, URI, summary. "
        "Read the newest one's recovery prompt before deciding what to change.",
    )
    def bundles_tool(
        name: Name,
        namespace: Namespace = None,
        bundle_uri: Annotated[
            str | None, Field(description="Another bundle store to list (s3:// or file://).")
        ] = None,
    ) -> BundleList:
        return _teach(lambda: list_bundles(connect(namespace), name, bundle_uri))

    @server.tool(
        name="fetch_bundle",
        description="Download a bundle (its URI, as `bundles` lists it) into a local directory: "
        "bundle.json (metric window, pyramid results, log tail), metrics.png and recovery.md.",
    )
    def fetch_bundle_tool(
        uri: Annotated[str, Field(description="The bundle's directory URI.")],
        directory: Annotated[str, Field(description="A local directory to write into.")],
        namespace: Namespace = None,
    ) -> FetchedBundle:
        # With the connection, only a bundle of an experiment of this namespace, in one of its
        # bundle stores, is read: a URI from a prompt cannot reach another tenant's objects.
        return _teach(lambda: fetch_bundle(uri, Path(directory), connect(namespace)))

    @server.tool(
        name="conclude",
        description="Write the experiment's conclusion once it has ended (Succeeded or "
        "Failed), before submitting the next experiment of its study. verdict: effective, "
        "ineffective or inconclusive; evidence: the numbers (for example 'eval accuracy 0.962 "
        "vs 0.95 expected at step 300'); learnings: what the next experiment takes from it. A "
        "run an anomaly stopped concludes inconclusive, or its evidence cites the bundle URI.",
    )
    def conclude_tool(
        name: Name,
        verdict: Literal["effective", "ineffective", "inconclusive"],
        evidence: Annotated[str, Field(min_length=1, description="The numbers.")],
        learnings: Annotated[str, Field(min_length=1, description="What to take forward.")],
        namespace: Namespace = None,
    ) -> ConcludeResult:
        return _teach(lambda: conclude(connect(namespace), name, verdict, evidence, learnings))

    @server.tool(
        name="study",
        description="The digest of a study (the proctor.dev/study label): verdicts by "
        "independent variable, productive directions, the current best, open questions. Read "
        "it before stating a new hypothesis so you do not repeat a concluded experiment.",
    )
    def study_tool(
        name: Annotated[str, Field(description="The study's name.")],
        namespace: Namespace = None,
    ) -> StudyDigest:
        return _teach(lambda: study(connect(namespace), name))

    @server.resource(
        RECOVERY_URI,
        name="recovery",
        description="The recovery prompt (recovery.md) of the experiment's newest bundle: what "
        "the watchdog saw and which stage of the loop to return to.",
        mime_type="text/markdown",
    )
    def recovery_resource(namespace: str, name: str) -> str:
        try:
            _, text = recovery_prompt(Connection.from_environment(namespace), name)
        except AgentError as exc:
            raise ResourceError(str(exc)) from None
        return text

    return server


def _teach(call: Callable[[], T]) -> T:
    """`call()`, its AgentError turned into a tool error that carries the hint."""
    try:
        return call()
    except AgentError as exc:
        raise ToolError(str(exc)) from None


def serve(namespace: str | None = None) -> None:
    """Serve on stdio until the client closes the stream."""
    build_server(namespace).run("stdio")
