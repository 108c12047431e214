from __future__ import annotations

import pytest

from proctor.agent.connection import Connection
from tests.support.cluster import RunningCluster, running_cluster


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> RunningCluster:
    """An emulated API server with the CRDs and no pods: objects and their validation only."""
    with running_cluster(tmp_path_factory.mktemp("api"), pods=False) as handle:
        handle.kubectl("apply", "-f", "crds/")
        yield handle


@pytest.fixture
def connection(api, monkeypatch) -> Connection:
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig))
    return Connection.from_environment("default")
