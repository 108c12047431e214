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
BUILD_STAGES = {"wheel", "operator-env", "watchdog-env"}  # only copied from, never run
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
        stage.removesuffix("-env"): set(match.group(1).split(","))
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
        if stage in BUILD_STAGES:
            continue
        users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
        uid = users[-1].split(":")[0] if users else "0"
        assert uid.isdigit(), stage
        assert uid != "0", f"{stage} runs as root"


def test_the_demo_example_path_does_not_leak_into_the_runner_users_build_from():
    assert "PYTHONPATH" not in _stages()["runner"]


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))


def test_every_base_is_pinned_to_an_exact_release():
    froms = re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    stages = set(_stages())
    for base in froms:
        if base in stages:
            continue  # an earlier stage of this file
        image = _args()[base[2:-1]] if base.startswith("${") else base
        _, _, tag = image.partition(":")
        assert tag, f"{image}: no tag (means :latest)"
        assert tag != "latest", image
        # an exact release: major.minor.patch, not a moving 3.11 or 2-cuda tag
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"{image}: pin the full version"


def test_the_runner_base_carries_the_projects_torch_pin():
    pin = re.search(r"^TORCH_VERSION=(\S+)$", (REPO / "scripts/setup.sh").read_text(), re.M)
    assert pin is not None
    base = _args()["PYTORCH_BASE"]
    assert base.startswith(f"pytorch/pytorch:{pin.group(1)}-cuda"), (base, pin.group(1))


def test_no_secret_is_baked_into_an_image():
    text = DOCKERFILE.read_text()
    for line in text.splitlines():
        if line.startswith(("ENV", "ARG")):
            assert not re.search(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", line, re.I), line
    copied = " ".join(line for line in text.splitlines() if line.startswith(("COPY", "ADD")))
    for pattern in (".env", ".aws", "kubeconfig", ".netrc", "id_rsa"):
        assert pattern not in copied
    # the build context leaves local state out
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)


def test_slim_images_copy_a_finished_virtualenv_and_leave_pip_caches_behind():
    stages = _stages()
    for image in ("operator", "watchdog"):
        assert f"COPY --from={image}-env /opt/proctor /opt/proctor" in stages[image]
        assert "RUN" not in stages[image]  # nothing installed in the final stage itself
    for text in stages.values():
        for install in re.findall(r"pip install[^\n]*", text):
            assert "--no-cache-dir" in install, install
