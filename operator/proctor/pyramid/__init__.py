"""The Validation Pyramid: L0 efficiency, L1 internal health, L2 overfit, L3 end to end.

Runs inside each layer's Job (`proctor pyramid run --layer Lk`) and locally. It observes user code
from outside, through hooks and wrappers; user code never imports it. Never imports the controller.
(Being built: see the issue "The Validation Pyramid".)
"""
