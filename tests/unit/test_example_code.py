"""The example training code is real: it trains on real data and learns."""

from __future__ import annotations

import ast
import importlib
import sys

import pytest

from tests.support.crd_schema import REPO

DIGITS = REPO / "examples" / "digits"


@pytest.fixture
def digits_mlp(monkeypatch):
    monkeypatch.syspath_prepend(str(DIGITS))
    yield importlib.import_module("digits_mlp")
    sys.modules.pop("digits_mlp", None)


def test_example_code_does_not_import_proctor():
    tree = ast.parse((DIGITS / "digits_mlp.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "proctor" not in imported


@pytest.mark.slow
def test_digits_mlp_learns_on_real_data(digits_mlp):
    import torch

    parts = digits_mlp.setup({"seed": 0})
    model, optimizer, loss_fn = parts["model"], parts["optimizer"], parts["loss_fn"]
    before = parts["eval_fn"](model, parts["eval_data"])
    for _ in range(5):  # epochs of 23 batches each
        for batch in parts["train_data"]:
            optimizer.zero_grad()
            loss = loss_fn(model, batch)
            loss.backward()
            optimizer.step()
    after = parts["eval_fn"](model, parts["eval_data"])
    assert torch.isfinite(torch.tensor(after["loss"]))
    assert after["loss"] < before["loss"] / 3
    assert after["accuracy"] > 0.9


def test_digits_mlp_refuses_unknown_config(digits_mlp):
    with pytest.raises(ValueError, match="unknown config keys"):
        digits_mlp.setup({"hiden": 32})
