"""Process-wide CUDA settings for speed, in one call that the training entry point makes once.

`enable_fast_cuda()` turns on cuDNN autotuning (`torch.backends.cudnn.benchmark`): the pretraining step feeds
the ResNets images of one fixed size, so the first step times the candidate convolution algorithms for each
layer shape and every later step uses the fastest. With variable shapes it would re-tune on every new shape,
and it picks algorithms that may differ run to run, so it is left off when deterministic algorithms were
asked for. TF32 matmuls/convolutions (fp32 inputs rounded to a 10-bit mantissa on Ampere and newer) are a
separate, opt-in choice: they change fp32 results, while the bf16 autocast path does not need them.
"""

from __future__ import annotations

import torch


def enable_fast_cuda(device: torch.device | str, tf32: bool = False) -> dict[str, bool]:
    """Set the flags above when `device` is a CUDA device; return what was set (empty on other devices).

    The flags are process-wide torch settings; call this once, before the first step.
    """
    if torch.device(device).type != "cuda":
        return {}
    settings = {"cudnn.benchmark": not torch.are_deterministic_algorithms_enabled()}
    torch.backends.cudnn.benchmark = settings["cudnn.benchmark"]
    if tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        settings["tf32"] = True
    return settings
