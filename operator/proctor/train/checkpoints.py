"""Checkpoints that survive a crash, on any object store (`file://`, `s3://`).

Layout under the checkpoint URI:

    step-000000100/<files of save_fn>   then   step-000000100/COMPLETE   (written last)

The user's save_fn writes into a local temporary directory; its files are uploaded, and only then
is `COMPLETE` (JSON: step, time) put. A checkpoint without it (a crash mid-upload, or a SIGKILL
mid-save) is never loaded and is removed by the next successful save, so a kill at any moment
leaves the newest *complete* checkpoint intact.

An object store that is down for a while loses no checkpoint: each request that fails in passing
(StorageError.transient: unreachable, timed out, 5xx) is retried with backoff, from 1 s up to 10 s
between tries, for up to `patience_seconds` (10 minutes) per save, listing or download. Training
waits meanwhile (the checkpoint is the point it could be resumed from), and the log says so. Past
the patience the error is raised: the trainer exits as crashed and the Job's retry resumes from
the newest complete checkpoint.
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
from typing import TypeVar

from proctor.api.layout import checkpoint_directory
from proctor.storage import ObjectStore, StorageError

logger = logging.getLogger(__name__)
COMPLETE = "COMPLETE"
_STEP = re.compile(r"^step-(\d{9})/")
PATIENCE_SECONDS = 600.0
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    prefix: str  # "step-000000100/"
    time: float
    uri: str


class CheckpointStore:
    """Complete checkpoints in one object store, newest first."""

    def __init__(
        self,
        store: ObjectStore,
        keep_last: int = 3,
        *,
        patience_seconds: float = PATIENCE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.store = store
        self.keep_last = keep_last
        self.patience_seconds = patience_seconds
        self._sleep = sleep
        self._deadline: float | None = None

    def save(self, step: int, write: Callable[[Path], None]) -> Checkpoint:
        """Write a checkpoint of `step` with `write(directory)`, upload it, then publish it."""
        prefix = f"{checkpoint_directory(step)}/"
        self._deadline = time.monotonic() + self.patience_seconds  # one patience for all of it
        try:
            for stale in self._retried(self.store.list, prefix):  # the same step saved again
                self._retried(self.store.delete, stale)
            with tempfile.TemporaryDirectory(prefix="proctor-checkpoint-") as directory:
                root = Path(directory)
                write(root)
                for path in sorted(p for p in root.rglob("*") if p.is_file()):
                    key = prefix + path.relative_to(root).as_posix()
                    self._retried(self.store.put_file, key, path)
            stamp = time.time()
            marker = json.dumps({"step": step, "time": stamp}).encode()
            self._retried(self.store.put, prefix + COMPLETE, marker)
            self._prune()
        finally:
            self._deadline = None
        return Checkpoint(step, prefix, stamp, self.store.url(prefix))

    def complete(self) -> list[Checkpoint]:
        """Every complete checkpoint, newest first."""
        found = []
        for key in self._retried(self.store.list, "step-"):
            match = _STEP.match(key)
            if not match or key != match.group(0) + COMPLETE:
                continue
            try:
                meta = json.loads(self._retried(self.store.get, key))
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
        for key in self._retried(self.store.list, checkpoint.prefix):
            relative = key.removeprefix(checkpoint.prefix)
            if relative == COMPLETE:
                continue
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self._retried(self.store.get_file, key, target)

    def _prune(self) -> None:
        complete = self.complete()
        keep = {c.prefix for c in complete[: self.keep_last]}
        for key in self._retried(self.store.list, "step-"):
            match = _STEP.match(key)
            if match and match.group(0) not in keep:
                self._retried(self.store.delete, key)  # older ones, and incomplete leftovers

    def _retried(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)`, repeated while the store fails in passing, with backoff, until the
        current operation's patience runs out (see the module docstring)."""
        deadline = self._deadline or time.monotonic() + self.patience_seconds
        delay, tries = RETRY_FIRST_SECONDS, 0
        while True:
            try:
                return call(*args)
            except StorageError as exc:
                tries += 1
                if not exc.transient or time.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "object storage failed (%s); retry %d in %.0f s (giving up %.0f s after this "
                    "checkpoint operation began); training waits",
                    exc,
                    tries,
                    delay,
                    self.patience_seconds,
                )
                self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
