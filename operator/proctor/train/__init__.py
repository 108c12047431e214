"""Training runtime: the default trainer (`proctor train`) and the telemetry library.

The telemetry library is what any training loop calls once per step to export
`proctor_train_*` Prometheus metrics. Never imports the controller.
(Being built: see the issue "Training runtime and telemetry".)
"""
