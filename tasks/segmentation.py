"""Part and semantic segmentation as tasks: the model with its loss, prediction, fine-tuning, the configs.

Protocols (docs/protocol.md): ShapeNetPart with DGCNN_partseg, S3DIS with DGCNN_semseg. The checkpoint is
chosen on a validation split and the test split is scored once, on that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from datasets.s3dis import CLASS_NAMES as S3DIS_CLASSES
from datasets.shapenet_part import CATEGORY_NAMES, PART_RANGES
from engine.evaluate import inference
from engine.runtime import RunConfig, Runtime
from engine.trainer import LAST_CHECKPOINT, Evaluation, Trainer
from models.build import SEGMENTATION_MODELS
from models.layouts import LoadReport
from tasks.encoders import load_encoder_weights, report_dict
from tasks.segmentation_metrics import SemSegMeter, part_seg_miou, restrict_to_category
from utils.config import OneOf, PositiveInt, Range, choose
from utils.files import write_json
from utils.signals import WorkerLoader

# ------------------------------------------------------------------------------------------------ configs
LabelSmoothing = Annotated[float, Range(ge=0, lt=0.5)]


@dataclass
class SegLoss:
    label_smoothing: LabelSmoothing = 0.2  # DGCNN's: the true class gets 1 - 0.2, the others share 0.2


@dataclass
class FineTuneConfig(RunConfig):
    checkpoint: str | None = None  # pretrained encoder; null: from scratch
    eval_initial: bool = False  # also score the model before training on the val split (the starting point)
    loss: SegLoss = field(default_factory=SegLoss)


@dataclass
class PartSegData:
    root: str = "data"
    num_points: PositiveInt = 2048
    augment: bool = True  # DGCNN's: per-axis scale U(2/3, 3/2), then per-axis shift U(-0.2, 0.2)
    # train: select the epoch on val. trainval: CrossPoint's protocol, train on train+val for a fixed number
    # of epochs (take it from a train run's selected epoch) and test the last one.
    train_split: Annotated[str, OneOf("train", "trainval")] = "train"


@dataclass
class PartSegConfig(FineTuneConfig):
    out: str = "runs/partseg"
    model: dict = choose({"dgcnn_partseg": SEGMENTATION_MODELS["dgcnn_partseg"]}, "dgcnn_partseg")
    data: PartSegData = field(default_factory=PartSegData)


@dataclass
class SemSegData:
    root: str = "data"
    test_area: Annotated[int, OneOf(1, 2, 3, 4, 5, 6)] = 5
    six_fold: bool = False  # test areas 1..6 in turn into <out>/area_<a>/, figures from the summed confusions
    num_points: PositiveInt = 4096
    val_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.1  # rooms of each training area held out


@dataclass
class SemSegConfig(FineTuneConfig):
    out: str = "runs/semseg"
    model: dict = choose({"dgcnn_semseg": SEGMENTATION_MODELS["dgcnn_semseg"]}, "dgcnn_semseg")
    data: SemSegData = field(default_factory=SemSegData)


# ------------------------------------------------------------------------------------------------ the task
class PointSegmentation(nn.Module):
    """A segmentation model and its training loss, as the Trainer wants them: forward(batch) ->
    {"loss": label-smoothed cross-entropy over all points, "acc": point accuracy}.

    Batches hold `points` (B, N, C) and `seg` (B, N); with `with_category` also `category` (B,), passed to the
    model (part segmentation). Label smoothing as DGCNN defines it: the true class gets 1 - eps and each of the
    other P - 1 classes eps / (P - 1). (That is PyTorch's `label_smoothing` of eps * P / (P - 1), which spreads
    its value over all P classes, the true one included.)
    """

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0, with_category: bool = False):
        super().__init__()
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing {label_smoothing}: expected a value in [0, 0.5)")
        self.model, self.label_smoothing, self.with_category = model, float(label_smoothing), with_category

    def logits(self, batch: Mapping) -> torch.Tensor:
        if self.with_category:
            return self.model(batch["points"], batch["category"])
        return self.model(batch["points"])

    def forward(self, batch: Mapping) -> dict[str, torch.Tensor]:
        logits, seg = self.logits(batch), batch["seg"]
        classes = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, classes).float(), seg.reshape(-1),
                               label_smoothing=self.label_smoothing * classes / (classes - 1))
        acc = (logits.detach().argmax(-1) == seg).float().mean()
        return {"loss": loss, "acc": acc}


def predict(module: PointSegmentation, loader: DataLoader, runtime: Runtime, desc: str):
    """Yield (float logits on the device, batch on the device) for every batch, in eval mode, no gradients."""
    return inference(module.logits, module, loader, runtime.device, runtime.amp_dtype, desc)


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


def fine_tune(cfg, runtime: Runtime, module: PointSegmentation, report: LoadReport | None, train_set,
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


# ------------------------------------------------------------------------------------------------ scoring
PART_SEG_SCALARS = ("instance_miou", "class_miou", "acc")
SEM_SEG_SCALARS = ("miou", "overall_acc", "mean_class_acc")


def score_part_seg(module, loader, runtime, desc: str) -> dict:
    """Part-seg metrics of `module` on a split: predictions restricted to each shape's category parts."""
    preds, segs, categories = [], [], []
    for logits, batch in predict(module, loader, runtime, desc):
        preds.append(restrict_to_category(logits, batch["category"], PART_RANGES).cpu())
        segs.append(batch["seg"].cpu())
        categories.append(batch["category"].cpu())
    pred, seg, category = torch.cat(preds).numpy(), torch.cat(segs).numpy(), torch.cat(categories).numpy()
    result = part_seg_miou(pred, seg, category, PART_RANGES, CATEGORY_NAMES)
    result["acc"] = float(np.mean(pred == seg))
    return result


def score_sem_seg(module, loader, runtime, desc: str) -> SemSegMeter:
    """A confusion matrix over every point of every block of a split."""
    meter = SemSegMeter(len(S3DIS_CLASSES))
    for logits, batch in predict(module, loader, runtime, desc):
        meter.update(logits.argmax(-1), batch["seg"])
    return meter


def sem_seg_result(meter: SemSegMeter) -> dict:
    """compute()'s output with per-class IoU keyed by class name, and the confusion matrix."""
    metrics = meter.compute()
    out = {key: metrics[key] for key in SEM_SEG_SCALARS}
    out["per_class_iou"] = dict(zip(S3DIS_CLASSES, metrics["per_class_iou"]))
    out["confusion"] = meter.confusion.tolist()
    return out


