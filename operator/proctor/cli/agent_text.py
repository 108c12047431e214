"""The readable default output of the agent verbs (proctor.cli.agent): short, aligned, and
ending with the `next:` line, the same sentence the JSON carries."""

from __future__ import annotations

from proctor.agent.models import (
    BundleList,
    ConcludeResult,
    ExperimentReport,
    FetchedBundle,
    StudyDigest,
    SubmitResult,
    WaitResult,
)


def submitted(result: SubmitResult) -> str:
    lines = [f"created {o.kind}/{o.name} in namespace {o.namespace}" for o in result.submitted]
    return "\n".join([*lines, f"next: {result.next}"])


def report(result: ExperimentReport) -> str:
    lines = [f"Experiment {result.name} (namespace {result.namespace}): {result.phase}"]
    if result.study:
        lines.append(f"study: {result.study}")
    if result.hypothesis:
        lines.append(f"hypothesis: {result.hypothesis.statement}")
        lines.append(f"  expected: {result.hypothesis.expected_outcome}")
        lines.append(f"  varies:   {result.hypothesis.independent_variable}")
    pyramid = result.pyramid
    if pyramid is not None:
        if pyramid.skipped:
            lines.append(f"pyramid: skipped ({pyramid.skipped})")
        else:
            lines.append(f"pyramid {pyramid.name or ''}: {pyramid.phase or 'Pending'}")
        for layer in pyramid.layers:
            lines.append(
                f"  {layer.layer} {layer.phase:<8} {layer.passed_checks}/{layer.total_checks} "
                f"checks passed"
            )
            for check in layer.failed_checks:
                seen = "" if check.value is None else f" (value {check.value:g}"
                if seen and check.threshold is not None:
                    seen += f", threshold {check.threshold:g}"
                seen += ")" if seen else ""
                lines.append(f"    FAILED {check.name}{seen}: {check.message}")
    training = result.training
    if training is not None and training.step is not None:
        parts = [f"step {training.step}" + (f"/{training.max_steps}" if training.max_steps else "")]
        if training.loss is not None:
            parts.append(f"loss {training.loss:.4g}")
        if training.mfu is not None:
            parts.append(f"MFU {training.mfu:.1%}")
        if training.samples_per_second is not None:
            parts.append(f"{training.samples_per_second:.0f} samples/s")
        lines.append("training: " + ", ".join(parts))
        if training.last_eval is not None:
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in training.last_eval.metrics.items())
            lines.append(f"  eval at step {training.last_eval.step}: {metrics}")
        if training.last_checkpoint is not None:
            lines.append(f"  checkpoint: {training.last_checkpoint.uri}")
    if result.anomaly_count:
        lines.append(f"anomalies: {result.anomaly_count}")
        for anomaly in result.anomalies:
            lines.append(f"  {anomaly.time:%H:%M:%S} {anomaly.kind} ({anomaly.severity})")
            lines.append(f"    {anomaly.message}")
            if anomaly.bundle_uri:
                lines.append(f"    bundle: {anomaly.bundle_uri}")
    for condition in result.conditions:
        message = f": {condition.message}" if condition.message else ""
        lines.append(f"condition {condition.type}={condition.status} {condition.reason}{message}")
    if result.conclusion is not None:
        lines.append(f"conclusion: {result.conclusion.verdict}: {result.conclusion.evidence}")
        lines.append(f"  learnings: {result.conclusion.learnings}")
    lines.append(f"next: {result.next}")
    return "\n".join(lines)


def waited(result: WaitResult) -> str:
    outcome = {
        "reached": f"reached {result.status.phase}",
        "ended": f"ended in {result.status.phase}, not {' or '.join(result.awaited)}",
        "blocked": "blocked: waiting cannot lift a guardrail",
        "timedOut": f"still {result.status.phase} after {result.waited_seconds:g}s",
    }[result.outcome]
    return f"{result.status.name}: {outcome}\n{report(result.status)}"


def bundles(result: BundleList) -> str:
    lines = [f"{len(result.bundles)} recovery bundles of {result.name}:"]
    for entry in result.bundles:
        when = f"{entry.time:%Y-%m-%d %H:%M:%S}" if entry.time else "time unknown"
        where = "+".join(
            name
            for name, seen in (("status", entry.in_status), ("storage", entry.in_storage))
            if seen
        )
        lines.append(f"  {when} {entry.kind} [{where}]")
        lines.append(f"    {entry.uri}")
        if entry.summary:
            lines.append(f"    {entry.summary}")
    lines.extend(f"note: {note}" for note in result.notes)
    lines.append(f"next: {result.next}")
    return "\n".join(lines)


def fetched(result: FetchedBundle) -> str:
    files = ", ".join(result.files)
    return f"fetched {result.uri} into {result.directory}: {files}\nnext: {result.next}"


def concluded(result: ConcludeResult) -> str:
    return f"{result.name}: {result.conclusion.verdict} (phase {result.phase})\nnext: {result.next}"


def digest(result: StudyDigest) -> str:
    header = f"study {result.study}: digest of {result.concluded} concluded experiments"
    if result.updated:
        header += f", updated {result.updated}"
    return f"{header}\n({result.digest_uri})\n\n{result.digest}"
