from __future__ import annotations

import pytest

from tests.support.cluster import RunningCluster, running_cluster
from tests.support.operator import OperatorProcess


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> RunningCluster:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as handle:
        handle.kubectl("apply", "-f", "crds/")
        yield handle


@pytest.fixture(scope="module")
def operator(cluster, tmp_path_factory) -> OperatorProcess:
    process = OperatorProcess(cluster, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()
