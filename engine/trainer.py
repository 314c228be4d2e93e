"""The one training loop, shared by pretraining and every fine-tuning script.

It knows nothing of point clouds. It is handed
- a module (a task) whose `forward(batch)` returns a dict of scalar tensors with a `loss` entry (the other
  entries are logged as they are: losses, loss weights, accuracies). Three optional methods let a task say more:
  `backward_step(outputs, backward)` runs the backward pass itself (`backward(tensor, inputs=None)` is the
  trainer's, which applies the loss scaler), for objectives that need the gradients of single losses;
  `param_groups()` returns the optimiser's parameter groups (e.g. no weight decay for a weighter's own
  parameters); `end_epoch()` is called after every epoch;
- a training dataset of dict items (optionally with `set_epoch`);
- an `Evaluation`: a `validate` that picks the best checkpoint and a `test` that runs once, on that checkpoint.

and it does the rest: device and torchrun/DDP set-up, AMP, the cosine schedule stepped per iteration, tqdm,
TensorBoard, metrics.json, atomic checkpoints with every generator's state, resume, and a NaN/Inf guard.

Starting, stopping and resuming
- A run that starts from scratch does not mix with another run's files in its directory: it is refused, or
  replaces them with overwrite=true (engine.runtime.prepare_fresh_run_dir).
- SIGINT / SIGTERM: the current step finishes, last.pt is saved, and the run stops with one line saying how to
  continue (`resume=auto`), exit status 130 / 143. DataLoader workers ignore both (utils.signals.WorkerLoader),
  so a signal sent to the whole process group stops the run the same way; a worker that died anyway is noticed
  when the next batch is fetched, between steps. An epoch is saved before its validation: a signal during
  validation or the test stops at once and keeps that last.pt (its validation runs again on resume); a signal
  during a save lets the save finish (a second one aborts it, and the temporary file is removed).
- A resume must not change the run: the checkpoint's config is compared with this one, and a difference in any
  key outside ALWAYS_ALLOWED is refused, unless the key is listed in `resume_allow` (then it is recorded in
  metrics.json as `resume_changes`). Nothing in the run directory is written before that check passes.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from engine.runtime import (EpochSampler, Runtime, build_optimizer, learning_rate, move_to_device,
                            prepare_fresh_run_dir, run_changes, unwrap)
from utils.checkpoint import atomic_save, load_checkpoint_file
from utils.config import Config, covered, save_config
from utils.errors import CheckpointError, ConfigError, Interrupted, UserError
from utils.files import atomic_write, make_folder, read_json, remove_stale_temporaries, update_json
from utils.signals import StopSignals, WorkerLoader, is_worker_death, signal_name, worker_deaths_at_fetch
from utils.seeding import rng_states, set_rng_states

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class TrainingDiverged(UserError):
    """The loss became NaN or Inf. The last good checkpoint is left as it was; the script exits non-zero."""


class WorkerDied(UserError):
    """A DataLoader worker died without a stop being asked for (killed from outside: the OOM killer, say)."""


@dataclass
class Evaluation:
    """How a task is judged. Both callables take the unwrapped module and return {metric: value}.

    `validate` runs every `train.eval_every` epochs on a validation split; its `select_metric` (higher is
    better) picks `best.pt`. `test` runs once, at the end, on the weights of `best.pt`: the test set never
    takes part in any choice. Its result may also hold tables (per-class figures, a confusion matrix): they go
    to metrics.json and fit()'s result; only the numbers are printed and logged.
    """

    validate: Callable[[nn.Module], dict[str, float]] | None = None
    test: Callable[[nn.Module], dict[str, float]] | None = None
    select_metric: str | None = None

@dataclass
class _State:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed
    epoch_step: int = 0  # steps completed inside the current (unfinished) epoch
    epoch_sums: dict = field(default_factory=dict)  # running sums of the logged values in that epoch
    best_value: float | None = None
    best_epoch: int | None = None
    history: list = field(default_factory=list)
    unvalidated: dict | None = None  # the record of the epoch just trained, saved before its validation
    resume_changes: list = field(default_factory=list)  # [{step, key, old, new}] accepted by resume_allow


class Trainer:
    """One fit loop. Rank 0 alone writes files; every rank trains."""

    def __init__(self, cfg: Config, runtime: Runtime, module: nn.Module, train_set: Dataset,
                 evaluation: Evaluation, run_dir: str | Path):
        self.cfg, self.runtime, self.evaluation = cfg, runtime, evaluation
        self.run_dir = Path(run_dir)
        self.train_set = train_set
        batch_size = cfg.optim.batch_size
        self.sampler = EpochSampler(len(train_set), cfg.seed, runtime.rank, runtime.world_size)
        steps = len(self.sampler) // batch_size  # drop_last: BatchNorm needs more than one sample
        if steps == 0:
            raise ConfigError(f"optim.batch_size {batch_size} is larger than the {len(self.sampler)} training "
                              "samples this process gets")
        if cfg.train.max_steps_per_epoch > 0:
            steps = min(steps, cfg.train.max_steps_per_epoch)
        self.steps_per_epoch = steps
        self.total_steps = steps * cfg.optim.epochs
        self.state = _State()
        self.writer = None
        self.stop: StopSignals | None = None
        # Read and checked before any other work or write: a refused resume leaves the run directory as it was.
        self._accepted_changes: list[dict] = []
        self._saved_step: int | None = None  # the step of the last.pt on disk
        self._resume_path, self._resume_from = self._read_resume()
        if runtime.is_main:  # an output path under a regular file fails here, before any work
            make_folder(self.run_dir)
            if not self._continues_own_run():
                prepare_fresh_run_dir(self.run_dir, cfg.overwrite, restart=cfg.resume == "auto")
            else:  # read at the end of the first epoch: a corrupted one is refused now, not after it
                read_json(self.run_dir / "metrics.json")

        module = module.to(runtime.device)
        self._stop_group = None
        if runtime.world_size > 1:
            if cfg.train.sync_bn:
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
            # Stop requests are agreed on over gloo, on the CPU (see _stop_agreed).
            if torch.distributed.get_backend() != "gloo":
                self._stop_group = torch.distributed.new_group(backend="gloo")
        self.module = module
        self.task = unwrap(module)
        # The compiled callable shares the module's parameters; checkpoints keep the plain module's keys.
        self.forward = torch.compile(module) if cfg.train.compile else module
        self.optimizer = build_optimizer(self._param_groups(), cfg.optim)
        # fp16 needs loss scaling against underflow; bf16 has fp32's range and needs none.
        self.scaler = torch.amp.GradScaler("cuda", enabled=runtime.amp_dtype == torch.float16)

    def _param_groups(self) -> list[dict]:
        groups = self.task.param_groups() if hasattr(self.task, "param_groups") else [
            {"params": list(self.task.parameters())}]
        groups = [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in groups]
        return [group for group in groups if group["params"]]

    def _backward(self, tensor: torch.Tensor, inputs=None) -> None:
        self.scaler.scale(tensor).backward(inputs=inputs)

    # ---------------------------------------------------------------- checkpoints
    def _checkpoint(self) -> dict:
        rng = rng_states()
        if self.runtime.world_size > 1:
            gathered = [None] * self.runtime.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        return {
            "model": unwrap(self.module).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "epoch_step": self.state.epoch_step,
            "epoch_sums": {key: float(value) for key, value in self.state.epoch_sums.items()},
            "best_value": self.state.best_value,
            "best_epoch": self.state.best_epoch,
            "history": self.state.history,
            "unvalidated": self.state.unvalidated,
            "resume_changes": self.state.resume_changes,
            "world_size": self.runtime.world_size,
            "config": self.cfg.to_dict(),
        }

    def save(self, name: str) -> None:
        checkpoint = self._checkpoint()  # every rank joins the RNG gather
        if self.runtime.is_main:
            atomic_save(checkpoint, self.run_dir / name)
        if name == LAST_CHECKPOINT:
            self._saved_step = self.state.step

    def _read_resume(self) -> tuple[Path | None, dict | None]:
        resume = self.cfg.resume
        if not resume:
            return None, None
        path = self.run_dir / LAST_CHECKPOINT if resume == "auto" else Path(resume)
        if resume == "auto" and not path.exists():
            return None, None
        checkpoint = load_checkpoint_file(path)
        missing = {"model", "optimizer", "scaler", "rng", "epoch", "step"} - set(checkpoint)
        if missing:
            raise CheckpointError(f"{path}: not a training checkpoint of this repo (missing {sorted(missing)})")
        self._check_config(path, checkpoint)
        if checkpoint["epoch"] > self.cfg.optim.epochs:
            raise ConfigError(f"optim.epochs={self.cfg.optim.epochs}, but {path} has already trained "
                              f"{checkpoint['epoch']} epochs")
        return path, checkpoint

    def _continues_own_run(self) -> bool:
        """Whether this run resumes the last.pt in its own directory (else it starts there afresh, from scratch
        or from another directory's checkpoint)."""
        own = self.run_dir / LAST_CHECKPOINT
        return self._resume_path is not None and own.exists() and self._resume_path.resolve() == own.resolve()

    def _check_config(self, path: Path, checkpoint: Mapping) -> None:
        """Refuse a resume that would change the run, unless the change is allowed (see the module docstring)."""
        if "config" not in checkpoint:
            return
        allowed = list(self.cfg.get("resume_allow", []))  # its keys were checked when the config loaded
        current = self.cfg.to_dict()
        changes = run_changes(checkpoint["config"], current)
        refused = [key for key, _, _ in changes if not covered(key, allowed)]
        if refused:
            shown = ", ".join(f"{key} ({before!r} -> {after!r})" for key, before, after in changes
                              if key in refused[:5])
            more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
            raise ConfigError(f"resume from {path}: the config differs from the run's in {shown}{more}; resume with "
                              f"the run's values, or accept the change with resume_allow=[{','.join(refused)}]")
        self._accepted_changes = [{"step": checkpoint["step"], "key": key, "old": before, "new": after}
                                  for key, before, after in changes]

    def resume(self, path: str | Path, checkpoint: Mapping | None = None) -> None:
        if checkpoint is None:
            checkpoint = load_checkpoint_file(path)
        model = unwrap(self.module)
        own, theirs = model.state_dict(), checkpoint["model"]
        missing = [key for key in own if key not in theirs]
        unexpected = [key for key in theirs if key not in own]
        mismatched = [key for key in own if key in theirs and tuple(own[key].shape) != tuple(theirs[key].shape)]
        if missing or unexpected or mismatched:
            example = (f"e.g. '{mismatched[0]}' is {tuple(theirs[mismatched[0]].shape)} there, "
                       f"{tuple(own[mismatched[0]].shape)} here" if mismatched else
                       f"e.g. '{(missing or unexpected)[0]}'")
            raise CheckpointError(f"{path}: does not fit this model: {len(missing)} missing, {len(unexpected)} "
                                  f"unexpected and {len(mismatched)} mismatched tensors ({example}); was it "
                                  "written with another model config?")
        model.load_state_dict(theirs)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scaler.load_state_dict(checkpoint["scaler"])
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(f"{path}: its optimizer state does not fit this run ({error})") from None
        rng = checkpoint["rng"]
        if checkpoint.get("world_size", 1) == self.runtime.world_size:
            set_rng_states(rng[self.runtime.rank])
        elif self.runtime.is_main:
            print(f"note: {path} was written by {checkpoint.get('world_size')} processes, this run has "
                  f"{self.runtime.world_size}: random streams restart from the seed", file=sys.stderr)
        self.state = _State(checkpoint["epoch"], checkpoint["step"], checkpoint.get("epoch_step", 0),
                            dict(checkpoint.get("epoch_sums", {})), checkpoint.get("best_value"),
                            checkpoint.get("best_epoch"), list(checkpoint.get("history", [])),
                            checkpoint.get("unvalidated"),
                            list(checkpoint.get("resume_changes", [])) + self._accepted_changes)
        if self.runtime.is_main:
            print(f"resumed from {path}: epoch {self.state.epoch}, step {self.state.step}", file=sys.stderr)
        if Path(path) == self.run_dir / LAST_CHECKPOINT:
            self._saved_step = self.state.step
            for change in self._accepted_changes:
                print(f"note: resume_allow: {change['key']} changed from {change['old']!r} to {change['new']!r} "
                      f"at step {change['step']} (recorded in metrics.json)", file=sys.stderr)
            if self.state.epoch >= self.cfg.optim.epochs:
                print(f"note: {path} has already completed all {self.cfg.optim.epochs} epochs: nothing is left "
                      "to train; the test is scored again on the selected checkpoint", file=sys.stderr)

    # ---------------------------------------------------------------- logging
    def _log_scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def _append_curve(self, row: dict) -> None:
        path = self.run_dir / "curves.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _truncate_curves(self, last_step: int) -> None:
        """After a resume, drop the rows that the killed run logged past its last checkpoint."""
        path = self.run_dir / "curves.csv"
        if not path.exists():
            return
        with path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= last_step]
        if not rows:
            path.unlink()
            return
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def _write_metrics(self, extra: Mapping[str, Any] | None = None) -> None:
        if not self.runtime.is_main:
            return
        update_json(self.run_dir / "metrics.json", {
            "seed": self.cfg.seed,
            "world_size": self.runtime.world_size,
            "select_metric": self.evaluation.select_metric,
            "best": {"epoch": self.state.best_epoch, "value": self.state.best_value},
            "epochs": self.state.history,
            **({"resume_changes": self.state.resume_changes} if self.state.resume_changes else {}),
            **(extra or {}),
        })

    # ---------------------------------------------------------------- the loop
    def _loader(self, epoch: int) -> WorkerLoader:
        cuda = self.runtime.device.type == "cuda"
        # Its own generator: creating the iterator then leaves the global RNG alone, so a run resumed
        # mid-epoch draws the same dropout masks as the uninterrupted one.
        generator = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + epoch) * 1_009 + self.runtime.rank)
        return WorkerLoader(self.train_set, batch_size=self.cfg.optim.batch_size, sampler=self.sampler,
                            num_workers=self.cfg.train.num_workers, pin_memory=cuda, drop_last=True,
                            generator=generator,
                            persistent_workers=False)  # workers re-fork each epoch and see set_epoch

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, runtime = self.cfg, self.runtime
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, skip=self.state.epoch_step * cfg.optim.batch_size)
        self.module.train()
        sums = self.state.epoch_sums  # carried over when resuming inside this epoch
        window: dict[str, torch.Tensor] = {}
        window_steps, window_start = 0, time.perf_counter()
        first_bad_step = torch.full((), -1, dtype=torch.long, device=runtime.device)
        device_step = torch.full((), self.state.step, dtype=torch.long, device=runtime.device)
        progress = tqdm(total=self.steps_per_epoch, initial=self.state.epoch_step, desc=f"epoch {epoch + 1}",
                        disable=not runtime.is_main, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                        dynamic_ncols=True)
        save_every = cfg.train.checkpoint_every_steps
        batches = iter(self._loader(epoch))
        with worker_deaths_at_fetch(), contextlib.closing(progress):
            while self.state.epoch_step < self.steps_per_epoch:
                batch = self._next_batch(batches, epoch, first_bad_step)
                if batch is None:
                    break
                lr = learning_rate(self.state.step, self.steps_per_epoch, self.total_steps, cfg.optim)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = move_to_device(batch, runtime.device)
                with torch.autocast(runtime.device.type, dtype=runtime.amp_dtype or torch.float32,
                                    enabled=runtime.amp_dtype is not None):
                    outputs = self.forward(batch)
                loss = outputs["loss"]
                # Checked without a host sync per step: a non-finite loss is remembered on the device and the
                # run stops at the next log point, before anything is saved.
                finite = torch.isfinite(loss.detach())
                first_bad_step = torch.where(~finite & (first_bad_step < 0), device_step, first_bad_step)
                device_step += 1
                self.optimizer.zero_grad(set_to_none=True)
                if hasattr(self.task, "backward_step"):
                    self.task.backward_step(outputs, self._backward)
                else:
                    self._backward(loss)
                if cfg.train.grad_clip > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.module.parameters(), cfg.train.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.state.step += 1
                self.state.epoch_step += 1
                window_steps += 1
                for key, value in outputs.items():
                    value = value.detach().float()
                    sums[key] = sums.get(key, 0.0) + value
                    window[key] = window.get(key, 0.0) + value
                progress.update(1)
                last_in_epoch = self.state.epoch_step >= self.steps_per_epoch
                if window_steps == cfg.train.log_every or last_in_epoch:
                    self._check_finite(first_bad_step)
                    self._log_window(epoch, window, window_steps, time.perf_counter() - window_start, lr, progress)
                    window, window_steps, window_start = {}, 0, time.perf_counter()
                if save_every > 0 and self.state.step % save_every == 0 and not last_in_epoch:
                    self._check_finite(first_bad_step)
                    self.save(LAST_CHECKPOINT)
                signum = self._stop_agreed()
                if signum:
                    progress.close()
                    self._check_finite(first_bad_step)
                    self.save(LAST_CHECKPOINT)
                    raise self._interrupted(signum, f"after step {self.state.step} (epoch {epoch + 1})")
        self._check_finite(first_bad_step)
        return self._epoch_means(sums)

    def _next_batch(self, batches, epoch: int, first_bad_step: torch.Tensor):
        """The next batch, None at the end of the loader. A worker that died (workers ignore SIGINT/SIGTERM, but
        not a SIGKILL or the OOM killer) is reported here, between steps: when a stop was asked for too, the run
        stops as after any step, with last.pt saved; else it ends with one line saying what is kept."""
        try:
            return next(batches)
        except StopIteration:
            return None
        except RuntimeError as error:
            if not is_worker_death(error):
                raise
            cause = str(error).strip().rstrip(".")
            # Under torchrun the other ranks wait in the next collective, not at a stop check: no save there.
            if self.stop is not None and self.stop.requested and self.runtime.world_size == 1:
                self._check_finite(first_bad_step)
                self.save(LAST_CHECKPOINT)
                raise self._interrupted(self.stop.signum, f"after step {self.state.step} (epoch {epoch + 1}; "
                                                          f"{cause})") from None
            raise WorkerDied(f"{cause}: killed from outside this run (out of memory? try fewer "
                             f"train.num_workers); {self._kept()}") from None

    def _epoch_means(self, sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """The epoch's means of the logged values, read on the host once, at the end of the epoch."""
        return {key: float(value) / self.state.epoch_step for key, value in sums.items()}

    def _log_window(self, epoch: int, window: Mapping[str, torch.Tensor], steps: int, seconds: float, lr: float,
                    progress) -> None:
        """The means of the logged values over the last `steps` steps: the only place a training step's values
        are read on the host (every `train.log_every` steps), so the steps between run without a sync."""
        row = {key: (value / steps).item() for key, value in window.items()}
        row["lr"] = lr
        row["samples_per_s"] = steps * self.cfg.optim.batch_size * self.runtime.world_size / seconds
        if self.runtime.is_main:
            self._log_scalars("train", row, self.state.step)
            self._append_curve({"step": self.state.step, "epoch": epoch + 1, **row})
            progress.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}")

    def _check_finite(self, first_bad_step: torch.Tensor) -> None:
        bad = int(first_bad_step.item())
        if bad >= 0:
            raise TrainingDiverged(
                f"the loss became NaN/Inf at step {bad + 1} (epoch {self.state.epoch + 1}); stopping. "
                f"The last good checkpoint in {self.run_dir} is left intact; lower optim.lr, set "
                "train.grad_clip, or use train.amp=bf16 instead of fp16")

    def _stop_agreed(self) -> int:
        """The signal that asks this run to stop (0: none), the same on every rank.

        Every rank must stop after the same step, or the others would wait forever in the next collective. The
        ranks' requests are combined at every step boundary by an all_reduce of one integer over gloo, on the
        CPU: a host round trip of tens of microseconds (more across nodes) that never waits for the GPU, as an
        NCCL reduction read back with .item() would; small against a training step. Agreeing only at log
        points would leave up to train.log_every steps between the signal and the stop, which can exceed a
        scheduler's grace period (SLURM's default is 30 s before SIGKILL).
        """
        signum = self.stop.signum or 0 if self.stop is not None else 0
        if self.runtime.world_size == 1:
            return signum
        flag = torch.tensor([signum], dtype=torch.int64)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self._stop_group)
        return int(flag.item())

    def _kept(self) -> str:
        if self._saved_step is None:
            return "no checkpoint of this run was saved yet"
        return f"{self.run_dir / LAST_CHECKPOINT} holds step {self._saved_step}"

    def _interrupted(self, signum: int, when: str) -> Interrupted:
        return Interrupted(f"interrupted by {signal_name(signum)} {when}; {self._kept()}. To continue, run the "
                           f"same command with resume=auto (out={self.run_dir})", signum)

    @contextlib.contextmanager
    def _interruptible(self, what: str):
        """A signal stops an evaluation at once (single process: under torchrun the other ranks wait on rank 0
        in a collective, so there the signal is served at the next step or epoch boundary)."""
        if self.stop is None or self.runtime.world_size > 1:
            yield
            return
        try:
            with self.stop.immediate():
                yield
        except Interrupted as error:
            raise self._interrupted(error.exit_code - 128, f"during {what}") from None

    def _validate(self) -> dict[str, float]:
        if self.evaluation.validate is None:
            return {}
        metrics = {}
        if self.runtime.is_main:
            with self._interruptible("validation"):
                metrics = self.evaluation.validate(unwrap(self.module))
        if self.runtime.world_size > 1:
            shared = [metrics]
            torch.distributed.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        return metrics

    def fit(self) -> dict[str, Any]:
        try:
            with StopSignals() as self.stop, self.stop.deferred():
                return self._fit()
        finally:
            self.stop = None
            if self.writer is not None:
                self.writer.close()
            # Drop DDP's reducer now, while the process group lives: freed at interpreter exit, after the
            # group, its destructor can deadlock in gloo's. The script then destroys the group.
            self.module = unwrap(self.module)
            gc.collect()

    def _fit(self) -> dict[str, Any]:
        cfg, runtime = self.cfg, self.runtime
        if runtime.is_main:
            make_folder(self.run_dir)
            removed = remove_stale_temporaries(self.run_dir)
            if removed:
                print(f"note: removed {len(removed)} temporary file(s) that an interrupted save left in "
                      f"{self.run_dir}", file=sys.stderr)
        if self._resume_from is not None:
            self.resume(self._resume_path, self._resume_from)
            self._resume_from = None
        if runtime.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
            self._truncate_curves(self.state.step)  # a resumed run drops the rows logged past its checkpoint
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.state.step)
            print(f"run directory: {self.run_dir} ({self.steps_per_epoch} steps per epoch, "
                  f"{cfg.optim.epochs} epochs, device {runtime.device}, world size {runtime.world_size})",
                  file=sys.stderr)
        if self.state.unvalidated is not None:  # stopped after its last epoch was saved, before the validation
            self._end_epoch(self.state.unvalidated, validating=True)
        for epoch in range(self.state.epoch, cfg.optim.epochs):
            started = time.perf_counter()
            train_metrics = self._train_epoch(epoch)
            end_epoch = getattr(self.task, "end_epoch", None)
            if end_epoch is not None:
                end_epoch()
            self.state.epoch, self.state.epoch_step, self.state.epoch_sums = epoch + 1, 0, {}
            record = {"epoch": epoch + 1, "step": self.state.step, "train": train_metrics,
                      "seconds": round(time.perf_counter() - started, 3)}
            validating = (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.optim.epochs
            if validating and self.evaluation.validate is not None:
                # Saved first: a validation can take minutes, and a signal or a crash there would otherwise
                # discard the epoch just trained.
                self.state.unvalidated = record
                self.save(LAST_CHECKPOINT)
                signum = self._stop_agreed()
                if signum:
                    raise self._interrupted(signum, f"after epoch {epoch + 1} (its validation runs when the run "
                                                    "resumes)")
            self._end_epoch(record, validating)
        test_metrics = self._test()
        self._write_metrics({"test": test_metrics} if test_metrics else None)
        if runtime.is_main:
            self._log_scalars("test", scalars(test_metrics), self.state.step)
            plot_curves(self.run_dir / "curves.csv", self.run_dir / "curves.png")
        return {"best_epoch": self.state.best_epoch, "best_value": self.state.best_value,
                "test": test_metrics, "history": self.state.history}

    def _end_epoch(self, record: dict, validating: bool) -> None:
        """Validate the epoch of `record` (when `validating`), keep best.pt, save last.pt and metrics.json."""
        if validating:
            val_metrics = self._validate()
            record["val"] = val_metrics
            self._log_scalars("val", val_metrics, self.state.step)
            selected = self.evaluation.select_metric
            if selected is not None and selected in val_metrics:
                value = val_metrics[selected]
                if self.state.best_value is None or value > self.state.best_value:
                    self.state.best_value, self.state.best_epoch = value, record["epoch"]
                    record["best"] = True
                    self.save(BEST_CHECKPOINT)
        self.state.unvalidated = None
        self.state.history.append(record)
        self.save(LAST_CHECKPOINT)
        self._write_metrics()
        if self.runtime.is_main:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in {**record["train"], **record.get("val", {})}.items())
            print(f"epoch {record['epoch']}/{self.cfg.optim.epochs}: {shown}", file=sys.stderr)
        signum = self._stop_agreed()
        if signum:
            raise self._interrupted(signum, f"after epoch {record['epoch']}")

    def _test(self) -> dict[str, float]:
        """Once, at the end, on the weights of the best validation epoch (the last epoch without validation)."""
        if self.evaluation.test is None:
            return {}
        metrics = {}
        if self.runtime.is_main:
            model = unwrap(self.module)
            best = self.run_dir / BEST_CHECKPOINT
            if self.state.best_epoch is not None and best.exists():
                model.load_state_dict(load_checkpoint_file(best)["model"])
            with self._interruptible("the test"):
                metrics = dict(self.evaluation.test(model))
            metrics["selected_epoch"] = self.state.best_epoch or self.state.epoch
            print("test: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in scalars(metrics).items()), file=sys.stderr)
        if self.runtime.world_size > 1:
            shared = [metrics]
            torch.distributed.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        return metrics


def scalars(metrics: Mapping) -> dict[str, float]:
    """The numbers of a result (tables left out)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def plot_curves(csv_path: Path, png_path: Path) -> None:
    """Losses, loss weights and learning rate against the step, from the run's curves.csv."""
    if not csv_path.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    steps = [int(row["step"]) for row in rows]
    panels = [("losses", [k for k in rows[0] if k.startswith("loss")]),
              ("loss weights", [k for k in rows[0] if k.startswith("weight")]),
              ("learning rate", ["lr"])]
    panels = [(title, keys) for title, keys in panels if keys]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels):
        for key in keys:
            axis.plot(steps, [float(row[key]) for row in rows], label=key)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    atomic_write(png_path, lambda file: figure.savefig(file, format="png", dpi=110))
    plt.close(figure)
