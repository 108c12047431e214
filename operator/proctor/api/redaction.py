"""Credentials out of text that leaves a pod: log tails copied into status, Events and bundles.

Pod output is the user's, and users print environments and URLs. Whatever Proctor copies out of a
pod passes through `redact` first. It recognises the common shapes (cloud access keys, bearer
tokens, `password=...`-style assignments, credentials inside URLs, private key blocks); it cannot
know every secret, so Proctor copies as little pod output as it can, too.
"""

from __future__ import annotations

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
    # NAME=value / "name": "value" where a word of the name says credential (HF_TOKEN, not
    # tokens_per_second or tokenizer_path)
    (
        re.compile(
            r"(?i)(?<![a-z0-9])((?:[a-z0-9]+[_.-])*"
            r"(?:secret|password|passwd|token|api[_-]?key|access[_-]?key|private[_-]?key|"
            r"credentials?)(?:[_.-][a-z0-9]+)*)(?![a-z0-9])(\"?\s*[:=]\s*\"?)([^\s\"',;]+)"
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


def secret_values(environment: Mapping[str, str]) -> list[str]:
    """The values of variables whose names say they hold credentials (AWS_SECRET_ACCESS_KEY,
    HF_TOKEN, ...): what a process must never write out, found in its own environment."""
    return [
        value
        for name, value in environment.items()
        if value and re.fullmatch(SECRET_LIKE_ENV_NAME, name)
    ]
