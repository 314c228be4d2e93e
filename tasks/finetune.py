"""What every fine-tuning task shares (classification, part and semantic segmentation): the config keys, the
label-smoothed loss, the evaluation loader, the starting weights, and the hand-over to the Trainer, which
resumes, validates, keeps best.pt and scores the test split once, on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from engine.runtime import RunConfig, Runtime
from engine.trainer import LAST_CHECKPOINT, Evaluation, Trainer
from models.layouts import LoadReport
from tasks.encoders import load_encoder_weights, report_dict
from utils.config import Range, require_points_for_k
from utils.files import write_json
from utils.signals import WorkerLoader

LabelSmoothing = Annotated[float, Range(ge=0, lt=0.5)]


@dataclass
class FineTuneLoss:
    label_smoothing: LabelSmoothing = 0.2  # DGCNN's: the true class gets 1 - 0.2, the others share 0.2


@dataclass
class FineTuneConfig(RunConfig):
    checkpoint: str | None = None  # pretrained encoder; null: from scratch
    eval_initial: bool = False  # also score the model before training on the val split (the starting point)
    loss: FineTuneLoss = field(default_factory=FineTuneLoss)


def smoothed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy over the last axis with label smoothing as DGCNN defines it: the true class gets 1 - eps
    and each of the other C - 1 classes eps / (C - 1). (That is PyTorch's `label_smoothing` of eps * C / (C - 1),
    which spreads its value over all C classes, the true one included.)"""
    classes = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, classes).float(), target.reshape(-1),
                           label_smoothing=label_smoothing * classes / (classes - 1))


def check_label_smoothing(value: float) -> float:
    if not 0.0 <= value < 0.5:
        raise ValueError(f"label_smoothing {value}: expected a value in [0, 0.5)")
    return float(value)


def check_points_for_k(cfg) -> None:
    """ConfigError unless data.num_points covers the kNN graphs' k, wherever the model section keeps it (a
    published model's `model.k`, a composed model's `model.backbone.k`)."""
    if "k" in cfg.model:
        require_points_for_k("model.k", cfg.model.k, {"data.num_points": cfg.data.num_points})
    elif "k" in cfg.model.get("backbone", {}):
        require_points_for_k("model.backbone.k", cfg.model.backbone.k, {"data.num_points": cfg.data.num_points})


def eval_loader(dataset, cfg) -> DataLoader:
    """In order, no augmentation, every sample (no drop_last)."""
    return WorkerLoader(dataset, batch_size=cfg.optim.batch_size, shuffle=False,
                        num_workers=cfg.train.num_workers, pin_memory=cfg.device != "cpu" and torch.cuda.is_available())


def initial_weights(cfg, model: nn.Module, runtime: Runtime) -> LoadReport | None:
    """Load `cfg.checkpoint`'s encoder into `model` where names map and shapes match (report printed), or say
    that the model starts from scratch. Called before any dataset is read, so a bad checkpoint fails at once."""
    if cfg.checkpoint:
        return load_encoder_weights(model, cfg.checkpoint)
    if runtime.is_main:
        print(f"no --checkpoint: {type(model).__name__} is trained from scratch (seed {cfg.seed})")
    return None


def fine_tune(cfg, runtime: Runtime, module: nn.Module, report: LoadReport | None, train_set,
              evaluation: Evaluation) -> dict:
    """Record where the weights came from in metrics.json, optionally score the untrained model on the
    validation split (`eval_initial`), then hand over to the Trainer (which resumes, validates, keeps best.pt
    and tests once on it). Returns Trainer.fit()'s result."""
    run_dir = Path(cfg.out)
    resuming = bool(cfg.resume) and (cfg.resume != "auto" or (run_dir / LAST_CHECKPOINT).exists())
    trainer = Trainer(cfg, runtime, module, train_set, evaluation, run_dir)  # checks a resume before any write
    if runtime.is_main and not resuming:  # a resumed run keeps what its first start recorded
        metrics = {"checkpoint": cfg.checkpoint, "load_report": report_dict(report) if report else None}
        if cfg.eval_initial and evaluation.validate is not None:
            module.to(runtime.device)
            metrics["initial_val"] = evaluation.validate(module)
            print("before training, val: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics["initial_val"].items()))
        write_json(metrics, run_dir / "metrics.json")
    return trainer.fit()
