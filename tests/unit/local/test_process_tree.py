"""`proctor local down` finds what its server started before stopping it, so nothing is left
behind when it has to kill: pods run in sessions of their own, out of reach of a group signal."""

from __future__ import annotations

import subprocess
import sys
import time

from proctor.cli.local import _process_tree, _start_time


def test_the_tree_holds_children_in_sessions_of_their_own_and_their_start_times():
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        tree = _process_tree(parent.pid)
        while len(tree) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            tree = _process_tree(parent.pid)
        assert parent.pid in tree
        [child] = [pid for pid in tree if pid != parent.pid]
        assert tree[child] == _start_time(child)
        assert tree[parent.pid] <= tree[child]
    finally:
        for pid in _process_tree(parent.pid):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        parent.wait()


def test_a_process_that_is_gone_has_no_start_time():
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert _start_time(done.pid) is None
    assert _process_tree(done.pid) == {}
