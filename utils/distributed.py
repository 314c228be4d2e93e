"""Small helpers around torch.distributed. No state of our own: everything asks torch.distributed.

A script launched with `torchrun --nproc_per_node=N` finds RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT in its environment; `init_distributed` reads them. Launched as plain `python`, every helper
behaves as a single process of rank 0 in a world of 1, so the same code runs either way.
"""

import os

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from utils.errors import ConfigError

_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def is_distributed() -> bool:
    """True inside an initialised process group (even one of size 1)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 writes logs, checkpoints and run folders; the other ranks only compute."""
    return rank() == 0


def init_distributed(device_type: str) -> tuple[int, int, int]:
    """Join the process group torchrun set up; return (rank, local_rank, world_size).

    NCCL on CUDA (after pinning this process to GPU `local_rank`), gloo on CPU. Without torchrun's
    environment this is a no-op returning (0, 0, 1).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 0, 1
    missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise ConfigError(f"distributed launch: environment variables {missing} are not set (use torchrun)")
    global_rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    size = int(os.environ["WORLD_SIZE"])
    if device_type == "cuda":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"distributed launch: local rank {local_rank} needs a CUDA device, "
                f"{torch.cuda.device_count()} visible"
            )
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    elif device_type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"distributed launch: device type {device_type!r} is not supported (cuda or cpu)")
    if not is_distributed():
        dist.init_process_group(backend=backend, init_method="env://", rank=global_rank, world_size=size)
    return global_rank, local_rank, size


def cleanup() -> None:
    """Leave the process group (safe to call when there is none)."""
    if is_distributed():
        dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over all ranks, as a new tensor (the input is untouched). No gradient."""
    if not is_distributed() or world_size() == 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows in rank order; gradients flow back to each rank's own slice.

    All ranks must pass the same shape (DistributedSampler gives every rank the same number of samples).
    Identity when not distributed.
    """
    if not is_distributed() or world_size() == 1:
        return tensor
    # Its backward sends each rank the SUM over ranks of the gradients of its rows: every rank's loss uses the
    # rows of every rank (they are its negatives). DDP then averages the parameter gradients over ranks, which
    # turns that sum into the gradient of the mean loss over ranks: exactly the single-process gradient on the
    # concatenated batch.
    return torch.cat(dist_nn.all_gather(tensor), dim=0)
