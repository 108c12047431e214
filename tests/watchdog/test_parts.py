"""The watchdog's parts without servers: reading the trainer, the schedule, bundles, the spool."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from proctor.api.bundle import Bundle, RecoveryStage
from proctor.api.v1alpha1 import AnomalyKind
from proctor.api.v1alpha1.experiment import Severity, WatchdogSchedule
from proctor.storage import FileStore
from proctor.train.telemetry import Telemetry
from proctor.watchdog.bundles import build_bundle, bundle_directory, bundle_files
from proctor.watchdog.observations import Finding, GpuSample, TrainerSample
from proctor.watchdog.schedule import next_interval
from proctor.watchdog.spool import Spool
from proctor.watchdog.trainer import JsonLinesTail, parse_trainer

NOW = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)


def _exposition(experiment: str = "exp", loss: float = 0.5) -> str:
    telemetry = Telemetry(experiment=experiment, namespace="ml", log_every=1)
    telemetry.step(step=40, loss=loss, samples=64)
    telemetry.flush()
    telemetry.checkpoint(40, "s3://b/ml/exp/step-000000040/")
    return generate_latest(telemetry.registry).decode()


def test_the_trainer_endpoint_is_read_for_this_experiment_only():
    sample = parse_trainer(_exposition(), "exp", "ml", now=100.0)
    assert sample.step == 40
    assert sample.loss == pytest.approx(0.5)
    assert sample.last_checkpoint_step == 40
    assert sample.last_checkpoint_time is not None
    assert sample.mfu is None, "never reported: the gauge's 0 is not a measurement"
    other = parse_trainer(_exposition("someone-else"), "exp", "ml", now=100.0)
    assert other.step is None


def test_a_nan_loss_is_read_as_nan_not_dropped():
    sample = parse_trainer(_exposition(loss=float("nan")), "exp", "ml", now=1.0)
    assert sample.loss is not None
    assert math.isnan(sample.loss)


def test_the_json_lines_tail_reads_only_whole_new_lines(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    tail = JsonLinesTail(path)
    assert tail.read() == []
    path.write_text(
        '{"time":1,"step":10,"loss":2.0}\n{"time":2,"event":"checkpoint","step":10,"uri":"u"}\n'
        '{"time":3,"step":20,"loss":"nan"}\n{"time":4,"st'
    )
    points = tail.read()
    assert (points[0].step, points[0].loss) == (10, 2.0)
    assert math.isnan(points[1].loss)
    assert list(tail.checkpoints) == [(10, "u")]
    with path.open("a") as handle:
        handle.write('ep":30,"loss":1.5}\n')
    assert [(p.step, p.loss) for p in tail.read()] == [(30, 1.5)]


def test_a_malformed_record_is_skipped_and_the_lines_after_it_still_read(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"time":1,"step":10,"loss":null}\n[1,2]\n{"step":11}\n{"time":3,"step":12,"loss":"nan"}\n'
    )
    [point] = JsonLinesTail(path).read()
    assert point.step == 12
    assert math.isnan(point.loss)


def test_a_restarted_watchdog_reads_only_the_recent_end_of_a_long_file(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    line = '{"time":1,"step":%d,"loss":1.0}\n'
    path.write_text("".join(line % i for i in range(200_000)))  # ~6 MB of history
    points = JsonLinesTail(path).read()
    assert points
    assert points[-1].step <= 199_999
    assert points[0].step > 0, "the start of a days-long file is not read again"


def test_the_rank_zero_file_is_read_under_torchrun(tmp_path: Path):
    (tmp_path / "metrics.rank0.jsonl").write_text('{"time":1,"step":5,"loss":1.0}\n')
    (tmp_path / "metrics.rank1.jsonl").write_text('{"time":1,"step":5,"loss":9.0}\n')
    assert [p.loss for p in JsonLinesTail(tmp_path / "metrics.jsonl").read()] == [1.0]


def test_checks_are_dense_at_the_start_and_the_end_sparse_between():
    schedule = WatchdogSchedule(
        dense_interval="15s", sparse_interval="2m", warmup="10m", end_window_ratio=0.1
    )
    assert next_interval(60, 0.01, schedule) == 15, "warm-up"
    assert next_interval(3600, 0.1, schedule) == 120
    assert next_interval(3600 * 9.5, 0.95, schedule) == 15, "the last 10% of the budget"
    assert next_interval(3600, None, schedule) == 120, "no bound: no end window"


def _finding() -> Finding:
    return Finding(
        kind=AnomalyKind.NON_FINITE_LOSS,
        severity=Severity.CRITICAL,
        message="loss is nan at step 120 (HF_TOKEN=hf_plantedsecret999)",
        key="NonFiniteLoss@120",
        evidence={"loss": "nan", "step": 120},
        step=120,
    )


EXPERIMENT = {
    "metadata": {"name": "exp", "namespace": "ml", "uid": "u-1"},
    "spec": {
        "hypothesis": {
            "statement": "warm-up lets lr 3e-3 train",
            "expectedOutcome": "loss below 0.1",
            "inspiredBy": [{"kind": "Note", "ref": "x"}],
            "independentVariable": "code.config.lr",
            "controls": ["seed 0"],
        },
        "code": {
            "image": "img:1",
            "entrypoint": "m:setup",
            "env": [
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "NOTE", "value": "api_key=sk-live-plantedliteral"},
            ],
        },
    },
}


def _bundle(tmp_path: Path, log_tail: list[str]) -> Bundle:
    trainer = [
        TrainerSample(time=NOW.timestamp() - 60 + i, step=100 + i, loss=1.0 / (i + 1))
        for i in range(20)
    ]
    gpus = [GpuSample(time=NOW.timestamp(), gpu="0", utilization=97.0, xid=0)]
    return build_bundle(
        uri="file:///bundles/ml/exp/20261122T050000Z-NonFiniteLoss/",
        finding=_finding(),
        now=NOW,
        experiment=EXPERIMENT,
        pyramid=None,
        trainer=trainer,
        gpus=gpus,
        latest_gpus=gpus,
        checkpoints=[(100, "s3://b/ml/exp/step-000000100/")],
        pod=None,
        log_tail=log_tail,
        notes=["GPU metrics unavailable"],
    )


def test_a_bundle_has_its_three_parts_and_says_where_to_go_back_to(tmp_path: Path):
    bundle = _bundle(tmp_path, ["step 119 loss 0.02", "Bearer abcdefghijklmnop1234"])
    files = bundle_files(bundle)
    assert set(files) == {"bundle.json", "recovery.md", "metrics.png"}
    assert files["metrics.png"].startswith(b"\x89PNG")
    written = json.loads(files["bundle.json"])
    assert written["schemaVersion"] == "proctor.dev/bundle/v1"
    assert written["finding"]["kind"] == "NonFiniteLoss"
    assert written["recoveryStage"] == RecoveryStage.ADJUST_HYPERPARAMETERS.value
    assert written["experiment"]["hypothesis"]["independentVariable"] == "code.config.lr"
    assert written["checkpoints"][-1]["step"] == 100
    assert len(written["metrics"]) == 20
    prompt = files["recovery.md"].decode()
    for part in (
        "## What happened",
        "## Evidence",
        "warm-up lets lr 3e-3 train",
        "AdjustHyperparameters",
        "step-000000100",
        "proctor pyramid run",
    ):
        assert part in prompt, part


def test_nothing_secret_reaches_a_bundle(tmp_path: Path):
    bundle = _bundle(
        tmp_path, ["export HF_TOKEN=hf_plantedsecret999", "Bearer abcdefghijklmnop1234"]
    )
    text = b"".join(v for k, v in bundle_files(bundle).items() if k != "metrics.png").decode()
    for secret in ("hf_plantedsecret999", "abcdefghijklmnop1234", "sk-live-plantedliteral"):
        assert secret not in text, secret
    assert '"secretKeyRef"' in text, "a Secret reference stays a reference"


def test_the_bundle_directory_is_sortable_by_time_and_names_the_kind():
    name = bundle_directory(_finding(), NOW)
    assert name.startswith("20261122T050000Z-NonFiniteLoss-")
    other = Finding(
        kind=AnomalyKind.NON_FINITE_LOSS,
        severity=Severity.CRITICAL,
        message="another incident in the same check",
        key="NonFiniteLoss@500",
    )
    assert bundle_directory(other, NOW) != name, "two incidents never share a directory"


class _FlakyStore:
    def __init__(self, root: Path, up: list[bool]) -> None:
        self.inner, self.up = FileStore(root), up

    def put_file(self, key: str, path: Path) -> None:
        if not self.up[0]:
            raise ConnectionError("storage down")
        self.inner.put_file(key, path)


def test_a_bundle_survives_a_storage_outage_and_a_restart(tmp_path: Path):
    up, clock = [False], [0.0]
    stores = tmp_path / "store"

    def opener(uri: str) -> _FlakyStore:
        return _FlakyStore(stores / uri.rsplit("/", 1)[-1], up)

    spool = Spool(tmp_path / "spool", opener, base_delay=5, clock=lambda: clock[0])
    spool.add("s3://b/ml/exp/20261122T050000Z-Stall", {"bundle.json": b"{}", "recovery.md": b"#"})
    assert spool.flush() == []
    assert spool.waiting() == ["20261122T050000Z-Stall"]
    up[0] = True
    assert spool.flush() == [], "not before the backoff is due"
    clock[0] = 6.0
    restarted = Spool(tmp_path / "spool", opener, clock=lambda: clock[0])  # a new process
    assert restarted.flush() == ["s3://b/ml/exp/20261122T050000Z-Stall"]
    assert (stores / "20261122T050000Z-Stall" / "bundle.json").read_bytes() == b"{}"
    assert restarted.waiting() == []


def test_reported_incidents_survive_a_restart(tmp_path: Path):
    Spool(tmp_path, FileStore).remember("Stall@400")
    assert Spool(tmp_path, FileStore).reported() == ["Stall@400"]


def test_the_checkpoint_inventory_lists_only_complete_checkpoints_in_the_store(tmp_path: Path):
    from proctor.watchdog.runner import Watchdog, WatchdogConfig

    store = tmp_path / "ckpt"
    for step, complete in ((100, True), (200, True), (300, False)):  # 300: a crash mid-write
        (store / f"step-{step:09d}").mkdir(parents=True)
        (store / f"step-{step:09d}" / "checkpoint.pt").write_bytes(b"x")
        if complete:
            (store / f"step-{step:09d}" / "COMPLETE").write_text("{}")
    config = WatchdogConfig(
        experiment="exp",
        namespace="ml",
        pod=None,
        metrics_url="http://127.0.0.1:9/metrics",
        metrics_file=None,
        bundle_uri=None,
        checkpoint_uri=f"file://{store}",
        spool_dir=tmp_path / "spool",
    )
    assert Watchdog(config, kube=None)._checkpoints() == [
        (100, f"file://{store}/step-000000100/"),
        (200, f"file://{store}/step-000000200/"),
    ]
