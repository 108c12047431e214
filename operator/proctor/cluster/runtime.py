"""Run the emulated cluster: the API server on 127.0.0.1 and a kubeconfig that points at it.

    async with EmulatedCluster(kubeconfig=Path("kubeconfig")) as cluster:
        ...  # kubectl --kubeconfig kubeconfig get ns

The pod runner (proctor.cluster.podrunner) joins it when `pods_dir` is given.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import kmock
import yaml

from proctor.cluster.apiserver import EmulatedApiServer
from proctor.cluster.podrunner import PodRunner
from proctor.cluster.store import Store


def kubeconfig_for(url: str, name: str = "proctor-local") -> dict[str, Any]:
    """A kubeconfig for an unauthenticated HTTP API server at `url`."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}
        ],
        "current-context": name,
        "preferences": {},
    }


class EmulatedCluster:
    """The API server (and optionally the pod runner) for as long as the `async with` lasts."""

    def __init__(
        self,
        *,
        port: int = 0,
        kubeconfig: Path | None = None,
        store: Store | None = None,
        bookmark_interval: float = 5.0,
        pods_dir: Path | None = None,
    ) -> None:
        """`pods_dir` set: Jobs run, their pods as local processes under that directory."""
        self.api = EmulatedApiServer(store=store or Store(), bookmark_interval=bookmark_interval)
        self._port = port
        self._kubeconfig = kubeconfig
        self._server: kmock.Server | None = None
        self.pods: PodRunner | None = None
        if pods_dir is not None:
            self.pods = PodRunner(self.api.store, pods_dir, kubeconfig=kubeconfig)
            self.api.log_source = self.pods.log_source

    @property
    def store(self) -> Store:
        return self.api.store

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the cluster is not running: use it inside `async with`")
        return str(self._server.url).rstrip("/")

    async def __aenter__(self) -> EmulatedCluster:
        await self.api.__aenter__()
        self._server = kmock.Server(self.api, host="127.0.0.1", port=self._port or None)
        await self._server.__aenter__()
        if self._kubeconfig is not None:
            self._kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            partial = self._kubeconfig.with_suffix(".partial")
            partial.write_text(yaml.safe_dump(kubeconfig_for(self.url), sort_keys=False))
            partial.replace(self._kubeconfig)  # readers never see half a file
        if self.pods is not None:
            await self.pods.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.pods is not None:
            await self.pods.__aexit__(exc_type, exc, tb)
        await self.api.stop_watches()
        if self._server is not None:
            await self._server.__aexit__(exc_type, exc, tb)
            self._server = None
        await self.api.__aexit__(exc_type, exc, tb)
