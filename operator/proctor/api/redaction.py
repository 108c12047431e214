"""Credentials out of text that leaves a pod: log tails copied into status, Events and bundles.

Pod output is the user's, and users print environments and URLs. Whatever Proctor copies out of a
pod passes through `redact` first. It recognises the common shapes (cloud access keys, bearer
tokens, `password=...`-style assignments in shell, JSON and Python-repr quoting, credentials
inside URLs, private key blocks); it cannot know every secret, so Proctor copies as little pod
output as it can, too, and a process that knows secret values cuts exactly those as well
(`known_secrets`): the watchdog in bundles, the trainer and the pyramid runner in the termination
messages the operator copies into status and Events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from proctor.api.v1alpha1.code import SECRET_LIKE_ENV_NAME

REDACTED = "[REDACTED]"
_PATTERNS = [
    # PEM private key blocks
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        REDACTED,
    ),
    # AWS access key ids (AKIA.../ASIA...)
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    # Authorization: Bearer <token> / Basic <token>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # user:password@ inside URLs
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@"), rf"\1:{REDACTED}@"),
    # a token as the whole user part of a URL (https://<token>@host, as git and many APIs take it)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@\[\]]+@"), rf"\1{REDACTED}@"),
    # NAME=value / "name": "value" / 'name': 'value' (a Python dict or os.environ printed) where
    # a word of the name says credential (HF_TOKEN, not tokens_per_second or tokenizer_path)
    (
        re.compile(
            r"(?i)(?<![a-z0-9])((?:[a-z0-9]+[_.-])*"
            r"(?:secret|password|passwd|token|api[_-]?key|access[_-]?key|private[_-]?key|"
            r"credentials?)(?:[_.-][a-z0-9]+)*)(?![a-z0-9])(['\"]?\s*[:=]\s*['\"]?)"
            r"([^\s\"',;]+)"
        ),
        rf"\1\2{REDACTED}",
    ),
    # "... token <value>" in prose (an exception message): a long value of letters and digits
    # both, so "token embeddings" or "password reset" stay as they are
    (
        re.compile(
            r"(?i)\b(secret|password|passwd|token|api[_ -]?key|access[_ -]?key)"
            r"(\s+(?:is\s+)?['\"]?)"
            r"(?=[A-Za-z0-9._~+/=-]*[0-9])(?=[A-Za-z0-9._~+/=-]*[A-Za-z])[A-Za-z0-9._~+/=-]{16,}"
        ),
        rf"\1\2{REDACTED}",
    ),
]


def redact(text: str, known: Iterable[str] = ()) -> str:
    """`text` with every recognised credential replaced by [REDACTED], and every one of the
    `known` secret values (say, this process's own credentials) wherever it appears."""
    for value in sorted((v for v in known if len(v) >= 6), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


SECRET_ENV_NAMES = "PROCTOR_SECRET_ENV"
"""A container's variable listing (comma-separated) the names of its variables whose values come
from Secrets (valueFrom.secretKeyRef): the operator sets it, the names only, never a value."""
REDACT_PREFIX = "PROCTOR_REDACT_"
"""The watchdog's variables that hold the trainer's Secret-held values (it may not read Secrets)."""


def known_secrets(environment: Mapping[str, str]) -> list[str]:
    """Every secret value a process can know from its own environment: variables named like
    credentials, those PROCTOR_SECRET_ENV lists, and PROCTOR_REDACT_* (the watchdog's copies),
    each also as JSON writes it (quotes, backslashes and non-ASCII escaped)."""
    listed = {n.strip() for n in environment.get(SECRET_ENV_NAMES, "").split(",") if n.strip()}
    named = {k: v for k, v in environment.items() if k != SECRET_ENV_NAMES}  # names, not values
    values = secret_values(named) + [
        value
        for name, value in environment.items()
        if value and (name in listed or name.startswith(REDACT_PREFIX))
    ]
    escaped = [json.dumps(value)[1:-1] for value in values]
    return list(dict.fromkeys(values + escaped))


def secret_values(environment: Mapping[str, str]) -> list[str]:
    """The values of variables whose names say they hold credentials (AWS_SECRET_ACCESS_KEY,
    HF_TOKEN, ...): what a process must never write out, found in its own environment."""
    return [
        value
        for name, value in environment.items()
        if value and re.fullmatch(SECRET_LIKE_ENV_NAME, name)
    ]
