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
    tree = ast.parse(path.read_text(), filename=str(path))
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
