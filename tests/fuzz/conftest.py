"""Hypothesis settings for the fuzz tests, as profiles.

`proctor-ci` (the default) is derandomized: every run draws the same examples, so CI is
reproducible and a failure seen once is seen again. `proctor-deep` draws fresh random examples,
ten times as many, for a longer hunt on a developer's machine:

    PROCTOR_FUZZ_PROFILE=proctor-deep .venv/bin/pytest tests/fuzz

A failing example is printed with `@reproduce_failure` data (print_blob), so it can be replayed.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile(
    "proctor-ci",
    deadline=None,  # a 2-core CI machine shared with other jobs has no stable per-example time
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_DATA,
)
settings.register_profile(
    "proctor-deep",
    parent=settings.get_profile("proctor-ci"),
    derandomize=False,
)
settings.load_profile(os.environ.get("PROCTOR_FUZZ_PROFILE", "proctor-ci"))
