"""FLOPs per training step and model FLOPs utilisation (MFU).

MFU follows PaLM (Chowdhery et al. 2022, appendix B): achieved model FLOP/s (the FLOPs the model's
math needs, counted once per step with torch.utils.flop_counter, no recomputation) over the
device's peak. Peaks are dense BF16 tensor-core figures from each vendor datasheet (not the
"with sparsity" ones); a run in FP32 will show a low MFU against them, which is the point.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from proctor.pyramid.contract import TrainingSetup
from proctor.pyramid.steps import seeded, untouched_buffers


@dataclass(frozen=True)
class Peak:
    flops: float
    source: str


# Matched against torch.cuda.get_device_name(), most specific first.
PEAK_BF16_DENSE: tuple[tuple[str, Peak], ...] = (
    ("H100 NVL", Peak(835e12, "NVIDIA H100 NVL datasheet: 1,671 TFLOPS BF16 with sparsity / 2")),
    ("H100 PCIe", Peak(756e12, "NVIDIA H100 PCIe datasheet: 1,513 TFLOPS BF16 with sparsity / 2")),
    ("H100", Peak(989e12, "NVIDIA H100 SXM datasheet: 1,979 TFLOPS BF16 with sparsity / 2")),
    ("H200", Peak(989e12, "NVIDIA H200 datasheet: 1,979 TFLOPS BF16 with sparsity / 2")),
    ("B200", Peak(2250e12, "NVIDIA DGX B200 datasheet: 4.5 PFLOPS BF16 with sparsity per GPU / 2")),
    ("A100", Peak(312e12, "NVIDIA A100 datasheet: 312 TFLOPS BF16 dense")),
    ("L40S", Peak(362e12, "NVIDIA L40S datasheet: 733 TFLOPS BF16 with sparsity / 2")),
    ("L4", Peak(121e12, "NVIDIA L4 datasheet: 242 TFLOPS BF16 with sparsity / 2")),
    ("A10G", Peak(70e12, "AWS EC2 G5 documentation: A10G, 70 TFLOPS BF16 dense (approximate)")),
)


def device_peak(device: torch.device, override: float | None) -> Peak | None:
    """The peak FLOP/s to judge MFU against: the override, else the table; None on CPU."""
    if override is not None:
        return Peak(override, "configured (layers.l0.peakFlops)")
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_DENSE if _names(key, name)), None)


def _names(key: str, device_name: str) -> bool:
    """`key` as a whole word of the device name, so L4 does not match an L40."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name) is not None


def flops_per_step(setup: TrainingSetup, batch: object) -> int:
    """FLOPs of one forward and backward pass of the user's loss on `batch` (no optimizer step)."""
    setup.optimizer.zero_grad(set_to_none=True)
    counter = FlopCounterMode(display=False)
    device = next((p.device for p in setup.model.parameters()), torch.device("cpu"))
    # Counting must not change what is counted: no running-statistics update, no RNG draw. And
    # it runs eagerly: torch.compile cannot trace under the counter's dispatch mode, and a frame
    # it fails on is skipped for good, so counting through it would leave a compiled model
    # running eagerly for the rest of the run (seen: the same step time with and without).
    with (
        untouched_buffers(setup.model),
        seeded(0, device),
        _eager(),
        counter,
    ):
        setup.loss_fn(setup.model, batch).backward()
    setup.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _eager() -> contextlib.AbstractContextManager[object]:
    """torch.compile's directives ignored for the block (torch 2.6+; older ones have no stance
    to set, and count through the compiled call as before)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance else contextlib.nullcontext()
