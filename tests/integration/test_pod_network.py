"""Two pods that declare the same port do not collide: each gets its own IP and host port, its
sidecar reaches its own server, and others reach it at <pod IP>:<containerPort>."""

from __future__ import annotations

import json
import sys
import urllib.request

import pytest

from tests.support.operator import wait_for

pytestmark = pytest.mark.kubectl

# Serves its pod's name on $PORT, as the trainer serves its metrics on PROCTOR_METRICS_PORT.
SERVER = """
import http.server, os
name = os.environ["POD_NAME"].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(name)
    def log_message(self, *args): pass
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""
# Asks 127.0.0.1:9108 (as the watchdog asks the trainer) until it answers, and prints the answer.
SIDECAR = """
import os, sys, time, urllib.request
for _ in range(200):
    try:
        print(urllib.request.urlopen(os.environ["URL"], timeout=1).read().decode(), flush=True)
        break
    except OSError:
        time.sleep(0.1)
time.sleep(600)
"""


def _job(name: str) -> str:
    pod = {
        "restartPolicy": "Never",
        "initContainers": [
            {
                "name": "sidecar",
                "image": "x",
                "restartPolicy": "Always",
                "command": [sys.executable, "-c", SIDECAR],
                "env": [{"name": "URL", "value": "http://127.0.0.1:9108/"}],
            }
        ],
        "containers": [
            {
                "name": "server",
                "image": "x",
                "command": [sys.executable, "-c", SERVER],
                "ports": [{"name": "metrics", "containerPort": 9108}],
                "env": [
                    {"name": "PORT", "value": "9108"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
            }
        ],
    }
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": pod}},
        }
    )


def _running_pod(cluster, job: str) -> dict:
    out = cluster.kubectl("get", "pods", "-l", f"job-name={job}", "-o", "json").stdout
    pods = [p for p in json.loads(out)["items"] if p["status"].get("phase") == "Running"]
    return pods[0] if pods else {}


def test_two_pods_on_one_declared_port_each_serve_their_own(cluster):
    for job in ("net-a", "net-b"):
        cluster.kubectl("apply", "-f", "-", input=_job(job))
    try:
        pods = {
            job: wait_for(lambda j=job: _running_pod(cluster, j), 60, job)
            for job in ("net-a", "net-b")
        }
        ips = {job: pod["status"]["podIP"] for job, pod in pods.items()}
        assert ips["net-a"] != ips["net-b"]
        assert all(ip.startswith("127.1.") for ip in ips.values()), ips
        for job, pod in pods.items():
            name = pod["metadata"]["name"]
            sidecar = wait_for(
                lambda n=name: cluster.kubectl("logs", n, "-c", "sidecar").stdout.strip(),
                60,
                f"{name}'s sidecar to reach its server",
            )
            assert sidecar == name, "a sidecar must reach its own pod's server, not another's"
            answer = wait_for(
                lambda ip=ips[job]: _read(f"http://{ip}:9108/"), 30, f"{name} at its pod IP"
            )
            assert answer == name
    finally:
        for job in ("net-a", "net-b"):
            cluster.kubectl("delete", "job", job, "--wait=false", check=False)


def _read(url: str) -> str:
    try:
        return urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return ""


def test_a_mount_at_tmp_does_not_redirect_what_the_runner_sets(cluster):
    # The watchdog mounts an emptyDir at /tmp; the kubeconfig the runner hands every pod lives
    # under this host's /tmp in tests, and must stay this host's path.
    script = "import os; k = os.environ['KUBECONFIG']; print(os.path.exists(k), os.environ['MINE'])"
    pod = {
        "restartPolicy": "Never",
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "containers": [
            {
                "name": "c",
                "image": "x",
                "command": [sys.executable, "-c", script],
                "env": [{"name": "MINE", "value": "/tmp/x"}],
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "tmp-mount"},
        "spec": {"backoffLimit": 0, "template": {"spec": pod}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    cluster.kubectl("wait", "--for=condition=complete", "job/tmp-mount", "--timeout=60s")
    out = cluster.kubectl("get", "pods", "-l", "job-name=tmp-mount", "-o", "json").stdout
    name = json.loads(out)["items"][0]["metadata"]["name"]
    exists, mine = cluster.kubectl("logs", name, "-c", "c").stdout.split()
    assert exists == "True", "the runner's KUBECONFIG was rewritten into the pod's /tmp volume"
    assert mine.endswith("/volumes/tmp/x"), "the pod's own value is still mapped to its volume"
