"""`study NAME`: the digest the operator distils from a study's concluded experiments.

Every N concluded experiments of a study (label proctor.dev/study) the operator writes
`digest.md` and `results.tsv` to object storage and links them from the ConfigMap
`proctor-study-<study>` (keys digestURI, resultsURI, concluded, updated). An agent reads the
digest before stating its next hypothesis: which directions were productive, the current best,
the open questions.
"""

from __future__ import annotations

from typing import Any

from proctor.agent.connection import API_VERSION, Connection
from proctor.agent.errors import AgentError
from proctor.agent.models import StudyDigest
from proctor.api.studies import DIGEST_FILE, STUDY_LABEL, configmap_name, digest_every
from proctor.kube import KubeError
from proctor.storage import open_store


def split_uri(uri: str) -> tuple[str, str]:
    """A file's URI as (its store's URI, its key); a directory's URI gets digest.md as key."""
    uri = uri.rstrip("/")
    if uri.endswith(".md"):
        base, _, key = uri.rpartition("/")
        return base, key
    return uri, DIGEST_FILE


def study(connection: Connection, name: str) -> StudyDigest:
    """The latest digest of study `name` in the connection's namespace."""
    try:
        configmap = connection.kube.get(
            "v1", "ConfigMap", connection.namespace, configmap_name(name)
        )
    except KubeError as exc:
        raise AgentError(
            f"cannot read ConfigMap {configmap_name(name)}: {exc}",
            "check that the cluster answers (`kubectl get configmaps`), then ask again",
        ) from None
    data = (configmap or {}).get("data") or {}
    digest_uri = data.get("digestURI")
    if not digest_uri:  # no ConfigMap yet, or only the one a person made to set digestEvery
        raise _no_digest_yet(connection, name, configmap)
    base, key = split_uri(digest_uri)
    try:
        text = open_store(base).get(key).decode(errors="replace")
    except Exception as exc:  # file and S3 errors alike: the link is there, the file is not
        raise AgentError(
            f"cannot read the digest of study {name} at {digest_uri}: {type(exc).__name__}: {exc}",
            "check the storage credentials and endpoint (AWS_* variables, AWS_ENDPOINT_URL)",
        ) from None
    concluded = data.get("concluded")
    return StudyDigest(
        study=name,
        namespace=connection.namespace,
        digest_uri=digest_uri,
        results_uri=data.get("resultsURI"),
        concluded=int(concluded) if concluded and str(concluded).isdigit() else None,
        updated=data.get("updated"),
        digest=text,
    )


def _no_digest_yet(
    connection: Connection, name: str, configmap: dict[str, Any] | None
) -> AgentError:
    hint = (
        f"label experiments `{STUDY_LABEL}: {name}` and conclude them "
        "(`proctor conclude NAME ...`); meanwhile read their conclusions with "
        f"`kubectl get exp -l {STUDY_LABEL}={name}`"
    )
    try:
        members = connection.kube.select(
            API_VERSION, "Experiment", connection.namespace, {STUDY_LABEL: name}
        )
    except KubeError:
        members = None  # the count is a courtesy; the message stands without it
    every = digest_every(configmap, members or [])
    message = f"no digest yet for study {name}: it is written every {every} concluded experiments"
    if members is not None:
        concluded = sum(1 for e in members if (e.get("status") or {}).get("phase") == "Concluded")
        message += f"; {concluded} of its {len(members)} experiments are concluded so far"
    return AgentError(message, hint)
