"""Entry point of the `proctor` command."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from proctor.api import crd
from proctor.api.manifests import ManifestError, load_manifests


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
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

    crds = commands.add_parser("crds", help="the CustomResourceDefinitions generated from the API")
    crds_commands = crds.add_subparsers(title="crds commands", metavar="COMMAND", required=True)
    generate = crds_commands.add_parser(
        "generate", help="write crds/*.yaml and the chart's CRD templates from the models"
    )
    generate.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and show the diff if the committed files are out of date",
    )
    generate.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="repository root (default: the current directory)",
    )
    generate.set_defaults(run=_crds_generate)

    validate = commands.add_parser(
        "validate", help="check Experiment and ValidationPyramid manifests without a cluster"
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(run=_validate)
    return parser


def _crds_generate(args: argparse.Namespace) -> int:
    root: Path = args.root
    if args.check:
        diffs = crd.drift(root)
        if diffs:
            sys.stdout.write("".join(diffs))
            print(
                f"\n{len(diffs)} generated file(s) differ from the API models: run "
                "`proctor crds generate` (or `make generate`) and commit the result.",
                file=sys.stderr,
            )
            return 1
        print("CRDs are up to date with the API models.")
        return 0
    changed = crd.write_all(root)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print("CRDs are up to date with the API models.")
    return 0


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            resources = load_manifests(path)
        except ManifestError as exc:
            failed += 1
            print(exc, file=sys.stderr)
        except (OSError, yaml.YAMLError) as exc:  # unreadable file, YAML syntax error
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
        else:
            names = ", ".join(f"{type(r).__name__}/{r.metadata.name}" for r in resources)
            print(f"{path}: valid ({names})")
    return 1 if failed else 0


def _version() -> str:
    try:
        return version("proctor")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
