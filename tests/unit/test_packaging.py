"""The wheel: one distribution whose only top-level package is the `proctor` namespace."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.support.crd_schema import REPO


@pytest.mark.slow
def test_wheel_holds_only_the_proctor_namespace(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("proctor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.startswith("proctor-")}
    assert top_level == {"proctor"}
    assert "proctor/__init__.py" not in names, "proctor must stay a PEP 420 namespace"
    assert "proctor/api/v1alpha1/experiment.py" in names
    assert "proctor/watchdog/__init__.py" in names
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith("entry_points.txt")))
        .decode()
    )
    assert "proctor = proctor.cli.main:main" in entry_points


def test_stdlib_operator_is_not_shadowed_from_the_repository_root():
    # A fresh interpreter started in the repository root, where operator/ and watchdog/ sit.
    code = "import operator, sys; sys.exit(0 if hasattr(operator, 'itemgetter') else 1)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
