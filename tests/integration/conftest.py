from __future__ import annotations

import pytest

from tests.support.cluster import RunningCluster, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> RunningCluster:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as handle:
        yield handle


@pytest.fixture(scope="module")
def with_crds(cluster: RunningCluster) -> RunningCluster:
    cluster.kubectl("apply", "-f", "crds/")
    return cluster
