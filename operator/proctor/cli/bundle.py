"""`proctor bundle show PATH|URI`: a recovery bundle for a person (or, with --output json, an
agent): the summary, the finding, where the plot is, and the recovery prompt. The group also holds
`proctor bundle fetch` (proctor.cli.agent), which downloads one."""

from __future__ import annotations

import argparse
import json
import sys

from proctor.cli import agent


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bundle = commands.add_parser("bundle", help="read the recovery bundles the watchdog writes")
    verbs = bundle.add_subparsers(title="bundle commands", metavar="COMMAND", required=True)
    show = verbs.add_parser(
        "show",
        help="render a bundle: summary, finding, plot path, recovery prompt",
        description="TARGET: a bundle's directory (a path, file:// or s3:// URI, as "
        "status.anomalies[].bundleURI names it), its bundle.json, or a directory above bundles "
        "(the newest below it is shown).",
    )
    show.add_argument("target", metavar="PATH|URI")
    show.add_argument("--output", choices=("text", "json"), default="text")
    show.add_argument("--no-prompt", action="store_true", help="leave out recovery.md")
    show.set_defaults(run=_show)
    agent.add_fetch_parser(verbs)


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console

    from proctor.local.bundles import BundleError, bundle_json, load_bundle, render_bundle

    try:
        loaded = load_bundle(args.target)
    except BundleError as exc:
        print(f"proctor bundle show: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(bundle_json(loaded), indent=2))
    else:
        Console().print(render_bundle(loaded, prompt=not args.no_prompt))
    return 0
