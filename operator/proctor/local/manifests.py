"""Read the manifests a local run applies, check them, and create them in the cluster."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from proctor.api.manifests import ManifestError, load_manifests
from proctor.kube import KubeClient, KubeError


class ApplyError(ValueError):
    """A manifest cannot be read, is invalid, or the cluster refused it; the message says why."""


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    namespace: str


def read_manifests(paths: list[Path], namespace: str) -> list[dict[str, Any]]:
    """Every document of `paths`, checked against the API models (the same field-level errors
    as `proctor validate`), with `namespace` filled in where a document names none."""
    documents: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in paths:
        try:
            load_manifests(path)
            loaded = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{path}: cannot read it as YAML: {exc}")
            continue
        for document in loaded:
            document.setdefault("metadata", {}).setdefault("namespace", namespace)
            documents.append(document)
    if problems:
        raise ApplyError("\n".join(problems))
    names = [(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"]) for d in documents]
    repeated = sorted({f"{k}/{n}" for k, ns, n in names if names.count((k, ns, n)) > 1})
    if repeated:
        raise ApplyError(f"named twice across the files: {', '.join(repeated)}; rename one")
    if not documents:
        raise ApplyError("the files hold no Experiment or ValidationPyramid")
    return documents


def create_all(kube: KubeClient, documents: list[dict[str, Any]], replace: bool) -> list[Applied]:
    """Create every document. One that exists already is an error, since an Experiment's record
    must describe what ran, unless `replace` deletes it (and what it owns) first."""
    applied = []
    for document in documents:
        meta = document["metadata"]
        target = (document["apiVersion"], document["kind"], meta["namespace"], meta["name"])
        try:
            if replace and kube.get(*target) is not None:
                kube.delete(*target)
                _wait_gone(kube, target)
            if not kube.create(document):
                raise ApplyError(
                    f"{document['kind']}/{meta['name']} exists already in namespace "
                    f"{meta['namespace']}: delete it (kubectl delete {document['kind'].lower()} "
                    f"{meta['name']}), rename it, or pass --replace"
                )
        except KubeError as exc:
            raise ApplyError(
                f"{document['kind']}/{meta['name']}: the cluster refused it: {exc}"
            ) from None
        applied.append(Applied(document["kind"], meta["name"], meta["namespace"]))
    return applied


def _wait_gone(kube: KubeClient, target: tuple[str, str, str, str]) -> None:
    deadline = time.monotonic() + 60
    while kube.get(*target) is not None:
        if time.monotonic() > deadline:
            raise ApplyError(f"{target[1]}/{target[3]} is still being deleted after 60s")
        time.sleep(0.5)
