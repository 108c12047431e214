"""Each planted bug is caught by the right layer and check, and nothing else fails first.

A false alarm on a healthy model is as serious as a missed bug: the control model and the digits
example must pass every layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from proctor.api.v1alpha1 import CheckVerdict, LayerName, LayerPhase, PyramidLayers
from proctor.pyramid.contract import factory
from proctor.pyramid.runner import run_pyramid, termination_message

HERE = Path(__file__).parent
PATHS = [HERE / "planted", HERE / "packages"]
CPU = torch.device("cpu")

# module: (layer that must fail, check that must fail in it)
PLANTED = {
    "slow_loader:setup": (LayerName.L0, "data_wait_ratio"),
    "leaky.core:setup": (LayerName.L0, "isolation"),
    "detached_output:setup": (LayerName.L1, "gradients_present"),
    "plain_list:setup": (LayerName.L1, "parameters_registered"),
    "exploding_init:setup": (LayerName.L1, "gradient_norms"),
    "dying_relu:setup": (LayerName.L1, "dead_activations"),
    "zero_lr:setup": (LayerName.L1, "parameters_update"),
    "shifted_labels:setup": (LayerName.L2, "loss_reaches_target"),
    "tiny_lr:setup": (LayerName.L2, "loss_reaches_target"),
    "save_without_optimizer:setup": (LayerName.L3, "optimizer_state_restored"),
    "load_skips_keys:setup": (LayerName.L3, "model_state_restored"),
    "dropout_in_predict:setup": (LayerName.L3, "predictions_deterministic"),
}


def _run(entrypoint: str, paths: list[Path]):
    return run_pyramid(factory(entrypoint, {}, paths), PyramidLayers(), entrypoint, CPU)


@pytest.mark.slow
@pytest.mark.parametrize("entrypoint", sorted(PLANTED), ids=lambda e: e.split(":")[0])
def test_the_planted_bug_is_caught_by_the_right_layer_and_check(entrypoint):
    layer, check_name = PLANTED[entrypoint]
    runs = _run(entrypoint, PATHS)
    phases = {run.result.layer: run.result.phase for run in runs}
    assert runs[-1].result.layer == layer, (
        f"stopped at {runs[-1].result.layer}: {runs[-1].result.message}"
    )
    assert phases[layer] == LayerPhase.FAILED
    assert all(phase == LayerPhase.PASSED for name, phase in phases.items() if name != layer)
    failed = [c.name for c in runs[-1].result.checks if c.verdict == CheckVerdict.FAILED]
    assert check_name in failed, runs[-1].result.message
    # The message teaches: it is more than a restatement of the number.
    message = next(c.message for c in runs[-1].result.checks if c.name == check_name)
    assert len(message) > 60


@pytest.mark.slow
@pytest.mark.parametrize(
    ("entrypoint", "paths"),
    [
        ("healthy_mlp:setup", PATHS),
        ("healthy_bn_dropout:setup", PATHS),
        ("digits_mlp:setup", [HERE.parents[1] / "examples" / "digits"]),
    ],
    ids=["control", "batchnorm-dropout-control", "digits-example"],
)
def test_healthy_models_pass_every_layer_without_a_warning(entrypoint, paths):
    runs = _run(entrypoint, paths)
    assert [run.result.layer for run in runs] == list(LayerName)
    for run in runs:
        assert run.result.phase == LayerPhase.PASSED, run.result.message
        assert not [c for c in run.result.checks if c.verdict == CheckVerdict.WARNING]
        assert len(termination_message(run.result).encode()) <= 4096


def teardown_module() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in {p.stem for p in (HERE / "planted").glob("*.py")} | {"leaky"}:
            del sys.modules[name]
