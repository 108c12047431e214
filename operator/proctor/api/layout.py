"""Where things live in object storage: one convention shared by the trainer (writes
checkpoints), the operator (reports them in status) and the watchdog (lists them in bundles).

    <checkpoint uri>/<namespace>/<experiment>/step-000000100/...   a checkpoint
    <bundle uri>/<namespace>/<experiment>/<UTC time>-<kind>/...   a recovery bundle

Every experiment writes under its own namespace and name, so two experiments that share a bucket
never resume from, or overwrite, each other's state.
"""

from __future__ import annotations


def experiment_prefix(base_uri: str, namespace: str, name: str) -> str:
    """The experiment's own directory under a storage URI (s3://... or file:///...)."""
    return f"{base_uri.rstrip('/')}/{namespace}/{name}"


def checkpoint_directory(step: int) -> str:
    """A checkpoint's directory name under the experiment's prefix: sortable by step."""
    return f"step-{step:09d}"
