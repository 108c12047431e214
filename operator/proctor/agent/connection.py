"""Which cluster and namespace the agent tools talk to.

The kubeconfig comes from KUBECONFIG (or ~/.kube/config, or the pod's service account when the
agent runs in a pod); the namespace from --namespace, else the kubeconfig context's namespace,
else the pod's own, else `default`: the same order kubectl follows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

from proctor.agent.errors import AgentError
from proctor.kube import KubeClient

API_VERSION = "proctor.dev/v1alpha1"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
NO_CLUSTER_HINT = (
    "point KUBECONFIG at your cluster's kubeconfig (locally: `proctor local up` starts the "
    "emulated cluster with the operator and prints the export line)"
)


@dataclass(frozen=True)
class Connection:
    """A client and the namespace every verb works in."""

    kube: KubeClient
    namespace: str

    @classmethod
    def from_environment(cls, namespace: str | None = None) -> Connection:
        """Connect as kubectl would; an AgentError that says how to point at a cluster when
        there is none."""
        if IN_CLUSTER_NAMESPACE.exists() and not os.environ.get("KUBECONFIG"):
            try:
                config.load_incluster_config()
            except config.ConfigException as exc:
                raise AgentError(f"no cluster configured: {exc}", NO_CLUSTER_HINT) from None
            found = namespace or IN_CLUSTER_NAMESPACE.read_text().strip()
            return cls(KubeClient(client.ApiClient(), "proctor-agent"), found or "default")
        # Read KUBECONFIG now: the client library reads it once, when it is imported.
        kubeconfig = os.environ.get("KUBECONFIG") or None
        try:
            api = config.new_client_from_config(config_file=kubeconfig)
        except (config.ConfigException, OSError) as exc:
            raise AgentError(f"no cluster configured: {exc}", NO_CLUSTER_HINT) from None
        return cls(KubeClient(api, "proctor-agent"), namespace or context_namespace(kubeconfig))


def context_namespace(kubeconfig: str | None = None) -> str:
    """The current kubeconfig context's namespace, `default` when it names none."""
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        return "default"
    namespace = (active or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else "default"
