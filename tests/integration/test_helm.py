"""The real helm (v4) installs the chart into the emulated cluster (its own, so CRDs are new)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kubectl


def test_helm_installs_the_chart_crds(cluster):
    cluster.helm(
        "install",
        "proctor",
        "charts/proctor",
        "--namespace",
        "default",
        "--wait",
        "--timeout",
        "60s",
    )
    assert "experiments.proctor.dev" in cluster.kubectl("get", "crd", "-o", "name").stdout
    cluster.helm("uninstall", "proctor", "--namespace", "default")
    # helm.sh/resource-policy: keep: uninstalling never deletes users' experiments.
    assert "experiments.proctor.dev" in cluster.kubectl("get", "crd", "-o", "name").stdout
