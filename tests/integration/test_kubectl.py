"""The real kubectl (v1.37) against the emulated cluster: what a user of Proctor does with it."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
import yaml

from tests.support.crd_schema import REPO

pytestmark = pytest.mark.kubectl

INVALID = sorted((REPO / "examples" / "invalid").glob("*.yaml"))


def _expected_field(path) -> str:
    return re.search(r"^# expect-error: (\S+)$", path.read_text(), re.MULTILINE).group(1)


def test_crds_install_and_their_resources_appear_in_discovery(with_crds):
    resources = with_crds.kubectl("api-resources", "--api-group=proctor.dev").stdout
    assert re.search(r"experiments\s+exp\s+proctor.dev/v1alpha1\s+true\s+Experiment", resources)
    assert re.search(
        r"validationpyramids\s+vp\s+proctor.dev/v1alpha1\s+true\s+ValidationPyramid", resources
    )
    established = with_crds.kubectl(
        "get",
        "crd",
        "experiments.proctor.dev",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    ).stdout
    assert established == "True"


def test_get_shows_the_printer_columns_and_their_values(with_crds):
    with_crds.kubectl("apply", "-f", "examples/digits/experiment.yaml")
    header = with_crds.kubectl("get", "exp").stdout.splitlines()[0].split()
    assert header == [
        "NAME",
        "PHASE",
        "LAYER",
        "STEP",
        "LOSS",
        "MFU",
        "ANOMALIES",
        "VERDICT",
        "AGE",
    ]
    status = {
        "status": {
            "phase": "Training",
            "training": {"step": 120, "loss": 0.31, "mfu": 0.12},
            "anomalyCount": 0,
        }
    }
    with_crds.patch_status("exp/digits-mlp-baseline", status["status"])
    row = with_crds.kubectl("get", "exp", "digits-mlp-baseline", "--no-headers").stdout.split()
    assert row[:6] == ["digits-mlp-baseline", "Training", "120", "0.31", "0.12", "0"]
    # The category groups both kinds: `kubectl get proctor`.
    assert (
        "experiment.proctor.dev/digits-mlp-baseline" in with_crds.kubectl("get", "proctor").stdout
    )


def test_status_writes_leave_spec_alone_and_spec_writes_bump_generation(with_crds):
    with_crds.kubectl("apply", "-f", "examples/digits/pyramid.yaml")
    before = json.loads(with_crds.kubectl("get", "vp", "digits-mlp-check", "-o", "json").stdout)
    with_crds.kubectl(
        "patch",
        "vp",
        "digits-mlp-check",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Pending"}, "spec": {"layers": {"l3": {"steps": 9}}}}',
    )
    after = json.loads(with_crds.kubectl("get", "vp", "digits-mlp-check", "-o", "json").stdout)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    with_crds.kubectl(
        "patch",
        "vp",
        "digits-mlp-check",
        "--type=merge",
        "-p",
        '{"spec": {"layers": {"l3": {"steps": 9}}}, "status": {"phase": "Failed"}}',
    )
    latest = json.loads(with_crds.kubectl("get", "vp", "digits-mlp-check", "-o", "json").stdout)
    assert latest["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert latest["status"]["phase"] == "Pending", "a spec write must not change status"


def test_explain_teaches_from_the_field_descriptions(with_crds):
    text = with_crds.kubectl("explain", "experiment.spec.hypothesis").stdout
    assert "Every field is required" in text
    assert "independentVariable\t<string> -required-" in text
    deeper = with_crds.kubectl("explain", "exp.spec.validation.layers.l0.maxDataWaitRatio").stdout
    assert "blocked on the data loader" in deeper


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_applying_an_invalid_example_fails_naming_the_field(with_crds, path):
    result = with_crds.kubectl("apply", "-f", str(path), check=False)
    assert result.returncode != 0
    assert _expected_field(path) in result.stderr, result.stderr
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    kind = yaml.safe_load(path.read_text())["kind"].lower()
    assert with_crds.kubectl("get", kind, name, check=False).returncode != 0, "nothing was stored"


def test_frozen_hypothesis_is_enforced_by_the_server(with_crds):
    with_crds.kubectl("apply", "-f", "examples/digits/experiment.yaml")
    with_crds.patch_status("exp/digits-mlp-baseline", {"phase": "Validating"})
    result = with_crds.kubectl(
        "patch",
        "exp",
        "digits-mlp-baseline",
        "--type=merge",
        "-p",
        '{"spec": {"hypothesis": {"statement": "something else"}}}',
        check=False,
    )
    assert result.returncode != 0
    assert "frozen once validation has started" in result.stderr


def test_server_side_dry_run_stores_nothing(with_crds):
    manifest = yaml.safe_load((REPO / "examples/digits/experiment.yaml").read_text())
    manifest["metadata"]["name"] = "dry-run-only"
    with_crds.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(manifest))
    assert with_crds.kubectl("get", "exp", "dry-run-only", check=False).returncode != 0


def test_label_and_field_selectors(with_crds):
    with_crds.kubectl("apply", "-f", "examples/digits/experiment.yaml")
    by_label = with_crds.kubectl(
        "get", "exp", "-l", "proctor.dev/study=digits", "-o", "name"
    ).stdout
    assert by_label.split() == ["experiment.proctor.dev/digits-mlp-baseline"]
    assert (
        with_crds.kubectl("get", "exp", "-l", "proctor.dev/study!=digits", "-o", "name").stdout
        == ""
    )
    by_field = with_crds.kubectl(
        "get", "ns", "--field-selector", "metadata.name=default", "-o", "name"
    )
    assert by_field.stdout.split() == ["namespace/default"]


def test_wait_for_a_condition_set_later(with_crds):
    with_crds.kubectl("apply", "-f", "examples/digits/experiment.yaml")
    condition = {
        "type": "Validated",
        "status": "True",
        "reason": "PyramidPassed",
        "message": "every layer passed",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }

    def later() -> None:
        time.sleep(1)
        with_crds.patch_status("exp/digits-mlp-baseline", {"conditions": [condition]})

    thread = threading.Thread(target=later)
    thread.start()
    result = with_crds.kubectl(
        "wait", "--for=condition=Validated", "exp/digits-mlp-baseline", "--timeout=20s"
    )
    thread.join()
    assert "condition met" in result.stdout


def test_watch_streams_changes_as_table_rows(with_crds):
    with_crds.kubectl("apply", "-f", "examples/digits/experiment.yaml")
    import subprocess

    watcher = subprocess.Popen(
        [
            str(REPO / ".bin/kubectl"),
            "--kubeconfig",
            str(with_crds.kubeconfig),
            "get",
            "exp",
            "digits-mlp-baseline",
            "-w",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    header, first = watcher.stdout.readline(), watcher.stdout.readline()  # the initial listing
    assert header.split()[0] == "NAME"
    assert "4242" not in first
    with_crds.patch_status("exp/digits-mlp-baseline", {"training": {"step": 4242}})
    changed = watcher.stdout.readline()  # only a watch event can bring this line
    watcher.terminate()
    watcher.communicate(timeout=10)
    assert "4242" in changed


def test_deleting_an_owner_cascades_to_its_jobs_and_pods(with_crds):
    with_crds.kubectl("apply", "-f", "examples/digits/pyramid.yaml")
    uid = with_crds.kubectl(
        "get", "vp", "digits-mlp-check", "-o", "jsonpath={.metadata.uid}"
    ).stdout
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "digits-mlp-check-l0",
            "ownerReferences": [
                {
                    "apiVersion": "proctor.dev/v1alpha1",
                    "kind": "ValidationPyramid",
                    "name": "digits-mlp-check",
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "layer", "image": "runner", "command": ["sleep", "30"]}
                    ],
                }
            },
        },
    }
    with_crds.kubectl("apply", "-f", "-", input=json.dumps(job))
    with_crds.kubectl(
        "wait", "--for=jsonpath={.status.active}=1", "job/digits-mlp-check-l0", "--timeout=20s"
    )
    assert with_crds.kubectl(
        "get", "pods", "-l", "job-name=digits-mlp-check-l0", "-o", "name"
    ).stdout
    with_crds.kubectl("delete", "vp", "digits-mlp-check")
    assert with_crds.kubectl("get", "job", "digits-mlp-check-l0", check=False).returncode != 0
    assert (
        with_crds.kubectl("get", "pods", "-l", "job-name=digits-mlp-check-l0", "-o", "name").stdout
        == ""
    )


def test_namespace_deletion_removes_everything_in_it(with_crds):
    with_crds.kubectl("create", "namespace", "scratch", check=False)  # protobuf from kubectl create
    with_crds.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "scratch"}}
        ),
    )
    with_crds.kubectl("apply", "-n", "scratch", "-f", "examples/digits/experiment.yaml")
    with_crds.kubectl("delete", "namespace", "scratch", "--timeout=20s")
    assert with_crds.kubectl("get", "ns", "scratch", check=False).returncode != 0
    assert (
        with_crds.kubectl("get", "exp", "-A", "-o", "name").stdout.count("digits-mlp-baseline") == 1
    )


def test_replace_needs_the_current_resource_version(with_crds):
    with_crds.kubectl("apply", "-f", "examples/digits/pyramid.yaml")
    current = yaml.safe_load(
        with_crds.kubectl("get", "vp", "digits-mlp-check", "-o", "yaml").stdout
    )
    current["spec"]["layers"]["l2"]["samples"] = 512
    with_crds.kubectl("replace", "-f", "-", input=yaml.safe_dump(current))
    assert (
        with_crds.kubectl(
            "get", "vp", "digits-mlp-check", "-o", "jsonpath={.spec.layers.l2.samples}"
        ).stdout
        == "512"
    )
    current["spec"]["layers"]["l2"]["samples"] = 128  # still the old resourceVersion
    stale = with_crds.kubectl("replace", "-f", "-", input=yaml.safe_dump(current), check=False)
    assert stale.returncode != 0
    assert "the object has been modified" in stale.stderr


def test_the_api_server_counts_requests_by_client_and_verb(cluster):
    """What the scale benchmark reads to count an operator's requests per object."""
    counts = cluster.cluster.api.request_counts
    before = dict(counts)
    cluster.kubectl("get", "configmaps")
    cluster.kubectl("create", "configmap", "counted", "--from-literal=a=1")
    cluster.kubectl("get", "configmap", "counted")
    new = {key: n - before.get(key, 0) for key, n in counts.items() if n != before.get(key, 0)}
    assert new.get(("kubectl", "list", "configmaps"), 0) >= 1
    assert new.get(("kubectl", "create", "configmaps"), 0) == 1
    assert new.get(("kubectl", "get", "configmaps"), 0) >= 1
