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
    # A lone module: its neighbours are the code it ships with.
    return origin.parent, sorted(origin.parent.glob("*.py"))


def scan(root: Path, files: list[Path]) -> list[Violation]:
    """Imports of test or validation code from the core (non-test) modules in `files`."""
    tests = {p for p in files if is_test_module(p.relative_to(root))}
    test_names = {p.stem for p in tests}
    local = {p.relative_to(root).parts[0].removesuffix(".py") for p in files}
    violations = []
    for path in files:
        if path in tests:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                # Relative imports are the package's own: give them its name.
                base = node.module or ""
                base = f"{next(iter(local))}.{base}" if node.level and local else base
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                parts = [p for p in name.split(".") if p]
                # Test-module names only count inside the package: torch.utils.data is not
                # tests/data.py.
                own = bool(parts) and parts[0] in local
                if (parts and parts[0] in FORBIDDEN_ROOTS) or (
                    own
                    and any(
                        p in test_names
                        or p in ("tests", "test", "conftest")
                        or p.startswith("test_")
                        for p in parts
                    )
                ):
                    violations.append(Violation(path, getattr(node, "lineno", 0), name))
                    break
    return violations
