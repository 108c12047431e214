"""Where things live in object storage: one convention shared by the trainer (writes
checkpoints), the operator (reports them in status) and the watchdog (lists them in bundles).

    <checkpoint uri>/<namespace>/<experiment>/step-000000100/...   a checkpoint
    <bundle uri>/<namespace>/<experiment>/<UTC time>-<kind>-<hash>/...   a recovery bundle

Every experiment writes under its own namespace and name, so two experiments that share a bucket
never resume from, or overwrite, each other's state. Nothing may step out of that prefix: the
store URI has no '.', '..' or empty segments, no '%' (an encoded '..' or '/' that some layer
might decode) and no backslash or control characters (the API's storage URI pattern), and the
namespace and name are DNS labels. `experiment_prefix` refuses anything else rather than build a
key from it, and `bundle_location` is how a reader (`proctor bundle fetch`, the agent tools)
checks a bundle URI a person, an agent or a status field hands it before any storage access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proctor.api.v1alpha1._base import DNS_LABEL_PATTERN, STORAGE_URI_PATTERN

BUNDLE_DIRECTORY_PATTERN = r"^\d{8}T\d{6}Z-[A-Za-z]+(-[0-9a-f]+)?$"
"""A bundle's directory name, as the watchdog writes it: `20261122T051200Z-NonFiniteLoss-3f9a1c`."""
_SCHEMES = ("s3://", "file://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LayoutError(ValueError):
    """A storage URI, namespace or name that would place an object outside its experiment's
    prefix; the message says what is wrong and what a good one looks like."""


def experiment_prefix(base_uri: str, namespace: str, name: str) -> str:
    """The experiment's own directory under a storage URI (s3://... or file:///...). Raises
    LayoutError for a URI that could step out of it, or a namespace or name that is not a DNS
    label (the API server allows no other, so this guards against a bug, not a user)."""
    check_storage_uri(base_uri)
    _check_label(namespace, "namespace")
    _check_label(name, "experiment name")
    return f"{base_uri.rstrip('/')}/{namespace}/{name}"


def checkpoint_directory(step: int) -> str:
    """A checkpoint's directory name under the experiment's prefix: sortable by step."""
    return f"step-{step:09d}"


def check_storage_uri(uri: str) -> str:
    """`uri` if it is a store URI Proctor writes under; LayoutError naming the problem if not."""
    problem = _uri_problem(uri)
    if problem is not None:
        raise LayoutError(
            f"storage URI {_shown(uri)} {problem}: write s3://bucket/prefix or "
            "file:///absolute/path; every experiment writes under <uri>/<namespace>/<name>/"
        )
    return uri


@dataclass(frozen=True)
class BundleLocation:
    """A bundle's directory URI, taken apart: `<base>/<namespace>/<experiment>/<directory>`."""

    base: str
    namespace: str
    experiment: str
    directory: str

    @property
    def prefix(self) -> str:
        """The experiment's bundle prefix, `<base>/<namespace>/<experiment>`."""
        return f"{self.base}/{self.namespace}/{self.experiment}"

    @property
    def uri(self) -> str:
        return f"{self.prefix}/{self.directory}"


BUNDLE_URI_HINT = (
    "give a bundle's directory as `proctor bundles NAME` or status.anomalies[].bundleURI names "
    "it: s3://bucket/prefix/<namespace>/<experiment>/<time>-<kind>-<hash> (or file:///...)"
)


def bundle_location(uri: str) -> BundleLocation:
    """The parts of a bundle's directory URI; LayoutError when `uri` is not one: another scheme
    or a plain path, a '..', '.', '%'-encoded or empty segment, or a shape other than
    `<base>/<namespace>/<experiment>/<time>-<kind>-<hash>`. Pure: no storage is touched."""
    problem = _uri_problem(uri)
    if problem is not None:
        raise LayoutError(f"refused bundle URI {_shown(uri)}: it {problem}; {BUNDLE_URI_HINT}")
    namespace, experiment, directory = ([""] * 3 + uri.rstrip("/").split("/"))[-3:]
    base = uri.rstrip("/").removesuffix(f"/{namespace}/{experiment}/{directory}")
    shape_problem = None
    if not re.fullmatch(BUNDLE_DIRECTORY_PATTERN, directory):
        shape_problem = f"does not end in a bundle's directory (got {directory!r})"
    elif not (_is_label(namespace) and _is_label(experiment)):
        shape_problem = "has no <namespace>/<experiment> before the bundle's directory"
    elif _uri_problem(base) is not None or base in ("file://", "file:///"):
        shape_problem = "names no store above <namespace>/<experiment>"
    if shape_problem is not None:
        raise LayoutError(
            f"refused bundle URI {_shown(uri)}: it {shape_problem}; {BUNDLE_URI_HINT}"
        )
    return BundleLocation(base, namespace, experiment, directory)


def _uri_problem(uri: str) -> str | None:
    """Why `uri` is not a store URI Proctor reads or writes under, or None."""
    if not uri.startswith(_SCHEMES):
        return "is neither an s3:// nor a file:// URI"
    if _CONTROL.search(uri):
        return "contains a control character"
    if "\\" in uri:
        return "contains a backslash"
    if "%" in uri:
        return "contains '%': an encoded character (like %2e%2e for '..') is never part of one"
    # After the bucket (s3://bucket/...) or the root (file:///...); a trailing '/' is fine.
    segments = uri.split("://", 1)[1].split("/")[1:]
    inner = segments[:-1] if segments and segments[-1] == "" else segments
    if ".." in inner:
        return "has a '..' segment, which would step out of the experiment's prefix"
    if "." in inner:
        return "has a '.' segment"
    if "" in inner:
        return "has an empty segment ('//')"
    if not re.fullmatch(STORAGE_URI_PATTERN, uri):
        return "has no valid bucket (3 to 63 lower-case letters, digits, '.' and '-')"
    return None


def _is_label(value: str) -> bool:
    return len(value) <= 63 and re.fullmatch(DNS_LABEL_PATTERN, value) is not None


def _check_label(value: str, what: str) -> None:
    if not _is_label(value):
        raise LayoutError(
            f"{what} {_shown(value)} is not a DNS label (lower-case letters, digits and '-', at "
            "most 63): it would not name one directory under the store"
        )


def _shown(value: str) -> str:
    """`value` quoted for a message, and cut: a hostile URI must not flood a log line."""
    return repr(value if len(value) <= 200 else value[:200] + "...")
