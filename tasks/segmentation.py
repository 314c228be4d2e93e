"""Part and semantic segmentation as tasks: the model with its loss, prediction, scoring, the configs
(the fine-tuning itself: tasks/finetune.py).

Protocols (docs/protocol.md): ShapeNetPart with DGCNN_partseg, S3DIS with DGCNN_semseg. The checkpoint is
chosen on a validation split and the test split is scored once, on that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from datasets.s3dis import CLASS_NAMES as S3DIS_CLASSES
from datasets.shapenet_part import CATEGORY_NAMES, PART_RANGES
from engine.evaluate import inference
from engine.runtime import Runtime
from models.build import SEGMENTATION_MODELS
from tasks.finetune import FineTuneConfig, check_label_smoothing, smoothed_cross_entropy
from tasks.segmentation_metrics import SemSegMeter, part_seg_miou, restrict_to_category
from utils.config import OneOf, PositiveInt, Range, choose

# ------------------------------------------------------------------------------------------------ configs
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
    # dgcnn_partseg: DGCNN's model; part_segmenter: its head on any backbone (model.backbone.name)
    model: dict = choose({name: SEGMENTATION_MODELS[name] for name in ("dgcnn_partseg", "part_segmenter")},
                         "dgcnn_partseg")
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
    # dgcnn_semseg: DGCNN's model; sem_segmenter: its head on any backbone (model.backbone.name)
    model: dict = choose({name: SEGMENTATION_MODELS[name] for name in ("dgcnn_semseg", "sem_segmenter")},
                         "dgcnn_semseg")
    data: SemSegData = field(default_factory=SemSegData)


# ------------------------------------------------------------------------------------------------ the task
class PointSegmentation(nn.Module):
    """A segmentation model and its training loss, as the Trainer wants them: forward(batch) ->
    {"loss": label-smoothed cross-entropy over all points (DGCNN's smoothing), "acc": point accuracy}.

    Batches hold `points` (B, N, C) and `seg` (B, N); with `with_category` also `category` (B,), passed to the
    model (part segmentation).
    """

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0, with_category: bool = False):
        super().__init__()
        self.model, self.label_smoothing = model, check_label_smoothing(label_smoothing)
        self.with_category = with_category

    def logits(self, batch: Mapping) -> torch.Tensor:
        if self.with_category:
            return self.model(batch["points"], batch["category"])
        return self.model(batch["points"])

    def forward(self, batch: Mapping) -> dict[str, torch.Tensor]:
        logits, seg = self.logits(batch), batch["seg"]
        loss = smoothed_cross_entropy(logits, seg, self.label_smoothing)
        acc = (logits.detach().argmax(-1) == seg).float().mean()
        return {"loss": loss, "acc": acc}


def predict(module: PointSegmentation, loader: DataLoader, runtime: Runtime, desc: str):
    """Yield (float logits on the device, batch on the device) for every batch, in eval mode, no gradients."""
    return inference(module.logits, module, loader, runtime.device, runtime.amp_dtype, desc)


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


