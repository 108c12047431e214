"""The isolation check: the user's core code imports no test or validation code.

A static scan (no import is executed) of every module in the entrypoint's package, except the
test modules themselves, for imports of test frameworks, test modules, or proctor.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

FORBIDDEN_ROOTS = {"pytest", "unittest", "hypothesis", "proctor", "_pytest", "nose"}


@dataclass(frozen=True)
class Violation:
    module: Path
    line: int
    imported: str

    def __str__(self) -> str:
        return f"{self.module.name}:{self.line} imports {self.imported}"


def is_test_module(path: Path) -> bool:
    """`path` relative to its package's root: test files and anything under a tests/ folder."""
    return (
        path.name.startswith("test_")
        or path.name.endswith("_test.py")
        or path.name == "conftest.py"
        or any(part in ("tests", "test", "testing") for part in path.parts[:-1])
    )


def package_files(entrypoint: str) -> tuple[Path, list[Path]]:
    """The root folder and source files of the entrypoint's top-level package (or lone module)."""
    top = entrypoint.split(":")[0].split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return Path(), []
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        return origin.parent.parent, sorted(origin.parent.rglob("*.py"))
    return origin.parent, [origin]


def scan(root: Path, files: list[Path]) -> list[Violation]:
    """Imports of test or validation code from the core (non-test) modules in `files`."""
    tests = {p for p in files if is_test_module(p.relative_to(root))}
    test_names = {p.stem for p in tests}
    violations = []
    for path in files:
        if path in tests:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [alias.name for alias in node.names]  # from . import x
            for name in names:
                parts = name.split(".")
                if (
                    parts[0] in FORBIDDEN_ROOTS
                    or any(p in test_names or p in ("tests", "test", "conftest") for p in parts)
                    or any(p.startswith("test_") for p in parts)
                ):
                    violations.append(Violation(path, getattr(node, "lineno", 0), name))
                    break
    return violations
