"""The study contract, shared by the operator (writes digests) and agents (read them).

Experiments with the same `proctor.dev/study` label form a study. Every N concluded ones the
operator writes `digest.md` and `results.tsv` under `<bundle URI>/<namespace>/studies/<study>/`
and links them from the ConfigMap `proctor-study-<study>` (keys digestURI, resultsURI,
concluded, updated). N is the ConfigMap's `digestEvery`, else the newest experiment's
`proctor.dev/digest-every` annotation, else 10.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

STUDY_LABEL = "proctor.dev/study"
DEFAULT_EVERY = 10
EVERY_KEY = "digestEvery"
EVERY_ANNOTATION = "proctor.dev/digest-every"
DIGEST_FILE = "digest.md"
RESULTS_FILE = "results.tsv"


def configmap_name(study: str) -> str:
    """`proctor-study-<study>`, a valid object name, and one per study: a study name that is not
    already one (label values allow capitals, `_` and `.`) gets a hash of itself appended, so
    `A` and `a`, or `x_y` and `x.y`, never share a ConfigMap."""
    if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", study):
        return f"proctor-study-{study}"
    readable = re.sub(r"[^a-z0-9-]", "-", study.lower()).strip("-")
    digest = hashlib.sha256(study.encode()).hexdigest()[:8]
    return f"proctor-study-{readable}-{digest}" if readable else f"proctor-study-{digest}"


def study_prefix(root: str, namespace: str, study: str) -> str:
    """Where a study's files live: under its namespace, like every experiment's."""
    return f"{root.rstrip('/')}/{namespace}/studies/{study}"


def digest_every(configmap: dict[str, Any] | None, experiments: Sequence[dict[str, Any]]) -> int:
    """The study's digest period. A value that is not a positive integer is ignored."""
    candidates = [((configmap or {}).get("data") or {}).get(EVERY_KEY)]
    newest = sorted(
        experiments,
        key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"]),
    )
    candidates += [
        (obj["metadata"].get("annotations") or {}).get(EVERY_ANNOTATION) for obj in reversed(newest)
    ]
    for candidate in candidates:
        if candidate is not None and str(candidate).isdigit() and int(candidate) > 0:
            return int(candidate)
    return DEFAULT_EVERY
