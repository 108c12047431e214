"""Find the command-line tools the test extra installs, in the virtualenv running the tests.

`make test` runs `.venv/bin/pytest` without activating the venv, so PATH may not hold its bin/.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def tool(name: str) -> str:
    """The path of `name` beside this interpreter, else on PATH; fails the test if neither."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise AssertionError(
            f"{name} is not installed: run `make setup` (pip install -e '.[all,test]')"
        )
    return found
