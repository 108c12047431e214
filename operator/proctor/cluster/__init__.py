"""The emulated cluster for local mode and tests: an API server on kmock and a pod runner.

Only `proctor.cli` and the tests may import this package; the operator must not be able to tell it
from a real cluster. (Being built: see the issue "Emulated cluster".)
"""
