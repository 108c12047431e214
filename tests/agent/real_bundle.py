"""A recovery bundle written by the watchdog's own code (build_bundle, bundle_files) into a
file:// store, laid out as the watchdog lays it out, for tests that read bundles."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from proctor.api.layout import experiment_prefix
from proctor.api.v1alpha1.experiment import AnomalyKind, Severity
from proctor.storage import FileStore
from proctor.watchdog.bundles import build_bundle, bundle_directory, bundle_files
from proctor.watchdog.observations import Finding, TrainerSample

HYPOTHESIS = {
    "statement": "A 256-unit MLP classifies digits.",
    "expectedOutcome": "accuracy above 0.95",
    "inspiredBy": [{"kind": "Note", "ref": "a test"}],
    "independentVariable": "code.config.hidden",
    "controls": ["seed 0"],
}


def write_bundle(
    root: Path, namespace: str, name: str, now: datetime, step: int = 31, key: str = "nan"
) -> str:
    """Write one NonFiniteLoss bundle under file://<root>; return its directory's URI."""
    base = experiment_prefix(root.as_uri(), namespace, name)
    finding = Finding(
        kind=AnomalyKind.NON_FINITE_LOSS,
        severity=Severity.CRITICAL,
        message=f"loss is nan at step {step}",
        key=key,
        evidence={"loss": "nan"},
        step=step,
    )
    directory = bundle_directory(finding, now)
    uri = f"{base}/{directory}"
    bundle = build_bundle(
        uri=uri,
        finding=finding,
        now=now,
        experiment={
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"hypothesis": HYPOTHESIS},
        },
        pyramid=None,
        trainer=[TrainerSample(time=now.timestamp() - 5, step=step - 1, loss=0.4)],
        gpus=[],
        latest_gpus=[],
        checkpoints=[],
        pod=None,
        log_tail=["step 30 loss 0.41"],
        notes=[],
    )
    store = FileStore(Path(base.removeprefix("file://")))
    for file_name, data in bundle_files(bundle).items():
        store.put(f"{directory}/{file_name}", data)
    return uri


def at(minute: int) -> datetime:
    return datetime(2026, 11, 22, 8, minute, 0, tzinfo=UTC)
