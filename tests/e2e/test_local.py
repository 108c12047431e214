"""The demo through `proctor local run`, as a newcomer runs it: the emulated cluster, the operator
and the pods are real processes; the three outcomes, the bundle's parts and the JSON output are
read from what actually ran."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from tests.support.crd_schema import REPO
from tests.support.s3 import MotoServer, s3_environment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
DEMO = REPO / "examples" / "demo"
DIGITS = REPO / "examples" / "digits"
PROCTOR = [sys.executable, "-m", "proctor.cli.main"]


def _local_run(state: Path, *args: str, timeout: float = 360) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PROCTOR, "local", "run", "--state-dir", str(state), "--code-path", str(DIGITS), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], dict, Path]:
    state = tmp_path_factory.mktemp("local")
    result = _local_run(
        state,
        "--output",
        "json",
        "--expect",
        "digits-detached=Failed",
        "--expect",
        "digits-lr-restart=Failed",
        *(str(DEMO / name) for name in ("healthy.yaml", "planted-bug.yaml", "lr-restart.yaml")),
    )
    assert result.stdout.strip(), f"no JSON on stdout; stderr:\n{result.stderr[-3000:]}"
    return result, json.loads(result.stdout), state


def _runs(record: dict) -> dict[str, dict]:
    return {run["name"]: run for run in record["runs"]}


def _pods(state: Path) -> list[str]:
    """The pods the cluster ran, by name: each left its directory under the run's state."""
    [run_dir] = (state / "runs").iterdir()
    return sorted(p.name for p in (run_dir / "pods" / "default").iterdir())


def test_the_demo_ends_as_designed_and_says_so_in_its_exit_code(demo):
    result, record, _ = demo
    assert result.returncode == 0, result.stderr[-3000:]
    assert (record["exitCode"], record["succeeded"], record["timedOut"]) == (0, True, False)
    assert [run["asExpected"] for run in record["runs"]] == [True, True, True]


def test_the_healthy_experiment_passes_the_pyramid_and_trains_its_budget(demo):
    _, record, state = demo
    healthy = _runs(record)["digits-healthy"]
    assert healthy["phase"] == "Succeeded"
    assert [layer["phase"] for layer in healthy["pyramid"]] == ["Passed"] * 4
    assert all(
        check["verdict"] in ("Passed", "Skipped")
        for layer in healthy["pyramid"]
        for check in layer["checks"]
    )
    assert healthy["training"]["step"] == healthy["training"]["maxSteps"] == 300
    assert healthy["anomalies"] == []
    assert any(name.startswith("digits-healthy-train-") for name in _pods(state))


def test_the_planted_bug_is_stopped_at_l1_and_never_trains(demo):
    _, record, state = demo
    detached = _runs(record)["digits-detached"]
    assert detached["phase"] == "Failed"
    assert [layer["phase"] for layer in detached["pyramid"]] == [
        "Passed",
        "Failed",
        "Pending",
        "Pending",
    ]
    failed = {c["name"]: c for c in detached["pyramid"][1]["checks"] if c["verdict"] == "Failed"}
    assert "gradients_present" in failed
    assert "hidden.weight" in failed["gradients_present"]["message"]
    assert detached["training"] is None
    pods = [name for name in _pods(state) if name.startswith("digits-detached-")]
    assert pods, "its pyramid ran as pods"
    assert not [name for name in pods if "-train-" in name], "no training Job may run"
    assert not [name for name in pods if "-l2-" in name or "-l3-" in name], "L2, L3 never start"


def test_the_learning_rate_restart_trips_the_watchdog_and_its_bundle_has_every_part(demo):
    _, record, _ = demo
    restart = _runs(record)["digits-lr-restart"]
    assert restart["phase"] == "Failed"
    assert [layer["phase"] for layer in restart["pyramid"]] == ["Passed"] * 4
    anomaly = restart["anomalies"][0]
    assert (anomaly["kind"], anomaly["severity"]) == ("NonFiniteLoss", "Critical")
    assert anomaly["step"] > 400, "the loss goes non-finite after the restart at step 400"
    where = Path(anomaly["bundleURI"].removeprefix("file://"))
    assert where.is_relative_to(Path(record["bundleURI"].removeprefix("file://")))
    bundle = json.loads((where / "bundle.json").read_text())
    assert bundle["schemaVersion"] == "proctor.dev/bundle/v1"
    assert bundle["finding"]["kind"] == "NonFiniteLoss"
    assert bundle["experiment"]["hypothesis"]["statement"].startswith("A warm restart")
    assert [layer["phase"] for layer in bundle["pyramid"]] == ["Passed"] * 4
    assert bundle["metrics"], "the metric window around the finding"
    assert (where / "metrics.png").read_bytes().startswith(b"\x89PNG")
    assert "AdjustHyperparameters" in (where / "recovery.md").read_text()


def test_bundle_show_renders_the_demo_bundle(demo):
    _, record, _ = demo
    uri = _runs(record)["digits-lr-restart"]["anomalies"][0]["bundleURI"]
    shown = subprocess.run(
        [*PROCTOR, "bundle", "show", uri],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert shown.returncode == 0, shown.stderr
    for part in (
        "default/digits-lr-restart",
        "NonFiniteLoss (Critical)",
        "metrics.png",
        "What happened",
    ):
        assert part in shown.stdout, part


def test_the_live_view_in_a_terminal_ends_with_the_final_table(tmp_path):
    """Under a pseudo-terminal of a fixed size, as a person sees it; a failed run exits 1."""
    command = shlex.join(
        [
            *PROCTOR,
            "local",
            "run",
            "--state-dir",
            str(tmp_path),
            "--code-path",
            str(DIGITS),
            str(DEMO / "planted-bug.yaml"),
        ]
    )
    transcript = tmp_path / "terminal.txt"
    # COLUMNS and LINES, where the caller's shell or CI exports them, would override the
    # pseudo-terminal's size in rich; drop them so the terminal alone decides.
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    result = subprocess.run(
        ["script", "-qfec", f"stty cols 120 rows 40; {command}", str(transcript)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", transcript.read_text(errors="replace"))
    assert result.returncode == 1, screen[-3000:]
    assert "digits-detached  Validating" in screen, "the live panel, while it ran"
    table = screen[screen.rindex("proctor local run") :]
    row = next(line for line in table.splitlines() if "digits-detached" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == [
        "digits-detached",
        "Failed",
        "L1 failed (2 of 7 checks)",
        "no training Job",
        "none",
    ]
    assert "gradients_present: 2 of 4 parameters got no gradient" in table


def test_a_long_lived_local_cluster_runs_what_local_run_applies_to_it(tmp_path):
    """`local up` keeps a cluster and an operator for kubectl; `local run --kubeconfig` uses it."""
    state = tmp_path / "up"
    up = subprocess.run(
        [
            *PROCTOR,
            "local",
            "up",
            "--state-dir",
            str(state),
            "--code-path",
            str(DIGITS),
            "--code-path",
            str(DEMO),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        kubeconfig = state / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig}" in up.stdout
        result = subprocess.run(
            [
                *PROCTOR,
                "local",
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--output",
                "json",
                str(DEMO / "planted-bug.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        assert result.returncode == 1, "a failed run exits 1"
        [run] = json.loads(result.stdout)["runs"]
        assert (run["phase"], run["pyramid"][1]["phase"]) == ("Failed", "Failed")
        again = subprocess.run(
            [
                *PROCTOR,
                "local",
                "run",
                "--kubeconfig",
                str(kubeconfig),
                str(DEMO / "planted-bug.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert again.returncode == 2
        assert "exists already" in again.stdout + again.stderr
        assert "--replace" in again.stdout + again.stderr
    finally:
        down = subprocess.run(
            [*PROCTOR, "local", "down", "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert "stopped" in down.stdout
    assert not (state / "ready").exists()


def test_bundles_go_to_s3_with_bundle_uri_and_bundle_show_reads_them_there(tmp_path):
    """`--bundle-uri s3://...`: the watchdog uploads there (moto's S3 server), and `bundle show`
    reads the bundle back from the URI the experiment's status names."""
    manifest = yaml.safe_load((DEMO / "lr-restart.yaml").read_text())
    manifest["spec"]["validation"] = {"skip": {"reason": "this test is about where bundles go"}}
    path = tmp_path / "lr-restart.yaml"
    path.write_text(yaml.safe_dump(manifest))
    server = MotoServer()
    server.start()
    try:
        with s3_environment(server):
            boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket="bundles")
            result = _local_run(
                tmp_path / "state",
                "--code-path",
                str(DEMO),
                "--bundle-uri",
                "s3://bundles/demo",
                "--output",
                "json",
                "--expect",
                "digits-lr-restart=Failed",
                str(path),
                timeout=240,
            )
            assert result.returncode == 0, result.stderr[-3000:]
            [run] = json.loads(result.stdout)["runs"]
            uri = run["anomalies"][0]["bundleURI"]
            assert uri.startswith("s3://bundles/demo/default/digits-lr-restart/")
            listed = boto3.client("s3", endpoint_url=server.url).list_objects_v2(Bucket="bundles")
            keys = {item["Key"] for item in listed["Contents"]}
            prefix = uri.removeprefix("s3://bundles/")
            assert {prefix + name for name in ("bundle.json", "metrics.png", "recovery.md")} <= keys
            shown = subprocess.run(
                [*PROCTOR, "bundle", "show", "--output", "json", uri],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert shown.returncode == 0, shown.stderr
            record = json.loads(shown.stdout)
            assert record["bundle"]["finding"]["kind"] == "NonFiniteLoss"
            assert record["plot"] == uri + "metrics.png"
            assert "What happened" in record["prompt"]
    finally:
        server.stop()


def test_an_operator_that_dies_is_reported_as_json_not_a_traceback(tmp_path):
    """A broken installation setting makes the operator exit at start: the caller reading
    --output json still gets JSON, saying where the cause is, and exit code 4."""
    result = subprocess.run(
        [
            *PROCTOR,
            "local",
            "run",
            "--state-dir",
            str(tmp_path),
            "--code-path",
            str(DIGITS),
            str(DIGITS / "experiment.yaml"),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PROCTOR_WATCHDOG_THRESHOLDS": "{not json"},
    )
    assert result.returncode == 4, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert "the operator exited" in body["error"]
    log = Path(body["error"].rsplit("says why: ", 1)[1])
    assert "PROCTOR_WATCHDOG_THRESHOLDS is not JSON" in log.read_text()
    assert "Traceback" not in result.stderr


def test_a_document_in_another_namespace_runs_there(tmp_path):
    """The embedded cluster starts with `default` only: the run creates the namespaces its
    documents name, and its operator watches them all."""
    document = yaml.safe_load((DIGITS / "pyramid.yaml").read_text())
    document["metadata"]["namespace"] = "lab"
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [
            *PROCTOR,
            "local",
            "run",
            "--state-dir",
            str(tmp_path / "state"),
            "--code-path",
            str(DIGITS),
            str(manifest),
            "--output",
            "json",
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = json.loads(result.stdout)["runs"]
    assert (run["name"], run["phase"]) == ("digits-mlp-check", "Succeeded")  # a pyramid passed
