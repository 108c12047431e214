"""Recovery bundles for a person: find one, read it, render its summary, finding and prompt.

A bundle is a directory (proctor.api.bundle) in object storage: `bundle.json`, `metrics.png` and
`recovery.md`. `proctor bundle show` and the end of `proctor local run` use this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from proctor.api.bundle import BUNDLE_SCHEMA_VERSION, Bundle
from proctor.api.layout import LayoutError, check_storage_uri
from proctor.storage import ObjectStore, open_store

BUNDLE_FILE, PLOT_FILE, PROMPT_FILE = "bundle.json", "metrics.png", "recovery.md"


class BundleError(ValueError):
    """No readable bundle at the place given; the message says what was found and what to do."""


@dataclass(frozen=True)
class LoadedBundle:
    bundle: Bundle
    location: str  # the bundle's directory, as a URI
    plot: str | None  # where metrics.png is (a path for local bundles), None when missing
    prompt: str  # recovery.md


def load_bundle(target: str) -> LoadedBundle:
    """The bundle at `target`: a directory path, a `file://` or `s3://` URI of a bundle's
    directory, its bundle.json, or a directory above bundles (the newest one below it is read).

    A URI with a '..', '.', empty or %-encoded segment is refused before any storage access: a
    bundle URI never has one (a plain path is the reader's own file system, and resolved)."""
    target = target.removesuffix("/" + BUNDLE_FILE).removesuffix(BUNDLE_FILE)
    if "://" in target:
        try:
            check_storage_uri(target)
        except LayoutError as exc:
            raise BundleError(
                f"refused: {exc}. Give a bundle's directory as "
                "status.anomalies[].bundleURI names it"
            ) from None
    try:
        store = open_store(target if "://" in target else str(Path(target).resolve()))
        keys = store.list()
    except (ValueError, OSError) as exc:  # OSError: StorageError, an unreachable store too
        raise BundleError(str(exc)) from None
    prefix = _newest_bundle(keys, target)
    try:
        record = json.loads(store.get(prefix + BUNDLE_FILE))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{target}: cannot read {prefix}{BUNDLE_FILE}: {exc}") from None
    if record.get("schemaVersion") != BUNDLE_SCHEMA_VERSION:
        raise BundleError(
            f"{target}: schemaVersion {record.get('schemaVersion')!r} is not "
            f"{BUNDLE_SCHEMA_VERSION!r}; read it with the Proctor release that wrote it"
        )
    try:
        bundle = Bundle.model_validate(record)
    except ValidationError as exc:
        raise BundleError(f"{target}: {BUNDLE_FILE} does not match its schema: {exc}") from None
    prompt = (
        store.get(prefix + PROMPT_FILE).decode(errors="replace")
        if prefix + PROMPT_FILE in keys
        else ""
    )
    plot = _local(store, prefix + PLOT_FILE) if prefix + PLOT_FILE in keys else None
    return LoadedBundle(bundle, store.url(prefix).rstrip("/") + "/", plot, prompt)


def render_bundle(loaded: LoadedBundle, prompt: bool = True) -> RenderableType:
    """Summary, finding and evidence, where the plot is, then the recovery prompt."""
    bundle, finding = loaded.bundle, loaded.bundle.finding
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")  # paths and URIs whole, to copy
    experiment = bundle.experiment
    summary.add_row("experiment", f"{experiment.namespace}/{experiment.name}")
    if experiment.hypothesis is not None:
        summary.add_row("hypothesis", experiment.hypothesis.statement)
    summary.add_row(
        "finding",
        Text.assemble(
            (f"{finding.kind} ({finding.severity})", "bold red"),
            f" at step {finding.step}" if finding.step is not None else "",
            f", {finding.time:%Y-%m-%d %H:%M:%S} UTC",
        ),
    )
    summary.add_row("", finding.message)
    if finding.evidence:
        evidence = ", ".join(f"{k}={v}" for k, v in sorted(finding.evidence.items()))
        summary.add_row("evidence", evidence)
    summary.add_row("go back to", bundle.recovery_stage.value)
    layers = ", ".join(f"{layer.layer} {layer.phase}" for layer in bundle.pyramid)
    summary.add_row("pyramid", layers or "no results (validation skipped?)")
    summary.add_row("metrics", f"{len(bundle.metrics)} samples in the window")
    summary.add_row("checkpoints", _checkpoints(bundle))
    summary.add_row("plot", loaded.plot or "missing (the watchdog could not draw it)")
    summary.add_row("bundle", loaded.location)
    for note in bundle.notes:
        summary.add_row("note", Text(note, style="yellow"))
    parts: list[RenderableType] = [summary]
    if prompt and loaded.prompt:
        parts.append(Panel(Markdown(loaded.prompt), title="recovery.md", title_align="left"))
    title = f"recovery bundle: {experiment.name} · {finding.kind}"
    return Panel(Group(*parts), title=title, title_align="left", border_style="red")


def bundle_json(loaded: LoadedBundle) -> dict[str, object]:
    """What `--output json` prints: the record, and where its plot and prompt are."""
    return {
        "location": loaded.location,
        "plot": loaded.plot,
        "prompt": loaded.prompt,
        "bundle": loaded.bundle.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def _newest_bundle(keys: list[str], target: str) -> str:
    """The key prefix of the bundle to read: '' when `target` is one, else the newest below it
    (bundle directories start with their UTC time, so the last in order is the newest)."""
    if BUNDLE_FILE in keys:
        return ""
    below = sorted(
        (k.removesuffix(BUNDLE_FILE) for k in keys if k.endswith("/" + BUNDLE_FILE)),
        key=lambda prefix: prefix.rstrip("/").rsplit("/", 1)[-1],
    )
    if not below:
        raise BundleError(
            f"{target}: no {BUNDLE_FILE} there or below it. Give a bundle's directory, e.g. the "
            "bundleURI in `kubectl get exp NAME -o jsonpath='{.status.anomalies[*].bundleURI}'`"
        )
    return below[-1]


def _local(store: ObjectStore, key: str) -> str:
    url = store.url(key)
    return url.removeprefix("file://") if url.startswith("file://") else url


def _checkpoints(bundle: Bundle) -> str:
    if not bundle.checkpoints:
        return "none (resume from the start, or configure spec.training.checkpoint)"
    newest = bundle.checkpoints[-1]
    return f"{len(bundle.checkpoints)}, newest step {newest.step}: {newest.uri}"
