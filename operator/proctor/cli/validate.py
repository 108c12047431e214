"""`proctor validate FILE...`: check manifests against the API models, without a cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from proctor.api.manifests import ManifestError, load_manifests


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser(
        "validate", help="check Experiment and ValidationPyramid manifests without a cluster"
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            resources = load_manifests(path)
        except ManifestError as exc:
            failed += 1
            print(exc, file=sys.stderr)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            failed += 1
            print(f"{path}: cannot read it as YAML: {exc}", file=sys.stderr)
        else:
            names = ", ".join(f"{r.kind}/{r.metadata.name}" for r in resources)
            print(f"{path}: valid ({names or 'no documents'})")
    return 1 if failed else 0
