"""Checkpoints that survive a crash: written aside, then published with one rename.

Layout under the checkpoint directory:

    step-000000100/          a complete checkpoint: the user's save_fn output + COMPLETE
    step-000000200.partial/  being written (or left by a crash): never loaded, cleaned up later

`COMPLETE` (JSON: step, time) is written last inside the partial directory, and the directory is
renamed into place only then, so a SIGKILL at any moment leaves either the previous complete
checkpoint or the new one as the newest, never half of one. Local paths and `file://` URIs;
object storage (`s3://`) comes with the storage layer shared with the watchdog.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)
_COMPLETE = "COMPLETE"
_NAME = re.compile(r"^step-(\d{9})$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    time: float


def local_directory(uri: str) -> Path:
    """The directory a checkpoint URI names; only local ones for now, with a clear error."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise ValueError(
            f"checkpoint URI scheme {scheme!r} is not supported yet by the default trainer: use "
            "file:///path (s3:// arrives with the shared storage layer)"
        )
    return Path(uri)


class CheckpointStore:
    """Complete checkpoints in one directory, newest first."""

    def __init__(self, directory: Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.directory = directory
        self.keep_last = keep_last

    def save(self, step: int, write: Callable[[Path], None]) -> Checkpoint:
        """Write a checkpoint of `step` with `write(directory)`, then publish it atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"step-{step:09d}"
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        write(partial)
        stamp = time.time()
        (partial / _COMPLETE).write_text(json.dumps({"step": step, "time": stamp}))
        if final.exists():  # the same step saved again (a resumed run): replace it whole
            shutil.rmtree(final)
        partial.rename(final)
        self._prune()
        return Checkpoint(step, final, stamp)

    def complete(self) -> list[Checkpoint]:
        """Every complete checkpoint, newest first."""
        if not self.directory.exists():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            marker = path / _COMPLETE
            if match and marker.is_file():
                try:
                    meta = json.loads(marker.read_text())
                except ValueError:
                    logger.warning("checkpoint %s has an unreadable COMPLETE marker; skipped", path)
                    continue
                found.append(Checkpoint(int(match.group(1)), path, float(meta.get("time", 0))))
        return sorted(found, key=lambda c: c.step, reverse=True)

    def newest_loadable(self, load: Callable[[Path], None]) -> Iterator[Checkpoint]:
        """Tries `load` on each complete checkpoint, newest first; yields the one that loaded.
        A checkpoint that fails to load is skipped with a warning (and kept, for a person)."""
        for checkpoint in self.complete():
            try:
                load(checkpoint.path)
            except Exception as exc:
                logger.warning(
                    "checkpoint %s cannot be loaded (%s: %s); trying an older one",
                    checkpoint.path,
                    type(exc).__name__,
                    exc,
                )
                continue
            yield checkpoint
            return

    def _prune(self) -> None:
        for old in self.complete()[self.keep_last :]:
            shutil.rmtree(old.path, ignore_errors=True)
        for leftover in self.directory.glob("step-*.partial"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
