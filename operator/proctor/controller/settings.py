"""The operator's own configuration: images, storage defaults, timing. From flags or PROCTOR_*
environment variables (what the Helm chart sets), never from a custom resource."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from proctor.api.redaction import redact
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
            raise SettingError(
                "default_bundle_uri",
                f"default bundle URI {self.default_bundle_uri!r}: use s3://bucket/prefix or "
                "file:///absolute/path",
            )
        if self.default_queue and not re.fullmatch(DNS_LABEL, self.default_queue):
            raise SettingError(
                "default_queue",
                f"default queue {self.default_queue!r} is not a Kueue queue name: use a "
                "lowercase DNS label such as gpu-queue",
            )
        for field_name, what in (("prometheus_url", "Prometheus"), ("storage_endpoint", "storage")):
            url = getattr(self, field_name)
            if url and not re.match(r"^https?://", url):
                raise SettingError(
                    field_name, f"{what} URL {redact(url)!r}: use http:// or https://"
                )
            if url and "@" in urllib.parse.urlsplit(url).netloc:
                # It is copied into every training Job's spec, which anyone who may read Jobs sees.
                raise SettingError(
                    field_name,
                    f"{what} URL {redact(url)!r} carries credentials (user@host): give the "
                    "host alone; Proctor passes no credentials in a URL",
                )
        try:
            _check_default_thresholds(self.default_thresholds)
        except ValueError as exc:
            raise SettingError("default_thresholds", str(exc)) from None
        for name in ("resync_seconds", "progress_seconds", "retry_base_seconds"):
            if getattr(self, name) <= 0:
                raise SettingError(name, f"{name} must be above 0, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, **overrides: object) -> ControllerSettings:
        """Settings from PROCTOR_* variables; `overrides` (flags) win where not None. An error
        names the variable and the Helm value that set it."""
        values: dict[str, object] = {}
        for field_name, (variable, _) in VARIABLES.items():
            raw = os.environ.get(variable) or None
            try:
                values[field_name] = _parsed(field_name, raw)
            except ValueError as exc:
                raise ValueError(f"{exc} {_where(field_name)}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]
        except SettingError as exc:
            raise ValueError(f"{exc} {_where(exc.field)}") from None


class SettingError(ValueError):
    """A setting's value is wrong; `field` says which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# Each setting's environment variable and the Helm value that sets it (tests/deploy checks the
# chart against this table), so an error can say where to fix it.
VARIABLES: dict[str, tuple[str, str | None]] = {
    "watchdog_image": ("PROCTOR_WATCHDOG_IMAGE", "image.watchdog"),
    "default_bundle_uri": ("PROCTOR_BUNDLE_URI", "storage.bundleURI"),
    "watchdog_secret": ("PROCTOR_WATCHDOG_SECRET", "storage.existingSecret"),
    "resync_seconds": ("PROCTOR_RESYNC_SECONDS", "operator.resyncSeconds"),
    "progress_seconds": ("PROCTOR_PROGRESS_SECONDS", "operator.progressSeconds"),
    "retry_base_seconds": ("PROCTOR_RETRY_BASE_SECONDS", None),
    "default_queue": ("PROCTOR_DEFAULT_QUEUE", "kueue.defaultQueue"),
    "prometheus_url": ("PROCTOR_PROMETHEUS_URL", "watchdog.prometheusURL"),
    "storage_endpoint": ("PROCTOR_STORAGE_ENDPOINT", "storage.endpoint"),
    "default_thresholds": ("PROCTOR_WATCHDOG_THRESHOLDS", "watchdog.defaultThresholds"),
}


def _parsed(field_name: str, raw: str | None) -> object:
    if field_name.endswith("_seconds"):
        return _number(raw, float)
    if field_name == "default_thresholds":
        return _json_object(raw, VARIABLES[field_name][0])
    return raw


def _where(field_name: str) -> str:
    variable, helm = VARIABLES.get(field_name, (None, None))
    if variable is None:
        return ""
    return f"(from {variable}" + (f", Helm value {helm})" if helm else ")")


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
