"""What a reconcile decided: objects to create or delete, the status to write, Events to post.
The handlers carry a plan out; the reconcilers that make plans touch no server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"  # or "Warning"


@dataclass
class Plan:
    status: dict[str, Any]
    """The whole status, as written to the status subresource."""
    create: list[dict[str, Any]] = field(default_factory=list)
    """Objects to create, in order; one that exists already (409) is fine: names are fixed."""
    delete: list[tuple[str, str, str]] = field(default_factory=list)
    """(apiVersion, kind, name) in the object's namespace; deletion propagates to dependents."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    """Reconcile again after this many seconds even if nothing changes (a retry is due)."""
