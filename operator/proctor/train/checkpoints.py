"""Checkpoints that survive a crash, on any object store (`file://`, `s3://`).

Layout under the checkpoint URI:

    step-000000100/<files of save_fn>   then   step-000000100/COMPLETE   (written last)

The user's save_fn writes into a local temporary directory; its files are uploaded, and only then
is `COMPLETE` (JSON: step, time) put. A checkpoint without it (a crash mid-upload, or a SIGKILL
mid-save) is never loaded and is removed by the next successful save, so a kill at any moment
leaves the newest *complete* checkpoint intact.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proctor.api.layout import checkpoint_directory
from proctor.storage import ObjectStore

logger = logging.getLogger(__name__)
COMPLETE = "COMPLETE"
_STEP = re.compile(r"^step-(\d{9})/")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    prefix: str  # "step-000000100/"
    time: float
    uri: str


class CheckpointStore:
    """Complete checkpoints in one object store, newest first."""

    def __init__(self, store: ObjectStore, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.store = store
        self.keep_last = keep_last

    def save(self, step: int, write: Callable[[Path], None]) -> Checkpoint:
        """Write a checkpoint of `step` with `write(directory)`, upload it, then publish it."""
        prefix = f"{checkpoint_directory(step)}/"
        for stale in self.store.list(prefix):  # the same step saved again (a resumed run)
            self.store.delete(stale)
        with tempfile.TemporaryDirectory(prefix="proctor-checkpoint-") as directory:
            root = Path(directory)
            write(root)
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                self.store.put_file(prefix + path.relative_to(root).as_posix(), path)
        stamp = time.time()
        self.store.put(prefix + COMPLETE, json.dumps({"step": step, "time": stamp}).encode())
        self._prune()
        return Checkpoint(step, prefix, stamp, self.store.url(prefix))

    def complete(self) -> list[Checkpoint]:
        """Every complete checkpoint, newest first."""
        found = []
        for key in self.store.list("step-"):
            match = _STEP.match(key)
            if not match or key != match.group(0) + COMPLETE:
                continue
            try:
                meta = json.loads(self.store.get(key))
            except ValueError:
                logger.warning("checkpoint %s has an unreadable COMPLETE marker; skipped", key)
                continue
            prefix = match.group(0)
            found.append(
                Checkpoint(
                    int(match.group(1)), prefix, float(meta.get("time", 0)), self.store.url(prefix)
                )
            )
        return sorted(found, key=lambda c: c.step, reverse=True)

    def download(self, checkpoint: Checkpoint, directory: Path) -> None:
        """The checkpoint's files (without the marker) into `directory`, for the user's load_fn."""
        for key in self.store.list(checkpoint.prefix):
            relative = key.removeprefix(checkpoint.prefix)
            if relative == COMPLETE:
                continue
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self.store.get_file(key, target)

    def _prune(self) -> None:
        complete = self.complete()
        keep = {c.prefix for c in complete[: self.keep_last]}
        for key in self.store.list("step-"):
            match = _STEP.match(key)
            if match and match.group(0) not in keep:
                self.store.delete(key)  # older complete ones, and incomplete leftovers
