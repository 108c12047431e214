"""The Dockerfile cannot be built here (no Docker engine), so it is checked statically:
hadolint, every COPY source exists, every extra it installs exists, every target is non-root,
and each image's entrypoint is the installed `proctor` command."""

from __future__ import annotations

import re
import subprocess
import tomllib

from tests.support.crd_schema import REPO
from tests.support.tools import tool

DOCKERFILE = REPO / "images" / "Dockerfile"
EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _stages() -> dict[str, str]:
    """Each build stage's text, by the name after AS."""
    parts = re.split(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_there_is_a_target_per_component():
    assert {"operator", "watchdog", "runner", "demo"} <= _stages().keys()


def test_hadolint_is_clean():
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_copy_sources_exist():
    copies = [
        line.split()[1:-1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("COPY") and "--from=" not in line
    ]
    assert copies
    for sources in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source} does not exist"


def test_each_image_installs_only_its_own_extras():
    installed = {
        stage: set(match.group(1).split(","))
        for stage, text in _stages().items()
        if (match := re.search(r"proctor-\*\.whl\)\[([a-z,]+)\]", text))
    }
    assert installed == {
        "operator": {"operator"},
        "watchdog": {"watchdog"},
        "runner": {"pyramid", "train"},
    }
    for extras in installed.values():
        assert extras <= EXTRAS.keys()


def test_every_image_ends_as_a_numeric_non_root_user():
    for stage, text in _stages().items():
        if stage == "wheel":
            continue
        users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
        uid = users[-1].split(":")[0] if users else "0"
        assert uid.isdigit(), stage
        assert uid != "0", f"{stage} runs as root"


def test_the_demo_example_path_does_not_leak_into_the_runner_users_build_from():
    assert "PYTHONPATH" not in _stages()["runner"]
