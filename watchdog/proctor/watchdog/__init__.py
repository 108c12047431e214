"""The watchdog sidecar: reads training and GPU metrics, detects anomalies, writes recovery bundles.

Read-only towards the cluster: it never patches the Job, the pod or the Experiment. Lives in its own
source root so its image carries only what it needs. (Being built: see the issue "The watchdog".)
"""
