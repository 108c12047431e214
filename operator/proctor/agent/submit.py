"""`submit FILE`: check a manifest offline against the API models, then create it.

Checking first means a typo costs no round trip and gets the same field-level message as
`proctor validate`; the API server still has the last word (CEL rules, names taken), and its
refusal comes back with the fields it names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proctor.agent.connection import Connection
from proctor.agent.errors import AgentError
from proctor.agent.models import SubmitResult, SubmittedObject
from proctor.api.manifests import ManifestError, parse_manifest
from proctor.kube import AlreadyExistsError, KubeError, RejectedError


def read_documents(text: str, source: str) -> list[dict[str, Any]]:
    """The YAML documents of `text`, each checked against the models; an AgentError naming
    every field at fault otherwise."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise AgentError(
            f"cannot read {source} as YAML: {exc}", "fix the YAML syntax at the line named"
        ) from None
    if not documents:
        raise AgentError(f"{source} holds no documents", "write an Experiment manifest into it")
    for number, document in enumerate(documents, start=1):
        try:
            parse_manifest(document, f"{source} document {number}")
        except ManifestError as exc:
            raise AgentError(
                f"{exc.source} is not a valid Proctor resource; nothing was submitted",
                "fix the fields listed (`kubectl explain experiment.spec` describes each one), "
                "then submit again",
                [str(e) for e in exc.errors],
            ) from None
    return documents


def submit(connection: Connection, path: Path) -> SubmitResult:
    """Create every resource in the manifest file `path`."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(f"cannot read {path}: {exc}", "pass the path of a manifest file") from None
    return submit_text(connection, text, str(path))


def submit_text(connection: Connection, text: str, source: str = "manifest") -> SubmitResult:
    """Create every resource in the YAML `text` in the connection's namespace (or the one a
    manifest names); stops at the first refusal, reporting what was created before it."""
    created: list[SubmittedObject] = []
    for document in read_documents(text, source):
        meta = document.setdefault("metadata", {})
        meta.setdefault("namespace", connection.namespace)
        try:
            stored = connection.kube.create_new(document)
        except AlreadyExistsError:
            raise AgentError(
                f"{document['kind']} {meta.get('name')} exists already in namespace "
                f"{meta['namespace']}{_created_before(created)}",
                "an experiment's record is never overwritten: give the new one another "
                "metadata.name and cite the old one in spec.hypothesis.inspiredBy "
                "(kind: Experiment); `proctor status NAME` shows the existing one",
            ) from None
        except RejectedError as exc:
            raise AgentError(
                f"the API server refused {document['kind']} {meta.get('name')}: "
                f"{exc}{_created_before(created)}",
                "fix the fields named and submit again",
                [
                    f"{c['field']}: {c['message']}" if c["field"] else c["message"]
                    for c in exc.causes
                ],
            ) from None
        except KubeError as exc:
            raise AgentError(
                f"could not create {document['kind']} {meta.get('name')}: {exc}"
                f"{_created_before(created)}",
                "check that the cluster answers (`kubectl get exp`) and that the Proctor CRDs "
                "are installed (`kubectl apply -f crds/`), then submit again",
            ) from None
        stored_meta = stored.get("metadata", {})
        created.append(
            SubmittedObject(
                kind=document["kind"],
                name=stored_meta.get("name", meta.get("name", "")),
                namespace=stored_meta.get("namespace", meta["namespace"]),
                uid=stored_meta.get("uid"),
            )
        )
    experiments = [c.name for c in created if c.kind == "Experiment"]
    hint = (
        f"follow it with `proctor wait {experiments[0]} --for Training,Succeeded,Failed` and read "
        "the pyramid's failed checks if it stops in Failed"
        if experiments
        else "follow it with `kubectl get vp -w`"
    )
    return SubmitResult(submitted=created, next=hint)


def _created_before(created: list[SubmittedObject]) -> str:
    if not created:
        return ""
    return " (created before it: " + ", ".join(f"{c.kind}/{c.name}" for c in created) + ")"
