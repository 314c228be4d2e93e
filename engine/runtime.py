"""Where and how a run executes, apart from the loop: the shared config (RunConfig), the run directory a fresh
run may start in, the device and process group (Runtime), the learning-rate schedule, the optimiser, the
per-epoch sampler, and the comparison of two configs that a resume checks. engine/trainer.py builds on it.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping

import torch
from torch import nn
from torch.utils.data import Sampler

from utils import distributed
from utils.config import (Config, ConfigKeys, Fraction, NonNegativeFloat, NonNegativeInt, OneOf, Pattern,
                          PositiveFloat, PositiveInt, Range, covered, flatten)
from utils.errors import ConfigError, OutputError
from utils.files import describe_os_error, read_json
from utils.fast_cuda import enable_fast_cuda
from utils.seeding import seed_everything

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
OPTIMIZERS = {
    "adam": lambda params, cfg: torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
    "adamw": lambda params, cfg: torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
    "sgd": lambda params, cfg: torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                                               weight_decay=cfg["weight_decay"]),
}


@dataclass
class OptimConfig:
    name: Annotated[str, OneOf(*OPTIMIZERS)] = "adam"
    lr: PositiveFloat = 1e-3
    # cosine: from lr to min_lr per iteration after warmup_epochs; step: lr x step_gamma every step_epochs
    schedule: Annotated[str, OneOf("cosine", "step")] = "cosine"
    min_lr: NonNegativeFloat = 0.0  # cosine floor
    step_epochs: PositiveInt = 20  # step schedule (PointNet's: x0.7 every 200k samples, 20 ModelNet40 epochs)
    step_gamma: Annotated[float, Range(gt=0, le=1)] = 0.7
    weight_decay: NonNegativeFloat = 1e-6
    momentum: Fraction = 0.9  # sgd only
    epochs: PositiveInt = 100
    batch_size: PositiveInt = 32  # per process: under torchrun the global batch is batch_size x processes
    warmup_epochs: NonNegativeInt = 0


@dataclass
class TrainConfig:
    amp: Annotated[str, OneOf(*AMP_DTYPES)] = "bf16"  # CUDA only: the CPU always runs fp32
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun
    num_workers: NonNegativeInt = 8  # DataLoader worker processes per training process
    grad_clip: NonNegativeFloat = 0.0  # max gradient norm; 0 = off
    log_every: PositiveInt = 20  # steps between TensorBoard / curves.csv points
    eval_every: PositiveInt = 1  # epochs between validation runs (checkpoint selection)
    checkpoint_every_steps: NonNegativeInt = 0  # also save last.pt every N steps inside an epoch; 0 = off
    max_steps_per_epoch: NonNegativeInt = 0  # cap on steps per epoch (demo and test runs); 0 = whole dataset
    compile: bool = False  # torch.compile the task's forward (the first steps then take longer)


DEVICE = Annotated[str, Pattern(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")]


@dataclass
class RunConfig:
    """The keys every script shares; a task's config dataclass adds its own sections."""

    seed: NonNegativeInt = 0
    device: DEVICE = "auto"  # auto: CUDA when present, else the CPU
    out: str = "runs/run"  # the run directory: config.yaml, metrics.json, checkpoints, tensorboard/, curves
    resume: str | None = None  # null | auto (<out>/last.pt when it exists) | path/to/last.pt
    # a run that starts from scratch in an `out` holding another run's files (see prepare_fresh_run_dir) is
    # refused; overwrite=true (--overwrite) deletes those files first
    overwrite: bool = False
    # keys (dotted; a section name covers its keys) whose change a resume accepts, e.g. [optim.epochs]; the
    # accepted changes are recorded in metrics.json. ALWAYS_ALLOWED keys never need it.
    resume_allow: Annotated[list[str], ConfigKeys()] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Keys that say where and how fast a run goes, not what it computes: a resume may change them freely. `device`
# moves the run to other hardware, whose float rounding differs as on any other machine.
ALWAYS_ALLOWED = ("out", "resume", "resume_allow", "overwrite", "device", "data.root", "train.num_workers",
                  "train.log_every", "train.checkpoint_every_steps")


# What the scripts write into a run directory (train.py and the fine-tuning runs through the Trainer, the
# classification evaluation, the multi-seed and 6-fold drivers' summaries).
RUN_FILES = ("config.yaml", "metrics.json", "last.pt", "best.pt", "curves.csv", "curves.png", "tensorboard",
             "tsne_*.png", "summary.json", "summary.md")


def run_files(run_dir: str | Path) -> list[Path]:
    """The files and folders of RUN_FILES in `run_dir`."""
    run_dir = Path(run_dir)
    return sorted({path for pattern in RUN_FILES for path in run_dir.glob(pattern)}) if run_dir.is_dir() else []


def refuse_another_run(run_dirs: Iterable[str | Path], overwrite: bool) -> None:
    """ConfigError unless every one of `run_dirs` holds no run's files (or `overwrite` replaces them). Called
    by the drivers that start several runs, for all of them before the first one starts."""
    if overwrite:
        return
    for run_dir in run_dirs:
        found = run_files(run_dir)
        if found:
            raise ConfigError(f"out={run_dir}: holds another run ({', '.join(p.name for p in found[:4])}"
                              f"{', ...' if len(found) > 4 else ''}); to continue it use resume=auto, to replace "
                              "it overwrite=true (--overwrite), or give another out")


def prepare_fresh_run_dir(run_dir: str | Path, overwrite: bool, restart: bool = False) -> None:
    """Make `run_dir` ready for a run that starts from scratch: a fresh run's files are never mixed with another
    run's (a metrics.json merged into, a random-init baseline kept, curves appended to).

    Another run's files there are refused (ConfigError), or deleted with `overwrite`. `restart`: resume=auto
    found no last.pt, so what is there was left by a run stopped before its first checkpoint, and is deleted;
    unless it holds a finished result (best.pt, or a test score in metrics.json) that no checkpoint would give
    back, which is refused as well.
    """
    run_dir = Path(run_dir)
    found = run_files(run_dir)
    if not found:
        return
    if not overwrite:
        if not restart:
            refuse_another_run([run_dir], overwrite)
        finished = (run_dir / "best.pt").exists() or "test" in read_json(run_dir / "metrics.json")
        if finished:
            raise ConfigError(f"out={run_dir}: holds a finished run ({', '.join(p.name for p in found[:4])}"
                              f"{', ...' if len(found) > 4 else ''}) that this run cannot resume; to replace it use "
                              "overwrite=true (--overwrite), or give another out")
        print(f"note: {run_dir} holds no last.pt: this run starts from scratch and replaces what an earlier run "
              f"left there ({', '.join(p.name for p in found)})", file=sys.stderr)
    for path in found:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as error:
            raise OutputError(f"{path}: cannot remove it to start afresh ({describe_os_error(error)})") from None


def config_changes(old: Mapping, new: Mapping) -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every key whose value differs; a key absent on one side is None."""
    before, after = flatten(old), flatten(new)
    return [(key, before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)]


def run_changes(old: Mapping, new: Mapping) -> list[tuple[str, Any, Any]]:
    """The changes between two resolved configs that make them different runs: those outside ALWAYS_ALLOWED."""
    return [change for change in config_changes(old, new) if not covered(change[0], ALWAYS_ALLOWED)]


@dataclass
class Runtime:
    """Where this process runs: device, rank and world size, and the autocast dtype (None: fp32)."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a device, failing clearly when CUDA is asked for but absent."""
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        print("note: CUDA is not available, so training runs on the CPU (fine for the demo, slow for real data)",
              file=sys.stderr)
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{requested}' was asked for, but CUDA is not available on this machine "
                              "(no GPU, or a CPU-only torch build); use device=cpu or device=auto")
        index = int(requested.split(":")[1]) if ":" in requested else local_rank
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device '{requested}': this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise ConfigError(f"device '{requested}': expected auto, cpu, cuda or cuda:N")


def setup_runtime(cfg: Config) -> Runtime:
    """Resolve the device, join the torchrun process group if launched by torchrun, seed with seed + rank."""
    wants_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
    rank, local_rank, world_size = distributed.init_distributed("cuda" if wants_cuda else "cpu")
    device = resolve_device(cfg.device, local_rank)
    enable_fast_cuda(device)
    amp_dtype = AMP_DTYPES[cfg.train.amp] if device.type == "cuda" else None  # CPU runs in fp32
    seed_everything(cfg.seed + rank)
    return Runtime(device, rank, local_rank, world_size, amp_dtype)


def cosine_lr(step: int, total_steps: int, base_lr: float, min_lr: float, warmup_steps: int) -> float:
    """Linear warm-up, then one half cosine from base_lr to min_lr over the remaining steps.

    Stepped per iteration with the horizon in iterations: the ancestors stepped per iteration with the
    horizon in epochs, so their rate cycled every 2*epochs iterations.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def learning_rate(step: int, steps_per_epoch: int, total_steps: int, optim_cfg: Mapping) -> float:
    """The rate of optimiser step `step` under `optim_cfg`'s schedule (both warm up over warmup_epochs)."""
    warmup_steps = optim_cfg["warmup_epochs"] * steps_per_epoch
    if optim_cfg["schedule"] == "step":
        if warmup_steps > 0 and step < warmup_steps:
            return optim_cfg["lr"] * (step + 1) / warmup_steps
        return optim_cfg["lr"] * optim_cfg["step_gamma"] ** (step // (optim_cfg["step_epochs"] * steps_per_epoch))
    return cosine_lr(step, total_steps, optim_cfg["lr"], optim_cfg["min_lr"], warmup_steps)


def build_optimizer(params, optim_cfg: Mapping) -> torch.optim.Optimizer:
    """`params`: parameters or parameter groups (a group's own keys, e.g. weight_decay, win over the config)."""
    return OPTIMIZERS[optim_cfg["name"]](params, optim_cfg)


class EpochSampler(Sampler[int]):
    """This rank's share of a seeded per-epoch permutation, starting after `skip` samples.

    The order depends only on (seed, epoch), so a run resumed in the middle of an epoch sees exactly the
    batches that the uninterrupted run would have seen next. Padded by wrapping so every rank gets the same
    number of samples (as DistributedSampler does).
    """

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1):
        self.length, self.seed, self.rank, self.world_size = length, seed, rank, world_size
        self.epoch = 0
        self.skip = 0
        self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator)
        padded = torch.cat([order, order[: self.per_rank * self.world_size - self.length]])
        return iter(padded[self.rank:: self.world_size][self.skip:].tolist())

    def __len__(self) -> int:
        return max(0, self.per_rank - self.skip)


def move_to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
