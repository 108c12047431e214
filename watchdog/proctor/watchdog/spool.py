"""Bundles are written to a local spool first and uploaded from there, so an object store that is
down for minutes loses nothing: what could not be uploaded waits on disk and is retried with
backoff, across restarts of the watchdog (the spool is an emptyDir, which outlives containers).

The incident keys already reported live here too, so a restarted watchdog does not report an
incident a second time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from proctor.storage import ObjectStore

logger = logging.getLogger(__name__)
UPLOAD_ORDER = ("metrics.png", "recovery.md", "bundle.json")
"""bundle.json goes last: a reader that finds it knows the bundle is whole."""
MAX_KEYS = 1000


class Spool:
    def __init__(
        self,
        directory: Path,
        open_store: Callable[[str], ObjectStore],
        *,
        base_delay: float = 5.0,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.pending = directory / "pending"
        self.pending.mkdir(parents=True, exist_ok=True)
        for partial in self.pending.glob(".*.partial"):  # a crash mid-write: never whole
            shutil.rmtree(partial, ignore_errors=True)
        self._open_store = open_store
        self._base_delay, self._max_delay = base_delay, max_delay
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._next_try: dict[str, float] = {}
        self._keys_file = directory / "reported-keys.json"

    # ---- incidents already reported --------------------------------------------------------

    def reported(self) -> list[str]:
        try:
            keys = json.loads(self._keys_file.read_text())
        except (OSError, ValueError):
            return []
        return [str(k) for k in keys] if isinstance(keys, list) else []

    def remember(self, key: str) -> None:
        keys = [*[k for k in self.reported() if k != key][-(MAX_KEYS - 1) :], key]
        _write_atomically(self._keys_file, json.dumps(keys).encode())

    # ---- bundles ----------------------------------------------------------------------------

    def add(self, uri: str, files: dict[str, bytes]) -> None:
        """Keep a bundle for upload to `uri` (its directory in object storage)."""
        name = uri.rstrip("/").rsplit("/", 1)[-1]
        staging = self.pending / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for filename, data in files.items():
            (staging / filename).write_bytes(data)
        (staging / "target.json").write_text(json.dumps({"uri": uri}))
        final = self.pending / name
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)  # whole bundles only: a crash mid-write leaves a .partial

    def waiting(self) -> list[str]:
        """Bundles not uploaded yet (their directory names)."""
        return sorted(p.name for p in self.pending.iterdir() if not p.name.startswith("."))

    def flush(self, force: bool = False) -> list[str]:
        """Upload every bundle whose retry is due (every one, with `force`); the URIs uploaded."""
        uploaded = []
        now = self._clock()
        for name in self.waiting():
            if self._next_try.get(name, 0.0) > now and not force:
                continue
            bundle = self.pending / name
            try:
                uri = json.loads((bundle / "target.json").read_text())["uri"]
                store = self._open_store(uri)
                for filename in UPLOAD_ORDER:
                    if (bundle / filename).exists():
                        store.put_file(filename, bundle / filename)
            except Exception as exc:  # any storage failure: keep it, try again later
                failures = self._failures.get(name, 0) + 1
                self._failures[name] = failures
                delay = min(self._base_delay * 2 ** (failures - 1), self._max_delay)
                self._next_try[name] = now + delay
                logger.warning(
                    "bundle %s not uploaded (%s); retry %d in %.0fs", name, exc, failures, delay
                )
                continue
            shutil.rmtree(bundle, ignore_errors=True)
            self._failures.pop(name, None)
            self._next_try.pop(name, None)
            uploaded.append(uri)
        return uploaded


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
