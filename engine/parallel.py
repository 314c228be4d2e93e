"""Inference on a CPU's cores: forward passes in threads of one torch thread each, and the helpers around them.

Why threads of one torch thread, not one process with all torch threads: a small batch (4 clouds of 1,024
points) leaves torch's intra-op parallelism little to split, and its OpenMP threads wait at a barrier after
every small op; one independent batch per core keeps every core busy. torch releases the GIL inside its ops,
so Python threads run them in parallel. `python -m bench.embed` measures the result.
"""

from __future__ import annotations

import ctypes
import os
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np
import torch


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    return max(1, min(8, available_cores()))


def ordered_map(pool: Executor, function: Callable, items: Iterable, ahead: int) -> Iterator:
    """pool.map with at most `ahead` calls in flight, results in input order (Executor.map submits all)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def chunks(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class torch_threads:
    """Set torch's intra-op threads for a block and restore them after (callers may run in-process, in tests)."""

    def __init__(self, threads: int | None):
        self.threads, self.before = threads, torch.get_num_threads()

    def __enter__(self):
        if self.threads:
            torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
        return False


def keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks (up to its 32 MiB maximum) for reuse instead of unmapping them.

    A forward pass allocates and frees the same few MiB-sized tensors batch after batch. With glibc's defaults
    the larger ones are unmapped or trimmed when freed and page-faulted in afresh by the next batch (for a
    DGCNN, about 2,500 page faults per 1,024-point cloud, some 5 % of its CPU time). A no-op without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks below 32 MiB come from the heap
    mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD: keep up to 1 GiB of free heap instead of returning it


class ParallelForward:
    """`module(tensor)` over a stream of input batches, outputs as float32 numpy arrays in input order: on a
    CPU in `workers` threads of one torch thread each (default: one per core, at most 8), on a GPU in one,
    under autocast to `amp_dtype` when given.

    Use it as a context manager: inside, its threads exist and torch runs one intra-op thread when there are
    several workers. The module must be in the mode wanted (eval); each thread enters inference mode and
    autocast itself (both are thread-local).
    """

    def __init__(self, module: Callable[[torch.Tensor], torch.Tensor], device: torch.device | str,
                 workers: int | None = None, amp_dtype: torch.dtype | None = None):
        self.device = torch.device(device)
        self.module, self.amp_dtype = module, amp_dtype
        self.workers = 1 if self.device.type != "cpu" else (workers or default_workers())
        self._threads = torch_threads(1 if self.workers > 1 else None)
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> "ParallelForward":
        self._threads.__enter__()
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="forward")
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        return self._threads.__exit__(*exc)

    def forward(self, inputs: torch.Tensor | np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                                    enabled=self.amp_dtype is not None):
            inputs = torch.as_tensor(inputs).to(self.device, non_blocking=True)
            out = self.module(inputs)
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"the module returned {type(out).__name__}, expected a tensor")
            return out.float().cpu().numpy()

    def run(self, batches: Iterable) -> Iterator[np.ndarray]:
        """Yield the output of each batch, in order (inside the context)."""
        if self._pool is None:
            yield from map(self.forward, batches)
            return
        yield from ordered_map(self._pool, self.forward, batches, ahead=2 * self.workers)
