"""L3: the loader renames a module and loads with strict=False, silently skipping its weights."""

import torch
from planted_common import setup as base


def save(directory, model, optimizer):
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict()}, directory / "c.pt"
    )


def load(directory, model, optimizer):
    state = torch.load(directory / "c.pt")
    renamed = {k.replace("fc1.", "encoder."): v for k, v in state["model"].items()}
    model.load_state_dict(renamed, strict=False)  # fc1.* never loads
    optimizer.load_state_dict(state["optimizer"])


def setup(config):
    return base(save_fn=save, load_fn=load)
