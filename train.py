"""Pretrain AdaCrossNet: two augmented point views and a rendered image per object, contrastive losses.

    python train.py                                   # the CPU demo on synthetic data (configs/demo.yaml)
    python train.py --config configs/pretrain.yaml data.root=/data optim.lr=5e-4
    torchrun --nproc_per_node 4 train.py --config configs/pretrain.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from datasets import ModelNet40, ShapeNetRender
from engine.evaluate import extract_features, linear_svm_accuracy
from engine.trainer import Evaluation, Trainer, setup_runtime
from losses.objective import build_objective
from models.build import build_model
from utils import distributed
from utils.config import load_config
from utils.errors import exit_on_user_error

DEFAULTS = Path(__file__).resolve().parent / "configs" / "pretrain.yaml"
DEMO = Path(__file__).resolve().parent / "configs" / "demo.yaml"


class ContrastivePretraining(nn.Module):
    """The model and its objective as one module, so DDP, checkpoints and resume see both (weighter state too)."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.objective(self.model(batch["points1"], batch["points2"], batch["image"], batch.get("gray")))

    def end_epoch(self) -> None:
        self.objective.end_epoch()


class SvmMonitor:
    """Linear SVM on frozen point features: fit on one ModelNet40 split, score on another."""

    def __init__(self, root, cfg, device):
        self.root, self.cfg, self.device = root, cfg, device

    def _features(self, encoder, split):
        dataset = ModelNet40(self.root, split=split, num_points=self.cfg.num_points)
        loader = DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=False, num_workers=0)
        return extract_features(encoder, loader, self.device)

    def accuracy(self, encoder, fit_split: str, score_split: str) -> float:
        train_x, train_y = self._features(encoder, fit_split)
        test_x, test_y = self._features(encoder, score_split)
        return linear_svm_accuracy(train_x, train_y, test_x, test_y, C=self.cfg.svm_c)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEMO), help="YAML config (default: the CPU demo)")
    parser.add_argument("--resume", help="checkpoint to resume from, or 'auto' (same as resume=...)")
    parser.add_argument("--data-root", help="same as data.root=...")
    parser.add_argument("--out", help="run directory, same as out=...")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. optim.lr=5e-4")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None) -> dict:
    args = parse_args(argv)
    overrides = list(args.overrides)
    for key, value in (("resume", args.resume), ("data.root", args.data_root), ("out", args.out)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, overrides, defaults=DEFAULTS)
    runtime = setup_runtime(cfg)

    train_set = ShapeNetRender(cfg.data.root, num_points=cfg.data.num_points, image_size=cfg.data.image_size,
                               grayscale=cfg.model.gray_branch, seed=cfg.seed,
                               background=tuple(cfg.data.background))
    objective = build_objective(cfg.loss, cfg.weighting, gather=runtime.world_size > 1)
    module = ContrastivePretraining(build_model(cfg.model), objective)
    monitor = SvmMonitor(cfg.data.root, cfg.monitor, runtime.device)
    encoder = lambda pretraining: pretraining.model.point_encoder  # noqa: E731
    evaluation = Evaluation(
        validate=lambda m: {"svm_acc": monitor.accuracy(encoder(m), "train", "val")},
        test=lambda m: {"svm_acc": monitor.accuracy(encoder(m), "trainval", "test")},
        select_metric="svm_acc",
    )
    trainer = Trainer(cfg, runtime, module, train_set, evaluation, cfg.out)

    metrics_path = Path(cfg.out) / "metrics.json"
    if runtime.is_main and not (metrics_path.exists() and "random_init" in json.loads(metrics_path.read_text())):
        # The same encoder before any training: the baseline that pretraining must beat. Computed once per run
        # directory (a resumed run keeps the first value), before the first step.
        module.to(runtime.device)
        random_init = monitor.accuracy(encoder(module), "trainval", "test")
        metrics_path.write_text(json.dumps({"random_init": {"svm_acc": random_init}}, indent=2))
    result = trainer.fit()

    if runtime.is_main:
        metrics = json.loads(metrics_path.read_text())
        baseline = metrics["random_init"]["svm_acc"]
        pretrained = result["test"]["svm_acc"]
        print(f"\nModelNet40 linear SVM (C={cfg.monitor.svm_c}), test set, scored once:")
        print(f"  random init : {100 * baseline:6.2f} %")
        print(f"  pretrained  : {100 * pretrained:6.2f} %   (epoch {result['test']['selected_epoch']}, "
              f"chosen on the validation split)")
        print(f"run directory: {cfg.out}")
    distributed.cleanup()
    return result


if __name__ == "__main__":
    main()
