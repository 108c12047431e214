"""The operator's own configuration: images, storage defaults, timing. From flags or PROCTOR_*
environment variables (what the Helm chart sets), never from a custom resource."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

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

    def __post_init__(self) -> None:
        if self.default_bundle_uri and not re.fullmatch(
            STORAGE_URI_PATTERN, self.default_bundle_uri
        ):
            raise ValueError(
                f"default bundle URI {self.default_bundle_uri!r}: use s3://bucket/prefix or "
                "file:///absolute/path"
            )
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
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


def _number(value: str | None, kind: type[float] | type[int]) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
