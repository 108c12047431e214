"""A GPT-style decoder-only language model on a synthetic language, for Proctor's GPU figures.

At its defaults (12 layers, width 768, 12 heads, vocabulary 8,192, context 1,024) the model has
about 92M parameters: the size the pyramid's L0 reports MFU and memory for on a GPU. `tiny` in
the config shrinks it to something a CPU trains in seconds (the example's own test).

The data is generated, so nothing is downloaded: a fixed random Markov chain in which each token
is followed by one of two successors, with probabilities 0.95 and 0.05. A model that learns it
reaches the chain's entropy (about 0.2 nats per token) from ln(vocabulary) at the start, which
gives L2's overfit test a target well below 10% of the first loss.

Ordinary training code: it does not import proctor. bf16 autocast on CUDA, fp32 on CPU; attention
through scaled_dot_product_attention (flash attention on recent GPUs).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "layers": 12,
    "width": 768,
    "heads": 12,
    "vocabulary": 8192,
    "context": 1024,
    "batch_size": 16,
    "lr": 3e-4,  # 6e-4 without warm-up sometimes stalls this 12-layer model on a plateau
    "weight_decay": 0.1,
    "corpus_tokens": 4_000_000,
    "compile": False,
    "tiny": False,
}
TINY = {
    "layers": 2,
    "width": 64,
    "heads": 4,
    "vocabulary": 64,
    "context": 32,
    "batch_size": 16,
    "lr": 3e-3,
}
TINY_CORPUS = 50_000
FOLLOW_PROBABILITY = 0.95  # of a token's first successor; the second gets the rest


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.norm2 = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.down(functional.gelu(self.up(self.norm2(x))))


class GPT(nn.Module):
    def __init__(self, vocabulary: int, context: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocabulary, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary, bias=False)
        self.head.weight = self.tokens.weight  # tied, as GPT-2
        for name, parameter in self.named_parameters():
            if parameter.dim() >= 2:
                # GPT-2's scheme: residual projections scaled down by depth.
                residual = name.endswith(("proj.weight", "down.weight"))
                std = 0.02 / math.sqrt(2 * layers) if residual else 0.02
                nn.init.normal_(parameter, mean=0.0, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.norm(x))
        return logits


def markov_corpus(vocabulary: int, tokens: int, generator: torch.Generator) -> torch.Tensor:
    """`tokens` tokens of the synthetic language, as many chains walked side by side."""
    successors = torch.randint(vocabulary, (vocabulary, 2), generator=generator)
    chains = 1024
    steps = -(-tokens // chains)
    walk = torch.empty(chains, steps, dtype=torch.long)
    walk[:, 0] = torch.randint(vocabulary, (chains,), generator=generator)
    second = torch.rand(chains, steps, generator=generator) >= FOLLOW_PROBABILITY
    for t in range(1, steps):
        walk[:, t] = successors[walk[:, t - 1], second[:, t].long()]
    return walk.reshape(-1)[:tokens]


class Windows:
    """Random windows of the corpus, `batch_size` at a time, as (inputs, targets), made where
    the corpus is. On a GPU the corpus and the generator live there, so a batch costs no copy
    from the host: a copy from ordinary memory waits for the GPU's queued work (and reads as
    data wait), and pinning each batch in the loop can wait the same way when its allocator
    misses; a real loader pins in a worker (DataLoader pin_memory=True, num_workers>0)."""

    def __init__(
        self, corpus: torch.Tensor, context: int, batch_size: int, generator: torch.Generator
    ) -> None:
        self.corpus, self.context, self.batch_size = corpus, context, batch_size
        self.generator = generator
        self.offsets = torch.arange(context, device=corpus.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        limit = len(self.corpus) - self.context - 1
        device = self.corpus.device
        while True:
            shape = (self.batch_size, 1)
            starts = torch.randint(limit, shape, generator=self.generator, device=device)
            inputs = self.corpus[starts + self.offsets]
            targets = self.corpus[starts + self.offsets + 1]
            yield inputs, targets


def setup(config: dict[str, Any]) -> dict[str, Any]:
    """Model, optimizer, data and loss from `config` (keys of DEFAULTS; others refused)."""
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **(TINY if config.get("tiny") else {}), **config}
    if cfg["tiny"] and "corpus_tokens" not in config:
        cfg["corpus_tokens"] = TINY_CORPUS
    torch.manual_seed(int(cfg["seed"]))
    generator = torch.Generator().manual_seed(int(cfg["seed"]))
    vocabulary, context = int(cfg["vocabulary"]), int(cfg["context"])
    corpus = markov_corpus(vocabulary, int(cfg["corpus_tokens"]), generator)
    data_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    corpus = corpus.to(data_device)
    held_out = corpus[-max(len(corpus) // 20, context + 2) :]
    train_corpus = corpus[: len(corpus) - len(held_out)]
    batch_size = int(cfg["batch_size"])
    data_generator = torch.Generator(data_device).manual_seed(int(cfg["seed"]))

    model = GPT(vocabulary, context, int(cfg["width"]), int(cfg["layers"]), int(cfg["heads"]))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": float(cfg["weight_decay"])},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=float(cfg["lr"]),
        betas=(0.9, 0.95),
        fused=True,  # one kernel for the whole update (CUDA, and CPU since torch 2.4)
    )
    if cfg["compile"]:
        model.compile()  # in place: the state dict keeps its names

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=inputs.is_cuda):
            logits = model(inputs)
        return functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    eval_generator = torch.Generator(data_device).manual_seed(1)
    held_out_windows = Windows(held_out, context, batch_size, eval_generator)
    eval_batches = [batch for _, batch in zip(range(4), held_out_windows, strict=False)]

    @torch.no_grad()
    def eval_fn(model: nn.Module, data: list[Any]) -> dict[str, float]:
        device = next(model.parameters()).device
        losses = [float(loss_fn(model, (x.to(device), y.to(device)))) for x, y in data]
        return {"loss": sum(losses) / len(losses)}

    return {
        "model": model,
        "optimizer": optimizer,
        "train_data": Windows(train_corpus, context, batch_size, data_generator),
        "loss_fn": loss_fn,
        "eval_data": eval_batches,
        "eval_fn": eval_fn,
        "batch_size": batch_size,
        "tokens_per_batch": batch_size * context,
    }
