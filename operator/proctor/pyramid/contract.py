"""The user-code contract: what a setup function returns, and how Proctor reads it.

User code exposes `setup(config: dict) -> dict` (named by an entrypoint `package.module:setup`)
and never imports proctor. The dict it returns holds:

    model        torch.nn.Module                                   required
    optimizer    torch.optim.Optimizer over the model's parameters  required
    train_data   an iterable of batches (a DataLoader)              required
    loss_fn      loss_fn(model, batch) -> scalar loss tensor        required
    eval_data    an iterable of batches                             optional
    eval_fn      eval_fn(model, eval_data) -> {metric: float}       optional
    predict_fn   predict_fn(model, batch) -> tensor                 optional (model(batch[0]))
    batch_size   samples per batch                                  optional (default: first dim)
    tokens_per_batch                                                optional (for tokens/s)
    save_fn      save_fn(directory, model, optimizer)               optional (default: torch.save)
    load_fn      load_fn(directory, model, optimizer)               optional (default: torch.load)

Existing training code fits with a ten-line adapter that builds these and returns them.
"""

from __future__ import annotations

import copy
import importlib
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

REQUIRED = ("model", "optimizer", "train_data", "loss_fn")
OPTIONAL = (
    "eval_data",
    "eval_fn",
    "predict_fn",
    "batch_size",
    "tokens_per_batch",
    "save_fn",
    "load_fn",
)
CHECKPOINT_FILE = "checkpoint.pt"


class ContractError(ValueError):
    """The setup function or what it returned does not follow the contract; says how to fix it."""


@dataclass
class TrainingSetup:
    """What the user's setup returned, checked and with the contract's defaults filled in."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_data: Iterable[Any]
    loss_fn: Callable[[nn.Module, Any], torch.Tensor]
    eval_data: Iterable[Any] | None = None
    eval_fn: Callable[[nn.Module, Any], dict[str, float]] | None = None
    predict_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None
    batch_size: int | None = None
    tokens_per_batch: int | None = None
    save_fn: Callable[[Path, nn.Module, torch.optim.Optimizer], None] | None = None
    load_fn: Callable[[Path, nn.Module, torch.optim.Optimizer], None] | None = None

    def predict(self, batch: Any) -> torch.Tensor:
        if self.predict_fn is not None:
            return self.predict_fn(self.model, batch)
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        output: torch.Tensor = self.model(inputs)
        return output

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.save_fn is not None:
            self.save_fn(directory, self.model, self.optimizer)
        else:
            state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
            torch.save(state, directory / CHECKPOINT_FILE)

    def load(self, directory: Path) -> None:
        if self.load_fn is not None:
            self.load_fn(directory, self.model, self.optimizer)
        else:
            state = torch.load(directory / CHECKPOINT_FILE, weights_only=True)
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])

    def samples_in(self, batch: Any) -> int:
        if self.batch_size is not None:
            return self.batch_size
        first = batch[0] if isinstance(batch, list | tuple) else batch
        if isinstance(first, dict):
            first = next(iter(first.values()))
        return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else 1

    def batches(self) -> Iterator[Any]:
        """Batches forever, epoch after epoch."""
        while True:
            produced = False
            for batch in self.train_data:
                produced = True
                yield batch
            if not produced:
                raise ContractError("train_data produced no batches: is the dataset empty?")


SetupFactory = Callable[[], TrainingSetup]


def load_setup_function(entrypoint: str, paths: list[Path] | None = None) -> Callable[..., Any]:
    """The function `package.module:function` names, with `paths` put first on sys.path."""
    module_name, _, function_name = entrypoint.rpartition(":")
    if not module_name or not function_name:
        raise ContractError(
            f"{entrypoint!r} is not an entrypoint: write it as package.module:setup"
        )
    if module_name.endswith(".py"):  # a file path, as in examples/digits/digits_mlp.py:setup
        file = Path(module_name)
        paths = [file.parent, *(paths or [])]
        module_name = file.stem
    for path in reversed(paths or []):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ContractError(
            f"cannot import {module_name!r} ({exc}); is its directory on the path (--path)?"
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ContractError(f"{module_name} has no function {function_name!r}")
    return function  # type: ignore[no-any-return]


def build_setup(function: Callable[..., Any], config: dict[str, Any]) -> TrainingSetup:
    """Call the user's setup with `config` and check what comes back."""
    returned = function(copy.deepcopy(config))
    if returned is None or not (isinstance(returned, dict) or hasattr(returned, "__dict__")):
        raise ContractError(
            f"setup() returned {type(returned).__name__}; it must return a dict with model, "
            "optimizer, train_data and loss_fn"
        )
    parts = returned if isinstance(returned, dict) else vars(returned)
    missing = [key for key in REQUIRED if parts.get(key) is None]
    if missing:
        raise ContractError(
            f"setup() returned no {', '.join(missing)}: it must return a dict with model, "
            "optimizer, train_data and loss_fn (see the README, 'The user-code contract')"
        )
    unknown = sorted(set(parts) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ContractError(
            f"setup() returned unknown keys {unknown}; known: {list(REQUIRED + OPTIONAL)}"
        )
    if not isinstance(parts["model"], nn.Module):
        raise ContractError("setup()['model'] must be a torch.nn.Module")
    if not isinstance(parts["optimizer"], torch.optim.Optimizer):
        raise ContractError("setup()['optimizer'] must be a torch.optim.Optimizer")
    if iter(parts["train_data"]) is parts["train_data"]:
        raise ContractError(
            "setup()['train_data'] is a one-shot iterator (a generator?): the pyramid loops over "
            "it epoch after epoch; return something iterable again, like a DataLoader or a list"
        )
    return TrainingSetup(**{k: v for k, v in parts.items() if k in REQUIRED + OPTIONAL})


def factory(
    entrypoint: str, config: dict[str, Any], paths: list[Path] | None = None
) -> SetupFactory:
    """A function that builds a fresh setup each time (L3 needs a second, independent one)."""
    function = load_setup_function(entrypoint, paths)
    return lambda: build_setup(function, config)
