"""How many examples each fuzz test draws: `examples(n)` is n under the default profile and ten
times n under `proctor-deep` (see conftest.py)."""

from __future__ import annotations

import os


def examples(count: int) -> int:
    deep = os.environ.get("PROCTOR_FUZZ_PROFILE") == "proctor-deep"
    return count * 10 if deep else count
