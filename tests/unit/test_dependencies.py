"""The architecture's dependency rules, read from the source's imports (no import side effects).

- proctor.api imports nothing else of Proctor's;
- pyramid and train never import the controller; the watchdog never imports the controller;
- nothing imports cluster except cli (and the tests);
- images stay lean: api imports no kopf, kubernetes, torch or boto3; the watchdog imports no torch
  and no kopf; the controller imports no torch;
- no top-level package named `operator` or `watchdog` exists to shadow stdlib or PyPI.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.crd_schema import REPO

SOURCE_ROOTS = [REPO / "operator", REPO / "watchdog"]

# (package, what it must not import); a prefix matches the package and its submodules.
FORBIDDEN = [
    ("proctor.api", "proctor.", {"proctor.api"}),
    ("proctor.api", ("kopf", "kubernetes", "torch", "boto3", "botocore"), set()),
    ("proctor.pyramid", "proctor.controller", set()),
    ("proctor.train", "proctor.controller", set()),
    ("proctor.watchdog", ("proctor.controller", "proctor.pyramid", "proctor.train"), set()),
    ("proctor.watchdog", ("torch", "kopf"), set()),
    ("proctor.controller", "torch", set()),
]


def _modules() -> dict[str, Path]:
    modules = {}
    for root in SOURCE_ROOTS:
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imports(path: Path, module: str) -> set[str]:
    return _imports_of(ast.parse(path.read_text(), filename=str(path)), path, module)


def _imports_of(tree: ast.AST, path: Path, module: str) -> set[str]:
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{source}" if source else base
            found.add(source)
            # `from proctor import cluster` imports the module proctor.cluster.
            found |= {f"{source}.{alias.name}" for alias in node.names if alias.name != "*"}
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


MODULES = _modules()


def test_the_scan_sees_the_packages():
    assert {"proctor.api.v1alpha1", "proctor.cli.main", "proctor.watchdog"} <= MODULES.keys()


def _violations(
    modules: dict[str, Path], package: str, forbidden: str | tuple[str, ...], allowed: set[str]
) -> list[str]:
    return [
        f"{module} imports {imported}"
        for module, path in modules.items()
        if _within(module, package)
        for imported in _imports(path, module)
        if imported.startswith(forbidden) and not any(_within(imported, a) for a in allowed)
    ]


@pytest.mark.parametrize(("package", "forbidden", "allowed"), FORBIDDEN, ids=lambda x: str(x))
def test_layer_does_not_import_what_it_must_not(package, forbidden, allowed):
    assert _violations(MODULES, package, forbidden, allowed) == []


def test_only_cli_imports_the_emulated_cluster():
    violations = [
        f"{module} imports {imported}"
        for module, path in MODULES.items()
        if not _within(module, "proctor.cli") and not _within(module, "proctor.cluster")
        for imported in _imports(path, module)
        if _within(imported, "proctor.cluster")
    ]
    assert violations == []


def test_no_source_root_is_itself_a_package():
    for root in SOURCE_ROOTS:
        assert not (root / "__init__.py").exists(), f"{root.name}/ would shadow a real package"
        assert not (root / "proctor" / "__init__.py").exists(), "proctor must stay a namespace"


def test_the_rules_catch_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom proctor import controller\n")
    modules = {"proctor.watchdog.bad": bad}
    assert _violations(modules, "proctor.watchdog", ("torch", "kopf"), set()) == [
        "proctor.watchdog.bad imports torch"
    ]
    assert _violations(modules, "proctor.watchdog", "proctor.controller", set()) == [
        "proctor.watchdog.bad imports proctor.controller"
    ]


def test_the_scan_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from proctor.controller import handlers\nfrom . import sibling\n")
    assert _imports(bad, "proctor.pyramid.bad") == {
        "proctor.controller",
        "proctor.controller.handlers",
        "proctor.pyramid",
        "proctor.pyramid.sibling",
    }


# ---- what each image must carry -------------------------------------------------------------
# Every image runs the `proctor` command, so what proctor.cli.main imports when it starts must
# come with the core dependencies. Each image's own code path may import (even lazily, inside a
# function, which still runs there) only what its extras install.

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
IMAGE_ENTRIES = {
    "operator": ["proctor.cli.controller", "proctor.controller.handlers"],
    "watchdog": ["proctor.cli.watchdog", "proctor.watchdog.runner"],
    "runner": ["proctor.cli.pyramid", "proctor.cli.train"],
}
IMAGE_EXTRAS = {"operator": ["operator"], "watchdog": ["watchdog"], "runner": ["pyramid", "train"]}


def _top_level_imports(path: Path, module: str) -> set[str]:
    """Imports that run when the module is imported: not those inside functions, nor under
    `if TYPE_CHECKING`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    kept: list[ast.stmt] = []

    def keep(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                keep(node.orelse)
                continue
            if isinstance(node, ast.ClassDef | ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody"):
                    keep(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    keep(handler.body)
                continue
            kept.append(node)

    keep(tree.body)
    return _imports_of(ast.Module(body=kept, type_ignores=[]), path, module)


def _reachable(starts: list[str]) -> set[str]:
    """Proctor modules imported, at import time, from `starts`."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        module = todo.pop()
        if module in seen or module not in MODULES:
            continue
        seen.add(module)
        imported = [
            m for m in _top_level_imports(MODULES[module], module) if m.startswith("proctor")
        ]
        # Importing a.b.c runs the __init__ of a and of a.b first.
        todo += [".".join(m.split(".")[:i]) for m in imported for i in range(2, m.count(".") + 2)]
    return seen


def _distributions(imports: set[str]) -> set[str]:
    """The PyPI distributions that provide the third-party top-level names in `imports`."""
    providers = importlib.metadata.packages_distributions()
    names = {name.split(".")[0] for name in imports if not name.startswith("proctor")}
    names -= set(sys.stdlib_module_names) | {"__future__"}
    return {_normal(dist) for name in names for dist in providers.get(name, [name])}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(extras: list[str]) -> set[str]:
    """Distributions the core and `extras` install, with what those pull in themselves."""
    wanted = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        wanted += PYPROJECT["project"]["optional-dependencies"][extra]
    found: set[str] = set()
    todo = [_normal(re.split(r"[<>=!~\[; ]", requirement)[0]) for requirement in wanted]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_normal(re.split(r"[<>=!~\[; (]", r)[0]) for r in requires if "extra ==" not in r]
    return found


def test_the_proctor_command_starts_with_the_core_dependencies_alone():
    modules = _reachable(["proctor.cli.main"])
    imported = set().union(*(_top_level_imports(MODULES[m], m) for m in modules))
    assert _distributions(imported) - _declared([]) == set()


@pytest.mark.parametrize("image", IMAGE_ENTRIES)
def test_each_image_code_path_needs_only_its_extras(image):
    modules = _reachable(IMAGE_ENTRIES[image])
    imported = set().union(*(_imports(MODULES[m], m) for m in modules))
    missing = _distributions(imported) - _declared(IMAGE_EXTRAS[image])
    assert missing == set(), f"the {image} image lacks {sorted(missing)}: add it to its extra"


def test_the_import_time_scan_skips_functions_and_type_checking_only(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "import yaml\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import torch\nelse:\n    import rich\n"
        "try:\n    import boto3\nexcept ImportError:\n    pass\n"
        "def later():\n    import kopf\n"
        "class Thing:\n    import jsonpatch\n    def method(self):\n        import mcp\n"
    )
    found = _top_level_imports(source, "proctor.mod")
    assert {"yaml", "typing", "rich", "boto3", "jsonpatch"} <= found
    assert not {"torch", "kopf", "mcp"} & found


# The same, for real: the image's imports and its commands run in a Python where everything the
# image would not install is blocked, so a lazy or indirect import the scan misses still fails.
BLOCKER = """
import importlib.abc, importlib.util, sys
BLOCKED = set(sys.argv[1].split(","))
class NotInThisImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not installed in this image", name=name)
        return None
sys.meta_path.insert(0, NotInThisImage())
for module in sys.argv[2].split(","):
    __import__(module)
from proctor.cli.main import main
try:
    main(sys.argv[3:])
except SystemExit as exit:
    sys.exit(exit.code)
"""
IMAGE_RUNS = {
    "operator": (["proctor.controller.handlers", "proctor.controller.studies"], ["operator", "-h"]),
    "watchdog": (["proctor.watchdog.runner", "proctor.watchdog.bundles"], ["watchdog", "-h"]),
    "runner": (["proctor.pyramid.runner", "proctor.train.trainer"], ["train", "-h"]),
}


def _blocked(extras: list[str]) -> set[str]:
    """Top-level import names that only distributions outside the image provide."""
    declared = _declared(extras)
    return {
        name
        for name, dists in importlib.metadata.packages_distributions().items()
        if not name.startswith(("proctor", "_"))
        and name not in sys.stdlib_module_names
        and not {_normal(d) for d in dists} & declared
    }


@pytest.mark.parametrize("image", IMAGE_RUNS)
def test_each_image_imports_its_code_and_runs_its_command_with_only_what_it_installs(image):
    modules, argv = IMAGE_RUNS[image]
    blocked = _blocked(IMAGE_EXTRAS[image])
    assert "torch" in blocked or image == "runner"  # the blocker is really on
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(sorted(blocked)), ",".join(modules), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_blocker_fails_an_image_that_lacks_a_module():
    blocked = _blocked(IMAGE_EXTRAS["runner"]) | {"torch"}
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(sorted(blocked)), "proctor.train.trainer", "-h"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "torch is not installed in this image" in result.stderr
