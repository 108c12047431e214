"""Jobs through the pod runner: real processes, phases, exit codes, logs, termination messages."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kubectl

PY = sys.executable
SCRIPTS = Path(__file__).parent / "pod_scripts"


def _job(name: str, pod_spec: dict, **spec) -> str:
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                **spec,
                "template": {"spec": {"restartPolicy": "Never", **pod_spec}},
            },
        }
    )


def _pods(cluster, job: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-l", f"job-name={job}", "-o", "json").stdout
    return json.loads(out)["items"]


def test_a_job_with_a_native_sidecar_completes_and_reports_everything(cluster):
    pod_spec = {
        "volumes": [{"name": "shared", "emptyDir": {}}],
        "initContainers": [
            {
                "name": "watchdog",
                "image": "watchdog",
                "restartPolicy": "Always",
                "command": [PY, str(SCRIPTS / "sidecar.py")],
            }
        ],
        "containers": [
            {
                "name": "trainer",
                "image": "runner",
                "command": [PY, str(SCRIPTS / "trainer.py")],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {
                        "name": "POD_NS",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                    },
                    {"name": "METRICS_FILE", "value": "/shared/metrics.jsonl"},
                    {"name": "TERMINATION_LOG", "value": "/dev/termination-log"},
                ],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }
        ],
    }
    cluster.kubectl("apply", "-f", "-", input=_job("sidecar", pod_spec))
    cluster.kubectl("wait", "--for=condition=complete", "job/sidecar", "--timeout=60s")
    [pod] = _pods(cluster, "sidecar")
    name = pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Succeeded"
    trainer = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert trainer["exitCode"] == 0
    assert trainer["reason"] == "Completed"
    assert json.loads(trainer["message"]) == {"verdict": "Passed"}
    assert (
        cluster.kubectl("logs", name, "-c", "trainer").stdout == f"training as {name} in default\n"
    )
    sidecar_log = cluster.kubectl("logs", name, "-c", "watchdog").stdout
    assert sidecar_log == "sidecar up\nsidecar got SIGTERM\n", (
        "the sidecar is stopped after the main container"
    )
    job = json.loads(cluster.kubectl("get", "job", "sidecar", "-o", "json").stdout)
    assert job["status"]["succeeded"] == 1


def test_a_failing_job_retries_up_to_its_backoff_limit_then_fails_with_the_log_tail(cluster):
    pod_spec = {
        "containers": [
            {
                "name": "layer",
                "image": "runner",
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "command": [
                    PY,
                    "-c",
                    "import sys; print('12 of 40 parameters never changed'); sys.exit(3)",
                ],
            }
        ]
    }
    cluster.kubectl("apply", "-f", "-", input=_job("failing", pod_spec, backoffLimit=1))
    cluster.kubectl("wait", "--for=condition=failed", "job/failing", "--timeout=60s")
    pods = _pods(cluster, "failing")
    assert len(pods) == 2, "one try plus one retry (backoffLimit 1)"
    for pod in pods:
        state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert pod["status"]["phase"] == "Failed"
        assert state["exitCode"] == 3
        assert state["message"] == "12 of 40 parameters never changed"
    reason = cluster.kubectl(
        "get", "job", "failing", "-o", "jsonpath={.status.conditions[?(@.type=='Failed')].reason}"
    ).stdout
    assert reason == "BackoffLimitExceeded"


def test_an_indexed_job_runs_its_pods_together_and_they_reach_each_other_by_name(cluster):
    # Pod 0 listens; pod 1 connects to it through its headless-Service name, as torchrun does.
    port_file = str(cluster.kubeconfig.parent / "rendezvous-port")
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ranks"},
        "spec": {"clusterIP": "None", "selector": {"job-name": "pair"}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(headless))
    pod_spec = {
        "subdomain": "ranks",
        "containers": [
            {
                "name": "rank",
                "image": "runner",
                "command": [PY, str(SCRIPTS / "rendezvous.py")],
                "env": [
                    {"name": "MASTER_ADDR", "value": "pair-0.ranks.default.svc.cluster.local"},
                    {"name": "PORT_FILE", "value": port_file},
                ],
            }
        ],
    }
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=_job("pair", pod_spec, completionMode="Indexed", completions=2, parallelism=2),
    )
    cluster.kubectl("wait", "--for=condition=complete", "job/pair", "--timeout=60s")
    logs = {
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: cluster.kubectl(
            "logs", p["metadata"]["name"]
        ).stdout
        for p in _pods(cluster, "pair")
    }
    assert logs["0"] == "rank 0 got hello from rank 1\n"
    assert logs["1"] == "rank 1 reached 127.0.0.1 as pair-1\n"


def test_a_suspended_job_has_no_pods_until_resumed(cluster):
    pod_spec = {
        "containers": [{"name": "c", "image": "runner", "command": [PY, "-c", "print('ran')"]}]
    }
    cluster.kubectl("apply", "-f", "-", input=_job("queued", pod_spec, suspend=True))
    cluster.kubectl("wait", "--for=condition=suspended", "job/queued", "--timeout=30s")
    assert _pods(cluster, "queued") == []
    cluster.kubectl("patch", "job", "queued", "--type=merge", "-p", '{"spec": {"suspend": false}}')
    cluster.kubectl("wait", "--for=condition=complete", "job/queued", "--timeout=60s")


def test_the_active_deadline_stops_a_job(cluster):
    pod_spec = {"containers": [{"name": "c", "image": "runner", "command": ["sleep", "60"]}]}
    cluster.kubectl("apply", "-f", "-", input=_job("slow", pod_spec, activeDeadlineSeconds=1))
    cluster.kubectl("wait", "--for=condition=failed", "job/slow", "--timeout=30s")
    reason = cluster.kubectl(
        "get", "job", "slow", "-o", "jsonpath={.status.conditions[?(@.type=='Failed')].reason}"
    ).stdout
    assert reason == "DeadlineExceeded"
    cluster.kubectl("wait", "--for=delete", "pod", "-l", "job-name=slow", "--timeout=30s")


def test_secret_values_reach_the_environment(cluster):
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s3"},
                "stringData": {"AWS_SECRET_ACCESS_KEY": "not-a-real-key"},
            }
        ),
    )
    pod_spec = {
        "containers": [
            {
                "name": "c",
                "image": "runner",
                "command": [PY, "-c", "import os; print(len(os.environ['AWS_SECRET_ACCESS_KEY']))"],
                "env": [
                    {
                        "name": "AWS_SECRET_ACCESS_KEY",
                        "valueFrom": {
                            "secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}
                        },
                    }
                ],
            }
        ]
    }
    cluster.kubectl("apply", "-f", "-", input=_job("secret-env", pod_spec))
    cluster.kubectl("wait", "--for=condition=complete", "job/secret-env", "--timeout=60s")
    [pod] = _pods(cluster, "secret-env")
    assert cluster.kubectl("logs", pod["metadata"]["name"]).stdout == "14\n"


def test_plain_init_containers_run_first_and_in_order(cluster):
    def step(name: str, text: str) -> dict:
        return {
            "name": name,
            "image": "runner",
            "command": ["sh", "-c", f"echo {text} >> $(OUT)"],
            "env": [{"name": "OUT", "value": "/work/order.txt"}],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }

    pod_spec = {
        "volumes": [{"name": "work", "emptyDir": {}}],
        "initContainers": [step("fetch", "first"), step("unpack", "second")],
        "containers": [
            {**step("main", "third"), "command": ["sh", "-c", "echo third >> $(OUT); cat $(OUT)"]}
        ],
    }
    cluster.kubectl("apply", "-f", "-", input=_job("ordered", pod_spec))
    cluster.kubectl("wait", "--for=condition=complete", "job/ordered", "--timeout=60s")
    [pod] = _pods(cluster, "ordered")
    assert (
        cluster.kubectl("logs", pod["metadata"]["name"], "-c", "main").stdout
        == "first\nsecond\nthird\n"
    )
    assert [
        s["state"]["terminated"]["exitCode"] for s in pod["status"]["initContainerStatuses"]
    ] == [0, 0]


def test_a_container_without_a_command_fails_with_a_message_that_says_why(cluster):
    pod_spec = {"containers": [{"name": "c", "image": "busybox"}]}
    cluster.kubectl("apply", "-f", "-", input=_job("no-command", pod_spec))
    cluster.kubectl("wait", "--for=condition=failed", "job/no-command", "--timeout=30s")
    [pod] = _pods(cluster, "no-command")
    assert pod["status"]["reason"] == "CreateContainerConfigError"
    assert "not image entrypoints" in pod["status"]["message"]


def _long_running(cluster, name: str, **spec) -> str:
    pid_file = cluster.kubeconfig.parent / f"{name}.pid"
    pod_spec = {
        "containers": [
            {
                "name": "c",
                "image": "runner",
                "command": [PY, str(SCRIPTS / "long_running.py")],
                "env": [{"name": "PID_FILE", "value": str(pid_file)}],
            }
        ]
    }
    cluster.kubectl("apply", "-f", "-", input=_job(name, pod_spec, **spec))
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the pod never started"
        time.sleep(0.1)
    return pid_file.read_text()


def _gone(pid: str, within: float = 15) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_deleting_a_job_stops_its_processes(cluster):
    pid = _long_running(cluster, "doomed")
    cluster.kubectl("delete", "job", "doomed")
    assert _gone(pid), "the pod's process outlived its pod"


def test_suspending_a_running_job_stops_its_processes(cluster):
    pid = _long_running(cluster, "paused")
    cluster.kubectl("patch", "job", "paused", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    cluster.kubectl("wait", "--for=condition=suspended", "job/paused", "--timeout=30s")
    assert _gone(pid)
    assert _pods(cluster, "paused") == []


def test_the_deadline_stops_the_processes_too(cluster):
    pid = _long_running(cluster, "late", activeDeadlineSeconds=2)
    cluster.kubectl("wait", "--for=condition=failed", "job/late", "--timeout=30s")
    assert _gone(pid)


def test_a_pod_name_used_again_runs_again(cluster):
    def pod(text: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "reused"},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "runner", "command": ["echo", text]}],
                },
            }
        )

    cluster.kubectl("apply", "-f", "-", input=pod("first"))
    cluster.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/reused", "--timeout=30s"
    )
    assert cluster.kubectl("logs", "reused").stdout == "first\n"
    cluster.kubectl("delete", "pod", "reused")
    cluster.kubectl("apply", "-f", "-", input=pod("second"))
    cluster.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/reused", "--timeout=30s"
    )
    assert cluster.kubectl("logs", "reused").stdout == "second\n"


def test_a_job_the_controller_cannot_run_fails_alone_and_others_still_run(cluster):
    # The emulator does not check built-in objects' field types as the real server would, so a
    # Job can reach its controller with a count it cannot read.
    pod_spec = {"containers": [{"name": "c", "image": "runner", "command": ["true"]}]}
    broken = json.loads(_job("broken", pod_spec))
    broken["spec"]["completions"] = "two"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(broken))
    cluster.kubectl("wait", "--for=condition=failed", "job/broken", "--timeout=30s")
    reason = cluster.kubectl(
        "get", "job", "broken", "-o", "jsonpath={.status.conditions[?(@.type=='Failed')].reason}"
    ).stdout
    assert reason == "InvalidJob"
    cluster.kubectl("apply", "-f", "-", input=_job("healthy", pod_spec))
    cluster.kubectl("wait", "--for=condition=complete", "job/healthy", "--timeout=30s")


def test_a_job_without_containers_is_refused_by_the_api(cluster):
    empty = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "empty"}, "spec": {}}
    result = cluster.kubectl("apply", "-f", "-", check=False, input=json.dumps(empty))
    assert result.returncode != 0
    assert "spec.template.spec.containers: Required value" in result.stderr
