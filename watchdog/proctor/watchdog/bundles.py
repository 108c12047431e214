"""A recovery bundle's three files, from a finding and the window around it.

Everything that reaches a bundle passes through `proctor.api.redaction.redact` (the log tail, the
messages, the spec's literal values), and Secret-referenced variables are kept as references: the
watchdog never reads a Secret.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from proctor.api.bundle import (
    RECOVERY_STAGES,
    Bundle,
    BundleExperiment,
    BundleFinding,
    CheckpointEntry,
    GpuPoint,
    MetricPoint,
    PodState,
    RecoveryStage,
)
from proctor.api.redaction import redact
from proctor.api.v1alpha1 import LayerResult
from proctor.api.v1alpha1.experiment import Hypothesis
from proctor.watchdog.observations import Finding, GpuSample, TrainerSample

WINDOW_SECONDS = 3600.0
"""How much history before the finding a bundle keeps (metrics and plot)."""


def bundle_directory(finding: Finding, now: datetime) -> str:
    """`20261122T051200Z-NonFiniteLoss-3f9a1c`: sortable by time, the kind in the name, and a
    digest of the incident key, so two incidents found in one check never share a directory."""
    digest = hashlib.sha256(finding.key.encode()).hexdigest()[:6]
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{finding.kind.value}-{digest}"


def build_bundle(
    *,
    uri: str,
    finding: Finding,
    now: datetime,
    experiment: dict[str, Any],
    pyramid: dict[str, Any] | None,
    trainer: Iterable[TrainerSample],
    gpus: Iterable[GpuSample],
    latest_gpus: list[GpuSample],
    checkpoints: list[tuple[int, str]],
    pod: PodState | None,
    log_tail: list[str],
    notes: list[str],
) -> Bundle:
    meta = experiment.get("metadata") or {}
    spec = _redacted(experiment.get("spec") or {})
    hypothesis = None
    if "hypothesis" in spec:
        try:
            hypothesis = Hypothesis.model_validate(spec["hypothesis"])
        except ValueError:
            hypothesis = None
    since = now.timestamp() - WINDOW_SECONDS
    layers = []
    for entry in ((pyramid or {}).get("status") or {}).get("layers") or []:
        try:
            layers.append(LayerResult.model_validate(entry))
        except ValueError:
            continue
    return Bundle(
        created=now,
        uri=uri,
        experiment=BundleExperiment(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid"),
            hypothesis=hypothesis,
            spec=spec,
            validation=(experiment.get("status") or {}).get("validation"),
        ),
        finding=BundleFinding(
            kind=finding.kind,
            severity=finding.severity,
            message=redact(finding.message),
            key=finding.key,
            time=now,
            step=finding.step,
            evidence=finding.evidence,
        ),
        recovery_stage=RECOVERY_STAGES[finding.kind],
        pyramid=layers,
        metrics=[_metric(s) for s in trainer if s.time >= since],
        gpus=[_gpu(s) for s in gpus if s.time >= since],
        dcgm_snapshot=[_gpu(s) for s in latest_gpus],
        checkpoints=[CheckpointEntry(step=step, uri=where) for step, where in checkpoints],
        pod=pod,
        log_tail=[redact(line) for line in log_tail[-200:]],
        notes=notes,
    )


def bundle_files(bundle: Bundle) -> dict[str, bytes]:
    """The bundle's files by name."""
    return {
        "bundle.json": json.dumps(
            bundle.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2
        ).encode(),
        "recovery.md": recovery_prompt(bundle).encode(),
        "metrics.png": plot(bundle),
    }


_NEXT_STEPS = {
    RecoveryStage.FIX_CODE: (
        "Return to the code. Reproduce on small data with `proctor pyramid run --manifest "
        "experiment.yaml` (L0 catches a starved GPU, L1 dead gradients, L3 checkpoint bugs), fix, "
        "make the pyramid pass, then submit a new Experiment citing this one."
    ),
    RecoveryStage.ADJUST_HYPERPARAMETERS: (
        "The code ran; the optimisation failed. Change one setting (learning rate, warm-up, "
        "gradient clipping, batch size, precision) as the new experiment's "
        "hypothesis.independentVariable, resume from the last good checkpoint below, and cite "
        "this experiment in inspiredBy."
    ),
    RecoveryStage.REVISIT_DESIGN: (
        "The run works as built, but the idea is not paying off. Conclude this experiment "
        "(verdict ineffective or inconclusive, with the numbers below) before trying a "
        "different design."
    ),
    RecoveryStage.RETRY_ON_HEALTHY_HARDWARE: (
        "The hardware failed; nothing in the code needs to change. Resubmit the same experiment "
        "(the Job resumes from the newest checkpoint) and report the node to the cluster's "
        "operators."
    ),
}


def recovery_prompt(bundle: Bundle) -> str:
    """`recovery.md`: a prompt for a recovery agent, complete on its own."""
    exp, finding = bundle.experiment, bundle.finding
    lines = [
        f"# Recovery: {exp.namespace}/{exp.name}: {finding.kind.value} ({finding.severity.value})",
        "",
        "You are helping recover an ML experiment that the Proctor watchdog flagged. Decide what "
        "to do next from the evidence below; do not retry blindly.",
        "",
        "## What happened",
        finding.message,
        "",
        f"Detected at {finding.time.isoformat()}"
        + (f", training step {finding.step}." if finding.step is not None else "."),
        "",
        "## Evidence",
        *[f"- {name}: {value}" for name, value in sorted(finding.evidence.items())],
        "",
        "## The experiment's hypothesis",
    ]
    if exp.hypothesis is not None:
        h = exp.hypothesis
        lines += [
            f"- statement: {h.statement}",
            f"- expected outcome: {h.expected_outcome}",
            f"- independent variable: {h.independent_variable}",
        ]
    else:
        lines.append("- (not available to the watchdog)")
    lines += [
        "",
        f"## Where to go back to: {bundle.recovery_stage.value}",
        _NEXT_STEPS[bundle.recovery_stage],
        "",
        "## Commands",
        f"- the full record: bundle.json beside this file ({bundle.uri}bundle.json), and the plot "
        "metrics.png",
        f"- the experiment: `kubectl -n {exp.namespace} get experiment {exp.name} -o yaml`",
    ]
    if bundle.checkpoints:
        step, where = bundle.checkpoints[-1].step, bundle.checkpoints[-1].uri
        lines.append(f"- the newest complete checkpoint (step {step}): {where}")
        if where.startswith("s3://"):
            lines.append(
                f"  fetch it: `aws s3 cp --recursive {where} ./checkpoint/` (add "
                "`--endpoint-url $AWS_ENDPOINT_URL` for an S3-compatible store)"
            )
        else:
            lines.append(
                f"  it is a directory: `cp -r {where.removeprefix('file://')} ./checkpoint/`"
            )
    else:
        lines.append("- no complete checkpoint was written before the finding")
    lines += [
        "- save the experiment to edit: `kubectl -n "
        f"{exp.namespace} get experiment {exp.name} -o yaml > experiment.yaml`",
        "- rerun the pyramid on the changed code: `proctor pyramid run --manifest experiment.yaml`",
        "- submit the next experiment under a new name, citing this one in "
        "spec.hypothesis.inspiredBy: `kubectl apply -f experiment.yaml` (a resubmitted run "
        "resumes from the newest checkpoint under its own name's prefix only)",
    ]
    if bundle.notes:
        lines += ["", "## What the watchdog could not see", *[f"- {n}" for n in bundle.notes]]
    if bundle.log_tail:
        lines += ["", "## The trainer's last lines (secrets redacted)", "```"]
        lines += bundle.log_tail[-30:]
        lines.append("```")
    return "\n".join(lines) + "\n"


def plot(bundle: Bundle) -> bytes:
    """`metrics.png`: loss, throughput, MFU and GPU utilisation around the finding."""
    import matplotlib

    matplotlib.use("Agg")  # no display in a sidecar
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(4, 1, figsize=(9, 9), sharex=True)
    points = bundle.metrics
    series = [
        ("loss", [p.loss for p in points]),
        ("samples/s", [p.samples_per_second for p in points]),
        ("MFU", [p.mfu for p in points]),
    ]
    times = [p.time for p in points]
    for axis, (label, values) in zip(axes[:3], series, strict=True):
        pairs = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
        if pairs:
            axis.plot([t for t, _ in pairs], [v for _, v in pairs], marker=".", linewidth=1)
        axis.set_ylabel(label)
    by_gpu: dict[str, list[GpuPoint]] = {}
    for sample in bundle.gpus:
        by_gpu.setdefault(sample.gpu, []).append(sample)
    for gpu, samples in sorted(by_gpu.items()):
        pairs = [(s.time, s.utilization) for s in samples if s.utilization is not None]
        if pairs:
            axes[3].plot([t for t, _ in pairs], [v for _, v in pairs], label=f"GPU {gpu}")
    axes[3].set_ylabel("GPU util %")
    if by_gpu:
        axes[3].legend(loc="upper left", fontsize="small")
    for axis in axes:
        axis.axvline(bundle.finding.time, color="red", linestyle="--", linewidth=1)
    figure.suptitle(
        f"{bundle.experiment.namespace}/{bundle.experiment.name}: {bundle.finding.kind.value}"
    )
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    pyplot.close(figure)
    return buffer.getvalue()


def _metric(sample: TrainerSample) -> MetricPoint:
    return MetricPoint(
        time=datetime.fromtimestamp(sample.time, UTC),
        step=sample.step,
        loss=sample.loss if sample.loss is None or _finite(sample.loss) else None,
        samples_per_second=sample.samples_per_second,
        tokens_per_second=sample.tokens_per_second,
        mfu=sample.mfu,
        reachable=sample.reachable,
    )


def _gpu(sample: GpuSample) -> GpuPoint:
    return GpuPoint(
        time=datetime.fromtimestamp(sample.time, UTC),
        gpu=sample.gpu,
        uuid=sample.uuid,
        model=sample.model,
        utilization=sample.utilization,
        tensor_active=sample.tensor_active,
        sm_active=sample.sm_active,
        fb_used_mib=sample.fb_used_mib,
        fb_free_mib=sample.fb_free_mib,
        xid=sample.xid,
    )


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


def _redacted(value: Any) -> Any:
    """A spec with every string passed through `redact` (literal env values included)."""
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value
