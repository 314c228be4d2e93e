"""Contrastive pretraining as a task: the model with its objective, the linear-SVM monitor, the config.

The best checkpoint is chosen by linear-SVM accuracy on a validation split carved from the training set of the
monitor's dataset (ModelNet40, or a class-folder tree such as ModelNet10); the test set is scored once, on that
checkpoint (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import torch
from torch import nn
from torch.utils.data import DataLoader

from datasets import ModelNet40, ShapeNetRender
from datasets.shapenet_render import PAIRED_VIEWS
from engine.evaluate import calibrated_batchnorm, calibration_subset, extract_features, linear_svm_accuracy
from engine.runtime import RunConfig, Runtime
from engine.trainer import Evaluation
from losses.objective import PretrainObjective, build_objective
from losses.weighting import WEIGHTERS
from models.build import adacrossnet, build_model
from tasks.folder_data import FolderData, build_folder_dataset, folder_title
from utils.config import (Length, OneOf, PositiveFloat, PositiveInt, Range, choose, require_points_for_k,
                          signature_section)
from utils.errors import ConfigError


@dataclass
class PretrainData:
    root: str = "data"  # holds ShapeNet/, ShapeNetRendering/ and modelnet40_ply_hdf5_2048/
    num_points: PositiveInt = 2048
    image_size: PositiveInt = 224
    background: Annotated[list[int], Length(3), Range(ge=0, le=255)] = field(
        default_factory=lambda: [255, 255, 255])  # RGB that transparent rendering pixels are composited onto
    # whose views an object is shown with: its own, or in the controls that take the images' content away, one other
    # object's (the same every epoch) or a random other object's, drawn anew every time (datasets/shapenet_render.py)
    paired_views: Annotated[str, OneOf(*PAIRED_VIEWS)] = "own"


@dataclass
class MonitorConfig:
    """The linear SVM on frozen features that chooses the best checkpoint."""

    # modelnet40: the h5 release under data.root; folder: the class-folder tree monitor.folder.root
    dataset: Annotated[str, OneOf("modelnet40", "folder")] = "modelnet40"
    folder: FolderData = field(default_factory=FolderData)
    num_points: PositiveInt = 1024  # ModelNet40 protocol: the first 1024 points
    svm_c: PositiveFloat = 0.01  # AdaCrossNet test.py / CrossPoint notebook (CrossPoint's training loop: 0.1)
    batch_size: PositiveInt = 64
    random_init: bool = True  # also score the encoder before training on the test split, as initialised and with
    # its BatchNorm statistics estimated on the data (SvmMonitor.baseline): the baselines to beat
    calibration_shapes: PositiveInt = 256  # the seeded subset of trainval those statistics are estimated on


@dataclass
class PretrainConfig(RunConfig):
    out: str = "runs/pretrain"
    data: PretrainData = field(default_factory=PretrainData)
    model: dict = choose({"adacrossnet": adacrossnet}, "adacrossnet")
    loss: dict = signature_section(PretrainObjective)
    weighting: dict = choose(WEIGHTERS, "adacrossnet")
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


class ContrastivePretraining(nn.Module):
    """The model and its objective as one module, so DDP, checkpoints and resume see both (weighter state too)."""

    def __init__(self, model: nn.Module, objective: PretrainObjective):
        super().__init__()
        self.model, self.objective = model, objective
        # the layers GradNorm measures the losses' gradients at: the point head's output layer, and the one the
        # backbone names as the last that every output depends on
        objective.weighter.attach({"head": [model.point_head[-1].weight],
                                   "encoder": [model.point_encoder.shared_weight]})

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.objective(self.model(batch["points1"], batch["points2"], batch["image"], batch.get("gray")))

    def backward_step(self, outputs, backward) -> None:
        self.objective.backward_step(outputs, backward)

    def param_groups(self) -> list[dict]:
        """The weighter's own parameters (uncertainty's log-variances) get no weight decay: decay would pull
        them towards weights of 1 whatever the losses say."""
        return [{"params": list(self.model.parameters())},
                {"params": list(self.objective.parameters()), "weight_decay": 0.0}]

    def end_epoch(self) -> None:
        self.objective.end_epoch()

    @property
    def encoder(self) -> nn.Module:
        return self.model.point_encoder


class SvmMonitor:
    """Linear SVM on frozen point features: fit on one split of the monitor's dataset, score on another."""

    def __init__(self, root, cfg, runtime: Runtime, seed: int = 0):
        self.root, self.cfg, self.runtime, self.seed = root, cfg, runtime, seed
        self.title = folder_title(cfg.folder) if cfg.dataset == "folder" else "ModelNet40"
        self._loaders: dict[str, DataLoader] = {}

    def _loader(self, split):
        """One loader per split, built on first use: every evaluation of the run reads the split once."""
        if split not in self._loaders:
            self._loaders[split] = self._build_loader(split)
        return self._loaders[split]

    def _build_loader(self, split):
        if self.cfg.dataset == "folder":
            dataset = build_folder_dataset(self.cfg.folder, split, self.cfg.num_points, "monitor.folder")
        else:
            dataset = ModelNet40(self.root, split=split, num_points=self.cfg.num_points)
        return DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=False, num_workers=0)

    def _accuracy(self, encoder, fit_loader, score_loader) -> float:
        train_x, train_y = extract_features(encoder, fit_loader, self.runtime.device)
        test_x, test_y = extract_features(encoder, score_loader, self.runtime.device)
        return linear_svm_accuracy(train_x, train_y, test_x, test_y, C=self.cfg.svm_c)

    def accuracy(self, encoder, fit_split: str, score_split: str) -> float:
        return self._accuracy(encoder, self._loader(fit_split), self._loader(score_split))

    def baseline(self, encoder) -> dict[str, float]:
        """The untrained encoder's test accuracy as it is, and with its BatchNorm statistics estimated on a seeded
        subset of the fit split's points (`calibrated_batchnorm`; the encoder is left untouched): that second
        number tells learned features from merely calibrated ones."""
        fit, score = self._loader("trainval"), self._loader("test")  # each split read once for all three passes
        subset = calibration_subset(fit.dataset, self.cfg.calibration_shapes, self.seed)
        calibrated = calibrated_batchnorm(encoder, DataLoader(subset, batch_size=self.cfg.batch_size), self.runtime.device,
                                          desc="BatchNorm calibration of the untrained encoder")
        return {"svm_acc": self._accuracy(encoder, fit, score),
                "svm_acc_bn_calibrated": self._accuracy(calibrated, fit, score)}

    def evaluation(self) -> Evaluation:
        """Validation: fit on train, score on val (chooses best.pt). Test: fit on train+val, score on test."""
        return Evaluation(
            validate=lambda task: {"svm_acc": self.accuracy(task.encoder, "train", "val")},
            test=lambda task: {"svm_acc": self.accuracy(task.encoder, "trainval", "test")},
            select_metric="svm_acc",
        )


def build_pretraining(cfg, runtime: Runtime) -> tuple[ContrastivePretraining, ShapeNetRender, SvmMonitor]:
    """The task, its training set and its monitor, from a resolved PretrainConfig."""
    model_cfg = cfg.model
    require_points_for_k("model.point_backbone.k", model_cfg.point_backbone.get("k", 0),
                         {"data.num_points": cfg.data.num_points, "monitor.num_points": cfg.monitor.num_points})
    if cfg.monitor.dataset == "folder" and not cfg.monitor.folder.root:
        raise ConfigError("monitor.dataset=folder needs 'monitor.folder.root': the class-folder tree the linear SVM "
                          "is fitted and scored on, e.g. monitor.folder.root=data/ModelNet10")
    if cfg.loss.cross_modal == "stacked" and not model_cfg.gray_branch:
        raise ConfigError("loss.cross_modal=stacked needs model.gray_branch=true (or set loss.cross_modal=mean)")
    if WEIGHTERS[cfg.weighting.name].unscaled_gradients and runtime.amp_dtype == torch.float16:
        raise ConfigError(f"weighting.name={cfg.weighting.name} takes the gradients of the unscaled losses, which can "
                          "underflow in fp16: use train.amp=bf16 or none")
    objective = build_objective(cfg.loss, cfg.weighting, distributed=runtime.world_size > 1)
    train_set = ShapeNetRender(cfg.data.root, num_points=cfg.data.num_points, image_size=cfg.data.image_size,
                               grayscale=model_cfg.gray_branch, seed=cfg.seed,
                               background=tuple(cfg.data.background), paired_views=cfg.data.paired_views)
    module = ContrastivePretraining(build_model(model_cfg), objective)
    return module, train_set, SvmMonitor(cfg.data.root, cfg.monitor, runtime, cfg.seed)
