"""Read Kubernetes manifests into the API models, with errors that name the field.

Used by `proctor validate`, the operator and the tests, so a user sees the same field-level message
whichever way a bad manifest reaches Proctor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from proctor.api.v1alpha1 import API_VERSION, PATTERN_HINTS, RESOURCES, ProctorResource

_KINDS = {resource.kind: resource.model for resource in RESOURCES}
# pydantic puts the branch of a union or validator chain into `loc`; those are not field names.
_NOT_A_FIELD = re.compile(r"^(int|str|float|bool|constrained-str|[a-z-]+\[.*\])$")


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, in kubectl's path notation (spec.training.budget.maxSteps)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ManifestError(ValueError):
    """A manifest that is not a valid Proctor resource; `errors` lists every field at fault."""

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"{source} is not a valid Proctor resource:\n{lines}")


def parse_manifest(document: Any, source: str = "manifest") -> ProctorResource:
    """The Experiment or ValidationPyramid `document` describes, or a ManifestError."""
    if not isinstance(document, dict):
        raise ManifestError(
            source, [FieldError("(root)", "expected a mapping with apiVersion and kind")]
        )
    kind = document.get("kind")
    if document.get("apiVersion") != API_VERSION or not isinstance(kind, str) or kind not in _KINDS:
        raise ManifestError(
            source,
            [
                FieldError(
                    "apiVersion/kind",
                    f"expected apiVersion {API_VERSION} and kind one of {sorted(_KINDS)}, got "
                    f"{document.get('apiVersion')!r}/{kind!r}",
                )
            ],
        )
    try:
        resource = _KINDS[kind].model_validate(document)
    except ValidationError as exc:
        raise ManifestError(f"{source} ({kind})", field_errors(exc)) from None
    if not resource.metadata.name and not resource.metadata.generate_name:
        raise ManifestError(
            f"{source} ({kind})",
            [FieldError("metadata.name", "required field is missing: every object needs a name")],
        )
    return resource


def load_manifests(path: Path) -> list[ProctorResource]:
    """Every Proctor resource in a YAML file (documents separated by ---)."""
    documents = enumerate(yaml.safe_load_all(path.read_text()), start=1)
    return [parse_manifest(d, f"{path} document {n}") for n, d in documents if d is not None]


def field_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic's errors as FieldErrors, deduplicated, in the order pydantic found them."""
    seen: dict[str, FieldError] = {}
    for error in exc.errors():
        path = _path(error["loc"])
        message = _message(error)
        key = f"{path}\0{message}"
        if key not in seen:
            seen[key] = FieldError(path, message)
    return list(seen.values())


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _NOT_A_FIELD.match(part):
            path += f".{part}" if path else part
    return path or "(root)"


def _message(error: ErrorDetails) -> str:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return (
            "unknown field: check its spelling against `kubectl explain` "
            "(is it nested under the right parent?)"
        )
    if error["type"] == "missing":
        return "required field is missing"
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(str(error.get("ctx", {}).get("pattern", "")))
        if hint:
            return f"{error['input']!r} does not fit: {hint}"
    if error["type"] in ("enum", "literal_error"):
        message = f"{message} (got {error['input']!r})"
    return message
