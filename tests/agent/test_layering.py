"""Where the agent tools sit: proctor.agent is a client of the API (models, kube client, storage),
never of the operator's internals or the emulated cluster, and only the `proctor mcp` verb
touches the MCP SDK, so the other verbs work without the `agent` extra."""

from __future__ import annotations

import ast

import pytest

from tests.support.crd_schema import REPO

ROOT = REPO / "operator" / "proctor"


def imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("agent", ("proctor.controller", "proctor.cluster", "proctor.watchdog", "mcp", "kopf")),
        ("mcpserver", ("proctor.controller", "proctor.cluster", "proctor.kube")),
    ],
)
def test_the_agent_tools_stay_on_the_client_side(package, forbidden):
    modules = imports(package)
    assert modules, f"nothing found under {package}"
    bad = [
        f"{module} imports {name}"
        for module, names in modules.items()
        for name in names
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, bad


def test_only_the_mcp_verb_imports_the_sdk_and_only_when_it_runs():
    cli = ast.parse((ROOT / "cli" / "agent.py").read_text())
    top_level = {
        node.module
        for node in cli.body
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert not any(m.startswith(("mcp", "proctor.mcpserver")) for m in top_level), top_level
