"""The peak memory a piece of work adds, the same way in every benchmark.

CUDA: `torch.cuda.max_memory_allocated()` over the work minus what was allocated before it. CPU: the increase
of the process's peak resident set (`ru_maxrss`), an upper bound, as the allocator keeps freed memory.
"""

from __future__ import annotations

import resource

import torch


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def start(device: torch.device) -> int:
    """The baseline to hand to `added`; call it right before the work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return base
    return _peak_rss()


def added(device: torch.device, base: int) -> int:
    """Bytes the work added at its peak over `base`."""
    return (torch.cuda.max_memory_allocated() if device.type == "cuda" else _peak_rss()) - base
