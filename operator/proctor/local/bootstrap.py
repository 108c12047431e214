"""What a cluster needs before local mode can run experiments on it: the CRDs and an operator.

On the emulated cluster both come from this checkout: the CRDs from the API models, the operator
as a `proctor operator` process. On a real cluster the Helm chart installs them, and local mode
only checks that the CRDs are there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from proctor.api.crd import build_crd
from proctor.api.v1alpha1 import RESOURCES


def install_crds(api: client.ApiClient) -> None:
    """Create or replace Proctor's CRDs (generated from the models, so they match this code)."""
    extensions = client.ApiextensionsV1Api(api)
    for resource in RESOURCES:
        body = build_crd(resource)
        try:
            extensions.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = extensions.read_custom_resource_definition(body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(body["metadata"]["name"], body)


def missing_crds(api: client.ApiClient) -> list[str]:
    """The names of Proctor's CRDs the cluster does not have."""
    extensions = client.ApiextensionsV1Api(api)
    missing = []
    for resource in RESOURCES:
        name = build_crd(resource)["metadata"]["name"]
        try:
            extensions.read_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            missing.append(name)
    return missing


class LocalClusterError(RuntimeError):
    """What the local run depends on broke (its operator exited, its cluster stopped
    answering): nothing more can be judged, and the message says where to look."""


class OperatorProcess:
    """`proctor operator` for one namespace, as a child process logging to `log`.

    Fast resync and progress reads: a local run is minutes long, and the live view shows what
    the operator writes into status."""

    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        *,
        namespaces: list[str],
        bundle_uri: str | None,
        progress_seconds: float = 1.0,
    ) -> None:
        """`namespaces` to watch; none: every namespace."""
        self.kubeconfig, self.log, self.namespaces = kubeconfig, log, namespaces
        self.bundle_uri, self.progress_seconds = bundle_uri, progress_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "proctor.cli.main",
            "operator",
            *([f"--namespace={ns}" for ns in self.namespaces] or ["--all-namespaces"]),
            "--resync-seconds",
            "1",
            "--progress-seconds",
            str(self.progress_seconds),
            "--metrics-port",
            "0",  # several local runs may share this host: no fixed ports
            "--liveness",
            "",
        ]
        if self.bundle_uri:
            command += ["--bundle-uri", self.bundle_uri]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("ab")
        env: dict[str, Any] = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.process = subprocess.Popen(
            command, env=env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def check(self) -> None:
        """Raise when the operator has exited: nothing would move any more."""
        if self.process is not None and self.process.poll() is not None:
            raise LocalClusterError(
                f"the operator exited with {self.process.returncode}, so nothing would move any "
                f"more; its log says why: {self.log}"
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if self._out is not None:
            self._out.close()
            self._out = None


def ensure_namespaces(api: client.ApiClient, namespaces: list[str]) -> None:
    """Create the namespaces documents name in the embedded cluster (which starts with only
    `default`); a real cluster's namespaces are its administrator's, and are never created."""
    core = client.CoreV1Api(api)
    for namespace in namespaces:
        try:
            core.create_namespace(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        except ApiException as exc:
            if exc.status != 409:  # 409: it exists already
                raise
