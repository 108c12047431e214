"""Small conventions of Kubernetes object metadata shared by the store, the Job controller and
server-side printing: RFC 3339 timestamps to the second, and generated name suffixes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the real server's: no vowels, no look-alikes


def rfc3339(moment: datetime) -> str:
    return moment.strftime(_TIMESTAMP)


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


def parse_rfc3339(timestamp: str) -> datetime:
    return datetime.strptime(timestamp, _TIMESTAMP).replace(tzinfo=UTC)


def name_suffix(length: int = 5) -> str:
    """Random characters for a generated name (`generateName`, a Job's pods)."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))
