"""`proctor crds generate [--check]`: write the generated CRDs into the repository, or check them.

Knows where generated files live in the repository; what goes into them is proctor.api.crd's job.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from proctor.api import crd
from proctor.api.v1alpha1 import RESOURCES

CRD_DIR = Path("crds")
CHART_CRD_DIR = Path("charts/proctor/templates/crds")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        default=None,
        help="repository root (default: found by walking up from the current directory)",
    )
    generate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root: Path | None = args.root or find_repository_root(Path.cwd())
    if root is None:
        print(
            "proctor crds generate: no Proctor checkout here (no pyproject.toml naming proctor in "
            "this directory or above); run it inside the repository or pass --root",
            file=sys.stderr,
        )
        return 2
    if args.check:
        diffs = drift(root)
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
    changed = write_all(root)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print("CRDs are up to date with the API models.")
    return 0


def generated_files() -> dict[Path, str]:
    """Every generated file, by path relative to the repository root, with its content."""
    files: dict[Path, str] = {}
    for resource in RESOURCES:
        files[CRD_DIR / f"{resource.crd_name}.yaml"] = crd.crd_yaml(resource)
        files[CHART_CRD_DIR / f"{resource.crd_name}.yaml"] = crd.chart_template(resource)
    return files


def write_all(root: Path) -> list[Path]:
    """Write every generated file under `root`; returns the paths that changed."""
    changed = []
    for relative, content in generated_files().items():
        target = root / relative
        if target.exists() and target.read_text() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        changed.append(relative)
    return changed


def drift(root: Path) -> list[str]:
    """Unified diffs between the files under `root` and what the models generate."""
    diffs = []
    for relative, expected in generated_files().items():
        target = root / relative
        actual = target.read_text() if target.exists() else ""
        if actual != expected:
            lines = difflib.unified_diff(
                actual.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                fromfile=f"{relative} (committed)",
                tofile=f"{relative} (generated)",
            )
            diffs.append("".join(lines))
    return diffs


def find_repository_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` whose pyproject.toml is Proctor's."""
    for directory in (start, *start.parents):
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and 'name = "proctor"' in pyproject.read_text():
            return directory
    return None
