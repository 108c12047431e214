"""Counting a step's FLOPs (L0, and the trainer's MFU) must not turn off torch.compile: dynamo
cannot trace under the counter's dispatch mode and skips a frame it failed on for good, so a
compiled model counted through its compiled call ran eagerly for the rest of the run (measured
on an H100: the GPT example's step time was the same with and without compile)."""

from __future__ import annotations

import torch
from torch import nn

from proctor.pyramid.contract import TrainingSetup
from proctor.pyramid.flops import flops_per_step


class Traced(nn.Module):
    """Records, on each forward, whether dynamo was tracing it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 2)
        self.compiled_calls: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.compiled_calls.append(torch.compiler.is_compiling())
        return self.linear(x)


def test_a_compiled_model_still_compiles_after_its_flops_are_counted():
    torch._dynamo.reset()
    model = Traced()
    model.compile(backend="eager")  # dynamo's tracing without code generation: no compiler here
    setup = TrainingSetup(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        train_data=[],
        loss_fn=lambda m, batch: m(batch[0]).pow(2).mean(),
    )
    assert flops_per_step(setup, (torch.randn(4, 8),)) > 0
    model.compiled_calls.clear()
    model(torch.randn(4, 8))
    assert model.compiled_calls == [True], "the model runs eagerly after the FLOPs were counted"
