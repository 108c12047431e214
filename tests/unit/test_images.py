"""Dockerfiles cannot be built here (no Docker engine), so they are checked statically:
hadolint, every COPY source exists, every extra they install exists in pyproject.toml."""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest

from tests.support.crd_schema import REPO
from tests.support.tools import tool

DOCKERFILES = sorted((REPO / "images").glob("*/Dockerfile"))
EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_there_is_an_image_per_component():
    assert {p.parent.name for p in DOCKERFILES} == {"operator", "watchdog", "runner"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_is_clean(dockerfile):
    result = subprocess.run([tool("hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copy_sources_exist_and_extras_are_real(dockerfile):
    text = dockerfile.read_text()
    for line in text.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"
    for extras in re.findall(r"proctor-\*\.whl\)\[([a-z,]+)\]", text):
        assert set(extras.split(",")) <= EXTRAS.keys(), extras


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_run_as_a_numeric_non_root_user(dockerfile):
    users = re.findall(r"^USER (\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert users
    assert users[-1].split(":")[0].isdigit()
    assert users[-1].split(":")[0] != "0"
