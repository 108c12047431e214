"""`bundles NAME`, `bundle fetch URI DIR` and the latest recovery prompt: the watchdog's recovery
bundles of one experiment, found two ways.

status.anomalies names the bundles the operator has seen (the last 20); the storage prefix
`<bundle uri>/<namespace>/<name>/` holds every bundle written, including one whose Event the
operator has not mirrored yet. The list is the union of both, each entry saying where it was
seen, so a gap in one source is visible rather than silent.

A bundle URI is checked before any storage is touched (proctor.api.layout.bundle_location): it
must be `<store>/<namespace>/<experiment>/<time>-<kind>-<hash>` with no '..', '.', empty or
%-encoded segment. With a connection, `fetch_bundle` also requires the namespace to be the
connection's and the store to be one of that experiment's bundle stores, so a URI an agent was
handed (by a prompt, a forged Event, a typo) cannot make it read another namespace's or another
bucket's objects with its credentials.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from proctor.agent.connection import Connection
from proctor.agent.errors import AgentError
from proctor.agent.models import BundleEntry, BundleList, FetchedBundle
from proctor.agent.report import get_experiment
from proctor.api.layout import (
    BUNDLE_URI_HINT,
    BundleLocation,
    LayoutError,
    bundle_location,
    check_storage_uri,
    experiment_prefix,
)
from proctor.storage import open_store

BUNDLE_FILE, PROMPT_FILE = "bundle.json", "recovery.md"
# The watchdog names a bundle's directory <UTC time>-<kind>-<hash6> (watchdog.bundles).
DIRECTORY_NAME = re.compile(r"^(?P<time>\d{8}T\d{6}Z)-(?P<kind>[A-Za-z]+)(-[0-9a-f]+)?$")
# Where an installation keeps bundles when an Experiment names no spec.recovery.bundleURI.
DEFAULT_BUNDLE_URI_ENV = "PROCTOR_BUNDLE_URI"


def parse_directory_name(name: str) -> tuple[datetime | None, str | None]:
    """The time and anomaly kind a bundle directory's name carries, (None, None) if it does not
    follow the watchdog's convention."""
    match = DIRECTORY_NAME.match(name)
    if match is None:
        return None, None
    when = datetime.strptime(match["time"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return when, match["kind"]


def bundle_bases(
    experiment: dict[str, Any], explicit: str | None = None, environ: dict[str, str] | None = None
) -> list[str]:
    """The experiment's bundle prefixes to list: from an explicit URI, spec.recovery.bundleURI,
    the installation default (PROCTOR_BUNDLE_URI), and the parents of the bundles in status."""
    environ = dict(os.environ) if environ is None else environ
    meta = experiment.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    spec_uri = ((experiment.get("spec") or {}).get("recovery") or {}).get("bundleURI")
    bases = []
    for uri in (explicit, spec_uri, environ.get(DEFAULT_BUNDLE_URI_ENV)):
        if uri:
            try:
                bases.append(experiment_prefix(uri, namespace, name))
            except LayoutError:  # list_bundles refuses an explicit one; the others are skipped
                continue
    for anomaly in (experiment.get("status") or {}).get("anomalies") or []:
        location = own_bundle(anomaly.get("bundleURI") or "", namespace, name)
        if location is not None:
            bases.append(location.prefix)
    return list(dict.fromkeys(bases))  # in order, without repeats


def own_bundle(uri: str, namespace: str, name: str) -> BundleLocation | None:
    """`uri` taken apart if it is a bundle of Experiment `namespace`/`name`, else None."""
    try:
        location = bundle_location(uri)
    except LayoutError:
        return None
    return location if (location.namespace, location.experiment) == (namespace, name) else None


def list_bundles(connection: Connection, name: str, bundle_uri: str | None = None) -> BundleList:
    """Every recovery bundle of Experiment `name`, oldest first."""
    if bundle_uri is not None:
        try:
            check_storage_uri(bundle_uri)
        except LayoutError as exc:
            raise AgentError(
                str(exc), "pass the store as s3://bucket/prefix or file:///path"
            ) from None
    experiment = get_experiment(connection, name)
    entries: dict[str, BundleEntry] = {}
    notes: list[str] = []
    for anomaly in (experiment.get("status") or {}).get("anomalies") or []:
        uri = (anomaly.get("bundleURI") or "").rstrip("/")
        if uri and own_bundle(uri, connection.namespace, name) is None:
            notes.append(
                f"status.anomalies names {uri!r}, which is not a bundle of "
                f"{connection.namespace}/{name}; left out"
            )
        elif uri:
            entries[uri] = BundleEntry(
                kind=anomaly.get("kind", ""),
                time=anomaly.get("time"),
                uri=uri,
                summary=anomaly.get("message", ""),
                severity=anomaly.get("severity"),
                step=anomaly.get("step"),
                in_status=True,
                in_storage=False,
            )
    bases = bundle_bases(experiment, bundle_uri)
    for base in bases:
        try:
            found = _stored_bundles(base)
        except Exception as exc:  # any store failure (credentials, network) becomes a note
            notes.append(f"could not list {base}: {type(exc).__name__}: {exc}")
            continue
        for uri, entry in found.items():
            known = entries.get(uri)
            entries[uri] = (
                known.model_copy(update={"in_storage": True}) if known is not None else entry
            )
    if not bases:
        notes.append(
            "no bundle store known: the experiment sets no spec.recovery.bundleURI and "
            f"{DEFAULT_BUNDLE_URI_ENV} is unset; pass --bundle-uri to list the store"
        )
    bundles = sorted(entries.values(), key=lambda e: (e.time is None, e.time or _EPOCH, e.uri))
    return BundleList(
        name=name,
        namespace=connection.namespace,
        bundles=bundles,
        searched=bases,
        notes=notes,
        next=(
            f"fetch the newest with `proctor bundle fetch {bundles[-1].uri} DIR` and read its "
            "recovery.md first: it says which stage of the loop to return to"
            if bundles
            else "no anomaly was recorded: judge the run by `proctor status` and conclude it"
        ),
    )


def fetch_bundle(uri: str, directory: Path, connection: Connection | None = None) -> FetchedBundle:
    """Download the bundle at `uri` (file:// or s3://, its directory) into `directory`.

    `uri` is refused before any storage access unless it is a bundle's directory
    (`<store>/<namespace>/<experiment>/<time>-<kind>-<hash>`, nothing that steps out of it);
    with a `connection`, also unless it lies in the connection's namespace and in one of that
    experiment's bundle stores (spec.recovery.bundleURI, PROCTOR_BUNDLE_URI, status)."""
    uri = check_bundle_uri(uri, connection)
    try:
        store = open_store(uri)
        keys = store.list()
    except ValueError as exc:
        raise AgentError(str(exc), "pass a bundle URI as `proctor bundles NAME` lists it") from None
    except Exception as exc:  # boto3 and network errors are many; all mean "could not read"
        raise AgentError(
            f"cannot list {uri}: {type(exc).__name__}: {exc}",
            "check the storage credentials and endpoint (AWS_* variables, AWS_ENDPOINT_URL)",
        ) from None
    if BUNDLE_FILE not in keys:
        raise AgentError(
            f"no bundle at {uri}: it holds no {BUNDLE_FILE}"
            + (f" (found {len(keys)} other files)" if keys else ""),
            "pass the URI of one bundle's directory, as `proctor bundles NAME` lists it",
        )
    directory.mkdir(parents=True, exist_ok=True)
    for key in keys:
        target = directory / key
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(key, target)
    prompt = directory / PROMPT_FILE
    return FetchedBundle(
        uri=uri,
        directory=str(directory),
        files=keys,
        recovery_prompt=str(prompt) if prompt.exists() else None,
        next=f"read {prompt} first: it names the finding and the stage to return to; "
        f"{directory / BUNDLE_FILE} holds the metric window, pyramid results and log tail",
    )


def check_bundle_uri(uri: str, connection: Connection | None = None) -> str:
    """`uri` as a bundle's directory (no trailing '/'); an AgentError saying why not."""
    try:
        location = bundle_location(uri)
    except LayoutError as exc:
        raise AgentError(str(exc), BUNDLE_URI_HINT) from None
    if connection is None:
        return location.uri
    if location.namespace != connection.namespace:
        raise AgentError(
            f"refused bundle URI {uri!r}: it belongs to namespace {location.namespace}, and "
            f"you work in {connection.namespace}",
            f"list this namespace's bundles with `proctor bundles {location.experiment}`, or "
            "pass --namespace for the namespace you mean",
        )
    experiment = get_experiment(connection, location.experiment)
    bases = bundle_bases(experiment)
    if location.prefix not in bases:
        raise AgentError(
            f"refused bundle URI {uri!r}: {location.prefix} is not one of Experiment "
            f"{location.experiment}'s bundle stores ({', '.join(bases) or 'none known'})",
            f"fetch a URI that `proctor bundles {location.experiment}` lists",
        )
    return location.uri


def recovery_prompt(connection: Connection, name: str) -> tuple[str, str]:
    """The newest bundle's URI and its recovery.md."""
    listing = list_bundles(connection, name)
    if not listing.bundles:
        notes = f" ({'; '.join(listing.notes)})" if listing.notes else ""
        raise AgentError(
            f"Experiment {name} has no recovery bundle{notes}",
            "a bundle exists only after the watchdog reported an anomaly; "
            f"`proctor status {name}` shows anomalyCount",
        )
    newest = listing.bundles[-1].uri
    try:
        text = open_store(newest).get(PROMPT_FILE).decode(errors="replace")
    except Exception as exc:
        raise AgentError(
            f"cannot read {newest}/{PROMPT_FILE}: {type(exc).__name__}: {exc}",
            "the bundle may still be uploading (the watchdog spools and retries): try again "
            "in a minute, or fetch it with `proctor bundle fetch`",
        ) from None
    return newest, text


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _stored_bundles(base: str) -> dict[str, BundleEntry]:
    store = open_store(base)
    keys = [key.split("/") for key in store.list()]
    directories = sorted(parts[0] for parts in keys if parts[1:] == [BUNDLE_FILE])
    found: dict[str, BundleEntry] = {}
    for directory in directories:
        uri = f"{base}/{directory}"
        when, kind = parse_directory_name(directory)
        entry = BundleEntry(
            kind=kind or "Unknown",
            time=when,
            uri=uri,
            summary="",
            in_status=False,
            in_storage=True,
        )
        found[uri] = _with_finding(entry, store, f"{directory}/{BUNDLE_FILE}")
    return found


def _with_finding(entry: BundleEntry, store: Any, key: str) -> BundleEntry:
    """The entry completed from bundle.json's finding; unchanged but for a note in its summary
    when that cannot be read."""
    try:
        finding = json.loads(store.get(key)).get("finding") or {}
        return BundleEntry.model_validate(
            {
                **entry.as_json(),
                "kind": finding.get("kind") or entry.kind,
                "summary": finding.get("message", ""),
                "severity": finding.get("severity"),
                "step": finding.get("step"),
                "time": finding.get("time") or entry.time,
            }
        )
    except Exception as exc:  # a half-written or foreign file must not hide the others
        return entry.model_copy(update={"summary": f"{key} is unreadable: {exc}"})
