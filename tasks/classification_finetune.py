"""Fine-tuned shape classification as a task: a backbone with DGCNN's classification head, trained end to end
from a pretraining checkpoint or from scratch, on ModelNet40 (h5), ScanObjectNN (OBJ_BG, OBJ_ONLY, PB_T50_RS)
or a class-folder tree (e.g. ModelNet10 as Princeton ships it).

Protocol (docs/protocol.md, "Fine-tuned classification"): the best epoch is chosen by overall accuracy on the
validation split carved from the training set, without voting; the test split is scored once, on that epoch,
without voting and with voting (the class probabilities averaged over `voting.passes` copies of each cloud,
each scaled per axis by a seeded U(low, high), as DGCNN's and Point-BERT's evaluations do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Mapping

import numpy as np
import torch
from torch import nn

from datasets import ModelNet40, ScanObjectNN
from datasets.transforms import ScaleShift
from engine.evaluate import inference
from engine.runtime import Runtime
from models.build import classifier
from tasks.finetune import FineTuneConfig, check_label_smoothing, smoothed_cross_entropy
from tasks.folder_data import FolderData, build_folder_dataset, folder_title
from utils.config import Length, OneOf, PositiveInt, Range, choose

DATASETS = ("modelnet40", "scanobjectnn", "folder")


@dataclass
class ClsFineTuneData:
    root: str = "data"  # holds modelnet40_ply_hdf5_2048/ or h5_files/ (ScanObjectNN)
    dataset: Annotated[str, OneOf(*DATASETS)] = "modelnet40"
    scanobjectnn_variant: Annotated[str, OneOf("OBJ_BG", "OBJ_ONLY", "PB_T50_RS")] = "OBJ_BG"
    folder: FolderData = field(default_factory=FolderData)  # dataset=folder: the class-folder tree
    num_points: Annotated[int, Range(ge=1, le=2048)] = 1024
    augment: bool = True  # DGCNN's: per-axis scale U(2/3, 3/2), then per-axis shift U(-0.2, 0.2)


@dataclass
class VotingConfig:
    passes: PositiveInt = 10
    scale: Annotated[list[float], Length(2), Range(gt=0)] = field(default_factory=lambda: [0.85, 1.15])
    seed: int = 0


@dataclass
class ClsFineTuneConfig(FineTuneConfig):
    out: str = "runs/finetune_cls"
    model: dict = choose({"classifier": classifier}, "classifier")  # num_classes and class_names: the dataset's
    data: ClsFineTuneData = field(default_factory=ClsFineTuneData)
    voting: VotingConfig = field(default_factory=VotingConfig)


def build_dataset(data: ClsFineTuneData, split: str, train: bool = False, seed: int = 0):
    """`split` of the configured dataset; `train`: with the augmentation (when data.augment)."""
    transform = ScaleShift() if train and data.augment else None
    if data.dataset == "modelnet40":
        return ModelNet40(data.root, split=split, num_points=data.num_points, transform=transform, seed=seed)
    if data.dataset == "scanobjectnn":
        return ScanObjectNN(data.root, variant=data.scanobjectnn_variant, split=split, num_points=data.num_points,
                            transform=transform, seed=seed)
    return build_folder_dataset(data.folder, split, data.num_points, "data.folder", transform=transform, seed=seed)


def dataset_title(data: ClsFineTuneData) -> str:
    return {"modelnet40": "ModelNet40", "scanobjectnn": f"ScanObjectNN {data.scanobjectnn_variant}",
            "folder": folder_title(data.folder)}[data.dataset]


class PointClassification(nn.Module):
    """A classifier and its training loss, as the Trainer wants them: forward(batch) -> {"loss": label-smoothed
    cross-entropy (DGCNN's smoothing), "acc": batch accuracy}. Batches hold `points` (B, N, C), `label` (B,)."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.label_smoothing = model, check_label_smoothing(label_smoothing)

    def logits(self, batch: Mapping) -> torch.Tensor:
        return self.model(batch["points"])

    def forward(self, batch: Mapping) -> dict[str, torch.Tensor]:
        logits, label = self.logits(batch), batch["label"].reshape(-1)
        loss = smoothed_cross_entropy(logits, label, self.label_smoothing)
        return {"loss": loss, "acc": (logits.detach().argmax(-1) == label).float().mean()}


def accuracies(pred: np.ndarray, label: np.ndarray, num_classes: int) -> dict[str, float]:
    """Overall accuracy and mean class accuracy (the mean over the classes present in `label` of their recall)."""
    present = np.flatnonzero(np.bincount(label, minlength=num_classes))
    recalls = [float(np.mean(pred[label == c] == c)) for c in present]
    return {"oa": float(np.mean(pred == label)), "mean_class_acc": float(np.mean(recalls))}


def vote_scales(passes: int, low: float, high: float, seed: int, batch_index: int, batch: int) -> torch.Tensor:
    """(passes, batch, 1, 3) per-axis scales: one seeded draw per (pass, batch), the same on every run."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + batch_index)
    return low + (high - low) * torch.rand(passes, batch, 1, 3, generator=generator)


def score(module: PointClassification, loader, runtime: Runtime, num_classes: int, desc: str,
          voting: VotingConfig | None = None) -> dict[str, float]:
    """{"oa", "mean_class_acc"} of `module` on a split, in eval mode; with `voting` also {"oa_vote",
    "mean_class_acc_vote"}: the softmax averaged over the scaled copies."""
    preds, votes, labels = [], [], []

    def vote(batch: Mapping) -> torch.Tensor:
        points = batch["points"]
        scales = vote_scales(voting.passes, *voting.scale, voting.seed, len(labels), len(points))
        probs = 0
        for scale in scales.to(points.device, points.dtype):
            scaled = torch.cat((points[..., :3] * scale, points[..., 3:]), dim=-1)
            probs = probs + module.logits({"points": scaled}).float().softmax(-1)
        return probs

    for logits, batch in inference(module.logits, module, loader, runtime.device, runtime.amp_dtype, desc):
        if voting is not None:
            # still inside inference()'s inference mode, the module in eval mode
            with torch.autocast(runtime.device.type, dtype=runtime.amp_dtype or torch.float32,
                                enabled=runtime.amp_dtype is not None):
                votes.append(vote(batch).argmax(-1).cpu())
        preds.append(logits.argmax(-1).cpu())
        labels.append(batch["label"].reshape(-1).cpu())
    label = torch.cat(labels).numpy()
    result = accuracies(torch.cat(preds).numpy(), label, num_classes)
    if voting is not None:
        result.update({f"{k}_vote": v for k, v in accuracies(torch.cat(votes).numpy(), label, num_classes).items()})
    return result
