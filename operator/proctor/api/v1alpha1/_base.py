"""Building blocks shared by every model: the base class, constrained scalar types, schema markers.

The markers attach Kubernetes-only schema keywords (`x-kubernetes-*`) to a field or model through
pydantic's `json_schema_extra`; `proctor.api.schema` turns them into the CRD's structural schema.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "proctor.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes resource.Quantity without a sign: requests and limits are never negative.
QUANTITY_PATTERN = (
    r"^(\+)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# A Go-style duration in whole hours, minutes and seconds ("90s", "30m", "2h30m"), not zero:
# some component has a non-zero digit (RE2, which the API server uses, has no lookahead).
DURATION_PATTERN = r"^([0-9]+[hms])*0*[1-9][0-9]*[hms]([0-9]+[hms])*$"
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Object storage the watchdog and trainer can write to: S3-compatible or a local directory.
# Every experiment writes under <uri>/<namespace>/<name>/, so no path segment may step out of
# it: no '.' or '..' segments, no empty ones ('//'), no '%' (an encoded '..' or '/' that some
# layer might decode), no backslash and no control characters (RE2 has no lookahead, hence the
# three spellings of a segment: not starting with '.', '.' then a non-dot, or '..' and more).
_URI_CHAR = r"[^/%\\\x00-\x1f\x7f]"
_URI_NON_DOT = r"[^/.%\\\x00-\x1f\x7f]"
_URI_SEGMENT = f"({_URI_NON_DOT}{_URI_CHAR}*|\\.{_URI_NON_DOT}{_URI_CHAR}*|\\.\\.{_URI_CHAR}+)"
STORAGE_URI_PATTERN = (
    f"^(s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9](/{_URI_SEGMENT})*/?"
    f"|file://(/{_URI_SEGMENT})+/?|file:///)$"
)

# What to tell a user whose value does not match a pattern (pydantic would print the regex).
PATTERN_HINTS = {
    QUANTITY_PATTERN: "write a Kubernetes quantity like 4, 500m or 16Gi",
    DURATION_PATTERN: "write a duration above zero in whole units, like 90s, 30m or 2h30m",
    ENTRYPOINT_PATTERN: "write it as package.module:function, for example digits_mlp:setup",
    DNS_SUBDOMAIN_PATTERN: "use lower-case letters, digits, '-' and '.', like a Kubernetes name",
    STORAGE_URI_PATTERN: "use s3://bucket/prefix or file:///absolute/path, without '.' or '..' "
    "segments, '//', '%', '\\' or control characters (each experiment writes under "
    "<uri>/<namespace>/<name>/, and nothing may step out of it)",
}

# Names become Job, pod and label names with a suffix ("-l0-1234a"): 63 characters at most.
MAX_NAME_LENGTH = 50
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_TOO_LONG = (
    f"metadata.name must be at most {MAX_NAME_LENGTH} characters of lower-case letters, digits "
    "and '-' (no dots): Proctor derives Job, pod, host and label names from it, which Kubernetes "
    "limits to 63-character DNS labels"
)
NAME_LENGTH_RULE = (
    f"!has(self.metadata.name) || (size(self.metadata.name) <= {MAX_NAME_LENGTH} "
    f"&& self.metadata.name.matches('{DNS_LABEL_PATTERN}'))"
)

MAX_LABEL_VALUE = 63
"""Kubernetes label values are at most 63 characters."""

# Bounds on free text keep objects small (etcd) and CEL cost estimates finite.
SHORT_TEXT = 253
LONG_TEXT = 4096


MAX_QUANTITY_LENGTH = 64


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{value} is negative: a resource quantity is 0 or more")
    if isinstance(value, str) and not (
        len(value) <= MAX_QUANTITY_LENGTH and re.fullmatch(QUANTITY_PATTERN, value)
    ):
        raise ValueError(f"{value!r} is not a Kubernetes quantity: write it like 4, 500m or 16Gi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
            "maxLength": MAX_QUANTITY_LENGTH,
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes quantity such as 4, "500m", "16Gi"; the CRD schema says int-or-string."""
MAX_DURATION = "2562047h"
DURATION_TOO_LONG = (
    f"a duration is at most {MAX_DURATION} (about 292 years): a longer one overflows the clocks "
    "of Kubernetes and Go, which count nanoseconds in 64 bits"
)


def _check_duration(value: str) -> str:
    if duration_seconds(value) > duration_seconds(MAX_DURATION):
        raise ValueError(DURATION_TOO_LONG)
    return value


Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, max_length=32),
    AfterValidator(_check_duration),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 32,
            "pattern": DURATION_PATTERN,
            "x-kubernetes-validations": [
                {
                    "rule": f"duration(self) <= duration('{MAX_DURATION}')",
                    "message": DURATION_TOO_LONG,
                }
            ],
        }
    ),
]
"""A duration like "90s" or "2h30m", at most MAX_DURATION (the API server checks it with CEL)."""
ObjectName = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
StorageURI = Annotated[str, StringConstraints(pattern=STORAGE_URI_PATTERN, max_length=1024)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=SHORT_TEXT)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=LONG_TEXT)]

_DURATION_PART = re.compile(r"([0-9]+)([hms])")
_SECONDS_PER_UNIT = {"h": 3600, "m": 60, "s": 1}


def duration_seconds(duration: str) -> int:
    """Whole seconds in a duration such as "2h30m" (the format `Duration` fields accept)."""
    if not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"{duration!r} is not a duration: write it like 90s, 30m or 2h30m")
    return sum(
        int(amount) * _SECONDS_PER_UNIT[unit] for amount, unit in _DURATION_PART.findall(duration)
    )


_QUANTITY_PARTS = re.compile(
    r"\+?(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>[KMGTPE]i)|[eE](?P<exponent>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"|(?P<decimal>[numkMGTPE]?))"
)
_BINARY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SUFFIX = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}


def quantity_value(quantity: int | str) -> Decimal:
    """The amount a Kubernetes quantity stands for: "1Gi" and "1024Mi" are equal, as are
    "500m" and "0.5"."""
    if isinstance(quantity, int):
        return Decimal(quantity)
    match = _QUANTITY_PARTS.fullmatch(quantity)
    if match is None:
        raise ValueError(
            f"{quantity!r} is not a Kubernetes quantity: write it like 4, 500m or 16Gi"
        )
    number = Decimal(match["number"])
    if match["binary"]:
        return number * Decimal(2 ** _BINARY_SUFFIX[match["binary"]])
    if match["exponent"] is not None:
        return number.scaleb(int(Decimal(match["exponent"])))
    return number.scaleb(_DECIMAL_SUFFIX[match["decimal"] or ""])


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel_rule(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry: a CEL rule the API server enforces."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def cel_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    """Schema extra carrying CEL rules; use as `json_schema_extra=cel_rules(...)`."""
    return {"x-kubernetes-validations": list(rules)}


FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
"""Schema extra for the few fields whose content is deliberately free-form (user config)."""


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extra for a list that the API server merges by key (like `conditions` by `type`)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}
