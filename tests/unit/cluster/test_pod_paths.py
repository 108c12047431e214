"""The pod runner's mount-path mapping (pure)."""

from __future__ import annotations

from pathlib import Path

from proctor.cluster.podrunner import _rewriter

POD = {"metadata": {"name": "p", "namespace": "default"}}


def test_a_path_mapped_to_a_directory_under_another_mount_is_not_mapped_twice():
    # The watchdog mounts both /var/spool/proctor and /tmp; its spool's local directory lies under
    # this host's /tmp, and must not be sent into the pod's /tmp volume on a second pass.
    mounts = {
        "/var/spool/proctor": Path("/tmp/run/pods/p/volumes/spool"),
        "/tmp": Path("/tmp/run/pods/p/volumes/tmp"),
    }
    rewrite = _rewriter(mounts, POD, None)
    assert rewrite("/var/spool/proctor") == "/tmp/run/pods/p/volumes/spool"
    assert rewrite("/tmp/scratch") == "/tmp/run/pods/p/volumes/tmp/scratch"
    assert rewrite("a=/var/spool/proctor/x b=/tmp/y") == (
        "a=/tmp/run/pods/p/volumes/spool/x b=/tmp/run/pods/p/volumes/tmp/y"
    )


def test_the_longest_mount_wins():
    mounts = {"/data": Path("/l/data"), "/data/cache": Path("/l/cache")}
    rewrite = _rewriter(mounts, POD, None)
    assert rewrite("/data/cache/x") == "/l/cache/x"
    assert rewrite("/data/x") == "/l/data/x"
    assert rewrite("/database") == "/database"
