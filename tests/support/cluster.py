"""An emulated cluster in a background thread, for tests that drive it with real kubectl/helm."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proctor.cluster.runtime import EmulatedCluster
from tests.support.crd_schema import REPO

BIN = REPO / ".bin"


class RunningCluster:
    """Handle on a cluster served from another thread: its kubeconfig and kubectl/helm runners."""

    def __init__(self, cluster: EmulatedCluster, loop: asyncio.AbstractEventLoop, kubeconfig: Path):
        self.cluster = cluster
        self.loop = loop
        self.kubeconfig = kubeconfig

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self._run(BIN / "kubectl", args, check, input, timeout)

    def patch_status(self, resource: str, status: dict[str, Any]) -> None:
        """Write `status` through the status subresource, as the operator does."""
        self.kubectl(
            "patch",
            resource,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )

    def helm(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self._run(BIN / "helm", args, check, None, timeout)

    def call(self, function: Any, *args: Any) -> Any:
        """Run `function(*args)` on the cluster's event loop (the store is not thread-safe)."""
        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(function(*args))
            except Exception as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def _run(
        self, tool: Path, args: tuple[str, ...], check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        if not tool.exists():
            raise AssertionError(
                f"{tool} is missing: run `make setup` (scripts/install-kube-tools.sh)"
            )
        result = subprocess.run(
            [str(tool), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            command = f"{tool.name} {' '.join(args)}"
            output = result.stdout + result.stderr
            raise AssertionError(f"{command} failed ({result.returncode}):\n{output}")
        return result


@contextmanager
def running_cluster(
    tmp: Path, *, pods: bool = True, bookmark_interval: float = 1.0
) -> Iterator[RunningCluster]:
    kubeconfig = tmp / "kubeconfig"
    ready: Future[RunningCluster] = Future()
    stop: asyncio.Event | None = None
    loop_holder: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        cluster = EmulatedCluster(
            kubeconfig=kubeconfig,
            pods_dir=tmp / "pods" if pods else None,
            bookmark_interval=bookmark_interval,
        )
        async with cluster:
            loop = asyncio.get_running_loop()
            loop_holder.append(loop)
            ready.set_result(RunningCluster(cluster, loop, kubeconfig))
            await stop.wait()

    def thread_main() -> None:
        try:
            asyncio.run(serve())
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)

    thread = threading.Thread(target=thread_main, name="emulated-cluster", daemon=True)
    thread.start()
    handle = ready.result(timeout=30)
    try:
        yield handle
    finally:
        assert stop is not None
        loop_holder[0].call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
