"""The verbs an agent drives Proctor with: `submit`, `status`, `wait`, `bundles`, `conclude`,
`study`, and `bundle fetch` (registered by proctor.cli.bundle through add_fetch_parser).

Each verb is a thin shell over proctor.agent: the same typed result is printed readably, or as
JSON with `--output json` (docs/agents.md lists the shapes). An error is printed as what went
wrong plus a hint, or as {"error": ..., "hint": ...} on stdout under --output json, with a
non-zero exit code: 1 for an error; for `wait`, 3 when the experiment ended in another phase or
is blocked, 4 on timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from proctor.agent.errors import AgentError
from proctor.agent.models import AgentModel
from proctor.api.v1alpha1 import ExperimentPhase
from proctor.cli import agent_text

if TYPE_CHECKING:
    from proctor.agent.connection import Connection
    from proctor.agent.waiting import Progress

# The library (proctor.agent) needs the Kubernetes client, which the runner image does not carry:
# every image runs `proctor`, so it is imported when a verb runs, never when the parser is built.
PHASES = [phase.value for phase in ExperimentPhase]

EXIT_ERROR, EXIT_NOT_REACHED, EXIT_TIMED_OUT = 1, 3, 4
Verb = Callable[[argparse.Namespace], tuple[AgentModel, str, int]]


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the top-level agent verbs."""
    verb = _verb(commands, "submit", "validate a manifest offline, then create it", _submit)
    verb.add_argument("file", type=Path, metavar="FILE", help="an Experiment manifest (YAML)")

    verb = _verb(
        commands, "status", "an experiment's phase, pyramid, training and next step", _status
    )
    verb.add_argument("name", metavar="NAME")

    verb = _verb(commands, "wait", "block until an experiment reaches a phase", _wait)
    verb.add_argument("name", metavar="NAME")
    verb.add_argument(
        "--for",
        dest="phases",
        required=True,
        metavar="PHASE[,PHASE]",
        help=f"awaited phases, comma-separated: {', '.join(PHASES)}",
    )
    verb.add_argument(
        "--timeout", type=float, default=3600, help="seconds to wait at most (default 3600)"
    )
    verb.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)

    verb = _verb(commands, "bundles", "list an experiment's recovery bundles", _bundles)
    verb.add_argument("name", metavar="NAME")
    verb.add_argument(
        "--bundle-uri",
        help="the bundle store to list as well (default: spec.recovery.bundleURI, "
        "$PROCTOR_BUNDLE_URI)",
    )

    verb = _verb(commands, "conclude", "write an experiment's conclusion", _conclude)
    verb.add_argument("name", metavar="NAME")
    verb.add_argument(
        "--verdict", required=True, choices=["effective", "ineffective", "inconclusive"]
    )
    verb.add_argument("--evidence", required=True, help="the numbers behind the verdict")
    verb.add_argument("--learnings", required=True, help="what the next experiment should take")
    verb.add_argument(
        "--settle",
        type=float,
        default=15,
        help="seconds to wait for the operator's judgement of the conclusion (default 15)",
    )

    mcp = commands.add_parser(
        "mcp",
        help="serve the agent verbs as MCP tools on stdio (for agent harnesses)",
        description="An MCP server on stdio: tools submit, status, wait, bundles, fetch_bundle, "
        "conclude, study, and the resource proctor://experiments/{namespace}/{name}/recovery.",
    )
    mcp.add_argument(
        "-n", "--namespace", help="default namespace of the tools (default: the kubeconfig's)"
    )
    mcp.set_defaults(run=_mcp)

    verb = _verb(commands, "study", "the digest of a study's concluded experiments", _study)
    verb.add_argument("name", metavar="STUDY", help="the proctor.dev/study label's value")


def add_fetch_parser(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fetch` under the `bundle` command (proctor.cli.bundle owns that group)."""
    verb = _verb(
        verbs, "fetch", "download a recovery bundle into a directory", _fetch, remote=False
    )
    verb.add_argument(
        "uri", metavar="URI", help="the bundle's directory, as `proctor bundles` lists it"
    )
    verb.add_argument("directory", type=Path, metavar="DIR")


def _verb(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    verb: Verb,
    remote: bool = True,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "-o", "--output", choices=["text", "json"], default="text", help="json for programs"
    )
    if remote:
        parser.add_argument(
            "-n", "--namespace", help="default: the kubeconfig context's namespace (KUBECONFIG)"
        )
    parser.set_defaults(run=lambda args: _run(verb, args))
    return parser


def _run(verb: Verb, args: argparse.Namespace) -> int:
    try:
        result, text, code = verb(args)
    except AgentError as exc:
        if args.output == "json":
            print(json.dumps(exc.as_dict(), indent=2))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result.as_json(), indent=2) if args.output == "json" else text)
    return code


def _mcp(args: argparse.Namespace) -> int:
    try:
        from proctor.mcpserver.server import serve  # the `agent` extra: only this verb needs it
    except ImportError as exc:
        print(
            f"error: proctor mcp needs the MCP SDK ({exc})\n"
            "hint: pip install 'proctor[agent]' (make setup installs it)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    serve(args.namespace)
    return 0


def _connect(args: argparse.Namespace) -> Connection:
    from proctor.agent.connection import Connection

    return Connection.from_environment(args.namespace)


def _submit(args: argparse.Namespace) -> tuple[AgentModel, str, int]:
    from proctor.agent.submit import submit

    result = submit(_connect(args), args.file)
    return result, agent_text.submitted(result), 0


def _status(args: argparse.Namespace) -> tuple[AgentModel, str, int]:
    from proctor.agent.report import status

    result = status(_connect(args), args.name)
    return result, agent_text.report(result), 0


def _wait(args: argparse.Namespace) -> tuple[AgentModel, str, int]:
    from proctor.agent.waiting import parse_phases, wait

    awaited = parse_phases(args.phases)  # before connecting: a typo fails fast

    def progress(step: Progress) -> None:  # stderr, so stdout stays one JSON document
        print(f"{datetime.now():%H:%M:%S} {args.name}: {step.message}", file=sys.stderr, flush=True)

    result = wait(_connect(args), args.name, awaited, args.timeout, progress, args.interval)
    code = {"reached": 0, "timedOut": EXIT_TIMED_OUT}.get(result.outcome, EXIT_NOT_REACHED)
    return result, agent_text.waited(result), code


def _bundles(args: argparse.Namespace) -> tuple[AgentModel, str, int]:
    from proctor.agent.bundles import list_bundles

    result = list_bundles(_connect(args), args.name, args.bundle_uri)
    return result, agent_text.bundles(result), 0


def _fetch(args: argparse.Namespace) -> tuple[AgentModel, str, int]:
    from proctor.agent.bundles import fetch_bundle

    result = fetch_bundle(args.uri, args.directory)
    return result, agent_text.fetched(result), 0


def _conclude(args: argparse.Namespace) -> tuple[AgentModel, str, int]:
    from proctor.agent.conclusion import conclude

    result = conclude(
        _connect(args), args.name, args.verdict, args.evidence, args.learnings, args.settle
    )
    return result, agent_text.concluded(result), 0


def _study(args: argparse.Namespace) -> tuple[AgentModel, str, int]:
    from proctor.agent.study import study

    result = study(_connect(args), args.name)
    return result, agent_text.digest(result), 0
