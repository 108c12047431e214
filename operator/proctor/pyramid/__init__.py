"""The Validation Pyramid: L0 efficiency, L1 internal health, L2 overfit, L3 end to end.

Runs inside each layer's Job (`proctor pyramid run --layer Lk`) and locally. It observes user code
from outside, through hooks and wrappers; user code never imports it. Never imports the controller.

    contract.py    what the user's setup returns (TrainingSetup) and how it is loaded
    efficiency.py  L0   health.py  L1   overfit.py  L2   endtoend.py  L3
    runner.py      order, stop at the first failure, termination message, full report
"""
