"""The operator's own configuration: images, storage defaults, timing. From flags or PROCTOR_*
environment variables (what the Helm chart sets), never from a custom resource."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from proctor.api.v1alpha1._base import STORAGE_URI_PATTERN


@dataclass(frozen=True)
class ControllerSettings:
    watchdog_image: str = "proctor/watchdog:0.1.0"
    """Image of the watchdog sidecar of every training pod."""
    default_bundle_uri: str | None = None
    """Where recovery bundles go when an Experiment sets no spec.recovery.bundleURI."""
    watchdog_secret: str | None = None
    """A Secret (in each experiment's namespace) whose keys become the watchdog's environment:
    object storage credentials such as AWS_ACCESS_KEY_ID. Never copied into a spec or status."""
    rendezvous_port: int = 29500
    resync_seconds: float = 10.0
    """How often every unfinished object is reconciled even when nothing changed (retries,
    progress); changes themselves are handled as their watch events arrive."""
    progress_seconds: float = 15.0
    """Least time between two reads of a training run's metrics and anomalies."""
    retry_base_seconds: float = 10.0
    retry_max_seconds: float = 300.0
    """Backoff of a layer retried after infrastructure trouble: base * 2^(attempt-1), capped."""
    deadline_allowance_seconds: int = 300
    """Added to spec.training.budget.maxDuration for the Job's activeDeadlineSeconds: the trainer
    stops itself at maxDuration (with a checkpoint); the deadline is the hard stop behind it."""
    default_queue: str | None = None
    """Kueue LocalQueue for the training Jobs of Experiments with no spec.training.queueName."""
    prometheus_url: str | None = None
    """A Prometheus server with the DCGM series, for watchdogs whose Experiment names no source."""
    storage_endpoint: str | None = None
    """An S3-compatible endpoint (AWS_ENDPOINT_URL of the trainer and the watchdog), for object
    storage other than AWS S3. Credentials never come from here: see watchdog_secret."""
    default_thresholds: dict[str, Any] = field(default_factory=dict)
    """Watchdog thresholds for Experiments that leave them unset (only those with no default of
    their own: minMfuRatio, maxCheckpointAge), as in spec.watchdog.thresholds."""

    def __post_init__(self) -> None:
        if self.default_bundle_uri and not re.fullmatch(
            STORAGE_URI_PATTERN, self.default_bundle_uri
        ):
            raise ValueError(
                f"default bundle URI {self.default_bundle_uri!r}: use s3://bucket/prefix or "
                "file:///absolute/path"
            )
        if self.default_queue and not re.fullmatch(DNS_LABEL, self.default_queue):
            raise ValueError(f"default queue {self.default_queue!r} is not a Kueue queue name")
        for name, url in (("Prometheus", self.prometheus_url), ("storage", self.storage_endpoint)):
            if url and not re.match(r"^https?://", url):
                raise ValueError(f"{name} URL {url!r}: use http:// or https://")
        _check_default_thresholds(self.default_thresholds)
        for name in ("resync_seconds", "progress_seconds", "retry_base_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be above 0, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, **overrides: object) -> ControllerSettings:
        """Settings from PROCTOR_* variables; `overrides` (flags) win where not None."""
        env = os.environ.get
        values: dict[str, object] = {
            "watchdog_image": env("PROCTOR_WATCHDOG_IMAGE"),
            "default_bundle_uri": env("PROCTOR_BUNDLE_URI"),
            "watchdog_secret": env("PROCTOR_WATCHDOG_SECRET"),
            "resync_seconds": _number(env("PROCTOR_RESYNC_SECONDS"), float),
            "progress_seconds": _number(env("PROCTOR_PROGRESS_SECONDS"), float),
            "retry_base_seconds": _number(env("PROCTOR_RETRY_BASE_SECONDS"), float),
            "default_queue": env("PROCTOR_DEFAULT_QUEUE") or None,
            "prometheus_url": env("PROCTOR_PROMETHEUS_URL") or None,
            "storage_endpoint": env("PROCTOR_STORAGE_ENDPOINT") or None,
            "default_thresholds": _json_object(
                env("PROCTOR_WATCHDOG_THRESHOLDS"), "PROCTOR_WATCHDOG_THRESHOLDS"
            ),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DEFAULTABLE_THRESHOLDS = ("minMfuRatio", "maxCheckpointAge")


def _check_default_thresholds(values: dict[str, Any]) -> None:
    """Only thresholds without a default of their own, with values the API would accept."""
    from proctor.api.v1alpha1.experiment import WatchdogThresholds

    unknown = sorted(set(values) - set(DEFAULTABLE_THRESHOLDS))
    if unknown:
        raise ValueError(
            f"default watchdog thresholds {unknown} cannot be set cluster-wide; only "
            f"{list(DEFAULTABLE_THRESHOLDS)} can (the others have defaults in the API itself)"
        )
    try:
        WatchdogThresholds.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ValueError(f"default watchdog thresholds: {where}: {error['msg']}") from None


def _json_object(value: str | None, name: str) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object, got {value!r}")
    return parsed


def _number(value: str | None, kind: type[float] | type[int]) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
