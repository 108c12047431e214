"""The watchdog reports an anomaly as a Kubernetes Event on the Experiment; the operator mirrors
these Events into status.anomalies (and stops training on them when asked). This module is that
contract, shared by both sides:

- `involvedObject`: the Experiment; `type`: Warning; `reason`: the AnomalyKind (e.g. NonFiniteLoss);
- labels: `proctor.dev/experiment: <name>` and `proctor.dev/anomaly: <kind>`, so the operator
  selects them server-side;
- annotations: severity, the training step, the detection time and the bundle URI.

An Event is a record of what the watchdog saw, not an instruction: the watchdog never changes the
Experiment or the Job itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from proctor.api.v1alpha1.experiment import Anomaly, AnomalyKind, Severity

EXPERIMENT_LABEL = "proctor.dev/experiment"
ANOMALY_LABEL = "proctor.dev/anomaly"
SEVERITY = "proctor.dev/severity"
STEP = "proctor.dev/step"
DETECTED_AT = "proctor.dev/detected-at"
BUNDLE_URI = "proctor.dev/bundle-uri"
REPORTER = "proctor-watchdog"


def anomaly_event(experiment: dict[str, Any], anomaly: Anomaly, event_name: str) -> dict[str, Any]:
    """The Event (core/v1) that reports `anomaly` on `experiment` (as the API server returned
    it); `event_name` should be unique per incident (the de-duplication key)."""
    meta = experiment["metadata"]
    annotations = {
        SEVERITY: anomaly.severity.value,
        DETECTED_AT: anomaly.time.isoformat(),
    }
    if anomaly.step is not None:
        annotations[STEP] = str(anomaly.step)
    if anomaly.bundle_uri:
        annotations[BUNDLE_URI] = anomaly.bundle_uri
    stamp = anomaly.time.isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name,
            "namespace": meta["namespace"],
            "labels": {EXPERIMENT_LABEL: meta["name"], ANOMALY_LABEL: anomaly.kind.value},
            "annotations": annotations,
        },
        "involvedObject": {
            "apiVersion": experiment.get("apiVersion", "proctor.dev/v1alpha1"),
            "kind": "Experiment",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": "Warning",
        "reason": anomaly.kind.value,
        "message": anomaly.message,
        "source": {"component": REPORTER},
        "reportingComponent": REPORTER,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def anomaly_from_event(event: dict[str, Any]) -> Anomaly | None:
    """The anomaly an Event reports, or None when it is not a well-formed anomaly Event (an
    unreadable Event is skipped, never allowed to break the reconcile)."""
    meta = event.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    try:
        kind = AnomalyKind(labels.get(ANOMALY_LABEL, event.get("reason", "")))
        when = (
            annotations.get(DETECTED_AT)
            or event.get("lastTimestamp")
            or event.get("firstTimestamp")
        )
        step = annotations.get(STEP)
        return Anomaly(
            kind=kind,
            severity=Severity(annotations.get(SEVERITY, Severity.WARNING.value)),
            time=datetime.fromisoformat(str(when).replace("Z", "+00:00")),
            step=int(step) if step is not None and str(step).isdigit() else None,
            message=str(event.get("message", ""))[:4096],
            bundle_uri=annotations.get(BUNDLE_URI),
        )
    except (ValueError, TypeError, ValidationError):
        return None
