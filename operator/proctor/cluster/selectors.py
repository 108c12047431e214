"""Label and field selectors, as `kubectl -l` and `--field-selector` send them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET_TERM = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


class SelectorError(ValueError):
    """A selector the server cannot parse; becomes a 400 BadRequest."""


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses (`env in (a,b),tier=web`)."""
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def label_selector(selector: str | None) -> Predicate:
    """A predicate over objects for a label selector (equality, set-based, existence)."""
    if not selector:
        return lambda obj: True
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        _check_term(term)
        checks.append(_label_check(term))

    def matches(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return matches


def required_labels(selector: str | None) -> dict[str, str]:
    """The `key=value` terms of a label selector: labels every object it matches carries (a
    store narrows its candidates by them; the predicate of label_selector still decides)."""
    required: dict[str, str] = {}
    for term in _split_terms(selector or ""):
        if _SET_TERM.match(term) or "!=" in term or "=" not in term:
            continue
        key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
        required.setdefault(key, value)  # a second value for the key: the predicate refuses all
    return required


def _label_check(term: str) -> Callable[[dict[str, str]], bool]:
    if match := _SET_TERM.match(term):
        key, op, raw = match.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if "!=" in term:
        key, value = (p.strip() for p in term.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in term:
        key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
        return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        absent = term[1:].strip()
        return lambda labels: absent not in labels
    return lambda labels: term in labels


def _check_term(term: str) -> None:
    """Refuse keys and values that are not valid label keys and values, as the server does."""
    if match := _SET_TERM.match(term):
        key, values = match.group(1), [v.strip() for v in match.group(3).split(",")]
    else:
        key, _, value = term.lstrip("!").replace("==", "=").replace("!=", "=").partition("=")
        values = [value.strip()]
    if not _KEY.match(key.strip()) or not all(_VALUE.match(v) for v in values):
        raise SelectorError(f"unable to parse requirement: {term!r}: invalid label key or value")


def field_selector(selector: str | None) -> Predicate:
    """A predicate for a field selector: `path=value`, `path==value`, `path!=value`, comma-joined.

    Any dotted path into the object works (the real server allows a per-resource subset, which
    includes metadata.name, metadata.namespace, status.phase on pods, involvedObject.* on events).
    """
    if not selector:
        return lambda obj: True
    checks: list[tuple[list[str], str, bool]] = []
    for term in _split_terms(selector):
        negate = "!=" in term
        parts = term.split("!=", 1) if negate else term.replace("==", "=").split("=", 1)
        if len(parts) != 2 or not parts[0].strip():
            raise SelectorError(f"invalid field selector term: {term!r}")
        checks.append((parts[0].strip().split("."), parts[1].strip(), negate))

    def matches(obj: dict[str, Any]) -> bool:
        for path, value, negate in checks:
            actual: Any = obj
            for part in path:
                actual = actual.get(part) if isinstance(actual, dict) else None
            equal = ("" if actual is None else str(actual)) == value
            if equal == negate:
                return False
        return True

    return matches
