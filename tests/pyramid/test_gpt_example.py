"""examples/gpt as a user runs it: `proctor pyramid run` on its manifest with the tiny config
passes every layer on a CPU, the trainer lowers its loss toward the synthetic language's entropy,
and the code never imports proctor. (Its default ~92M-parameter config is what
bench/gpu_pyramid_trainer.py measures on a GPU; BENCHMARKS.md has the figures.)"""

from __future__ import annotations

import ast
import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from proctor.pyramid.contract import factory
from proctor.train.telemetry import Telemetry
from proctor.train.trainer import ExitCode, TrainingPlan, train
from tests.support.crd_schema import REPO
from tests.support.tools import tool

GPT = REPO / "examples" / "gpt"
TINY = {"tiny": True}


@pytest.mark.slow
def test_the_tiny_gpt_passes_every_layer_of_its_pyramid_manifest(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            tool("proctor"),
            "pyramid",
            "run",
            "--manifest",
            "examples/gpt/pyramid.yaml",
            "--path",
            "examples/gpt",
            "--config",
            json.dumps(TINY),
            "--device",
            "cpu",
            "--output",
            "json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    layers = {layer["layer"]: layer for layer in json.loads(result.stdout)}
    phases = {name: layer["phase"] for name, layer in layers.items()}
    assert phases == {"L0": "Passed", "L1": "Passed", "L2": "Passed", "L3": "Passed"}, layers
    checks = {check["name"]: check for check in layers["L0"]["checks"]}
    assert checks["flops_per_step"]["value"] > 0
    assert checks["mfu"]["verdict"] == "Skipped"  # a CPU has no datasheet peak


@pytest.mark.slow
def test_the_trainer_brings_the_loss_down_toward_the_languages_entropy(tmp_path: Path) -> None:
    make = factory("gpt_lm:setup", TINY, [GPT])
    metrics = tmp_path / "metrics.jsonl"
    telemetry = Telemetry(metrics_file=metrics, log_every=1)
    result = train(make, TrainingPlan(max_steps=200), telemetry, torch.device("cpu"))
    telemetry.close()
    assert result.exit_code == ExitCode.DONE, result.message
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]  # checkpoint and eval lines too
    assert losses[0] > 0.8 * math.log(64)  # it starts near uniform over 64 tokens
    assert losses[-1] < 1.0  # and learns the chain (entropy about 0.2 nats)


def test_the_example_refuses_unknown_config_and_imports_no_proctor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(GPT))
    import gpt_lm

    with pytest.raises(ValueError, match="unknown config keys"):
        gpt_lm.setup({"layer": 2})
    tree = ast.parse((GPT / "gpt_lm.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(name.split(".")[0] == "proctor" for name in imported)


def test_the_default_config_is_the_size_the_gpu_figures_are_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(GPT))
    import gpt_lm

    with torch.device("meta"):  # no memory: only the shapes are counted
        model = gpt_lm.GPT(
            gpt_lm.DEFAULTS["vocabulary"],
            gpt_lm.DEFAULTS["context"],
            gpt_lm.DEFAULTS["width"],
            gpt_lm.DEFAULTS["layers"],
            gpt_lm.DEFAULTS["heads"],
        )
    assert 85e6 < sum(p.numel() for p in model.parameters()) < 100e6
