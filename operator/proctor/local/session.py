"""One local run: apply the manifests, follow every run to its end, and report.

The cluster is given (a kubeconfig): proctor.cli.local starts the emulated one, or the user names
a real one. `LocalRun.follow` polls the API once a `poll_seconds`, turns objects into views
(proctor.local.progress) and hands them to a callback (the live view), until every run has
finished or the timeout passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import config

from proctor.api.v1alpha1 import API_VERSION
from proctor.kube import KubeClient, KubeError
from proctor.local.bundles import BundleError, load_bundle
from proctor.local.manifests import Applied, create_all
from proctor.local.progress import RunView, experiment_view, pyramid_view

BLOCKED_GRACE_SECONDS = 15.0
"""A guardrail that still holds after this long ends the wait for that run: it needs a change
from the user (a citation, a baseline), not more time. A shorter block (a baseline applied in the
same run and not created yet) is waited out."""
BUNDLE_WAIT_SECONDS = 60.0
"""How long to wait, after the runs end, for the bundles their anomalies name to be uploaded."""


@dataclass(frozen=True)
class Outcome:
    views: list[RunView]
    timed_out: bool
    elapsed: float


def kube_client(kubeconfig: Path) -> KubeClient:
    return KubeClient(
        config.new_client_from_config(config_file=str(kubeconfig)), component="proctor-local"
    )


class LocalRun:
    """Follows the applied objects of one `proctor local run`."""

    def __init__(
        self,
        kube: KubeClient,
        applied: list[Applied],
        *,
        poll_seconds: float = 1.0,
        alive: Callable[[], None] = lambda: None,
    ) -> None:
        """`alive` raises when something the run depends on died (the operator process)."""
        self.kube, self.applied, self.poll_seconds, self.alive = kube, applied, poll_seconds, alive
        self._blocked_since: dict[str, float] = {}

    @classmethod
    def apply(
        cls, kube: KubeClient, documents: list[dict[str, Any]], replace: bool, **options: Any
    ) -> LocalRun:
        return cls(kube, create_all(kube, documents, replace), **options)

    def views(self) -> list[RunView]:
        """Each applied object as it is now (a read that fails keeps the run Pending)."""
        views = []
        for applied in self.applied:
            try:
                views.append(self._view(applied))
            except KubeError:
                views.append(RunView(kind=applied.kind, name=applied.name, phase="Pending"))
        return views

    def follow(self, show: Callable[[list[RunView], float], None], timeout: float) -> Outcome:
        """Poll until every run has finished (or stays blocked), or `timeout` seconds pass."""
        started = time.monotonic()
        while True:
            self.alive()
            views = self.views()
            elapsed = time.monotonic() - started
            show(views, elapsed)
            if all(self._done(view) for view in views):
                self._await_bundles(views, time.monotonic() + BUNDLE_WAIT_SECONDS)
                views = self.views()
                elapsed = time.monotonic() - started
                show(views, elapsed)
                return Outcome(views, timed_out=False, elapsed=elapsed)
            if elapsed > timeout:
                return Outcome(views, timed_out=True, elapsed=elapsed)
            time.sleep(self.poll_seconds)

    def _view(self, applied: Applied) -> RunView:
        if applied.kind == "ValidationPyramid":
            pyramid = self.kube.get(API_VERSION, applied.kind, applied.namespace, applied.name)
            if pyramid is None:
                raise KubeError(f"{applied.name} is gone")
            return pyramid_view(pyramid)
        experiment = self.kube.get(API_VERSION, applied.kind, applied.namespace, applied.name)
        if experiment is None:
            raise KubeError(f"{applied.name} is gone")
        validation = (experiment.get("status") or {}).get("validation") or {}
        pyramid = None
        if validation.get("pyramidName"):
            pyramid = self.kube.get(
                API_VERSION, "ValidationPyramid", applied.namespace, validation["pyramidName"]
            )
        return experiment_view(experiment, pyramid)

    def _done(self, view: RunView) -> bool:
        if view.finished:
            return True
        if not view.blocked:
            self._blocked_since.pop(view.name, None)
            return False
        since = self._blocked_since.setdefault(view.name, time.monotonic())
        return time.monotonic() - since >= BLOCKED_GRACE_SECONDS

    def _await_bundles(self, views: list[RunView], deadline: float) -> None:
        """The watchdog posts an anomaly's Event before its upload may finish; wait for it."""
        uris = [a.bundle_uri for view in views for a in view.anomalies if a.bundle_uri]
        for uri in uris:
            while time.monotonic() < deadline:
                try:
                    load_bundle(uri)
                    break
                except (BundleError, Exception):  # not uploaded yet, or storage not reachable
                    time.sleep(0.5)
