"""Entry point of the `proctor` command; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from proctor.cli import (
    agent,
    bundle,
    cluster,
    controller,
    crds,
    local,
    pyramid,
    train,
    validate,
    watchdog,
)


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_usage(sys.stderr)
        print("proctor: name a command; `proctor --help` lists them", file=sys.stderr)
        return 2
    code: int = args.run(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proctor",
        description="Run ML experiments with discipline: hypothesis, validation pyramid, watched "
        "training, conclusion.",
    )
    parser.add_argument("--version", action="version", version=f"proctor {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    bundle.add_parser(commands)
    cluster.add_parser(commands)
    crds.add_parser(commands)
    local.add_parser(commands)
    controller.add_parser(commands)
    pyramid.add_parser(commands)
    train.add_parser(commands)
    validate.add_parser(commands)
    watchdog.add_parser(commands)
    # The agent's verbs: submit, status, wait, bundles, conclude, study (docs/agents.md).
    agent.add_parsers(commands)
    return parser


def _version() -> str:
    try:
        return version("proctor")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
