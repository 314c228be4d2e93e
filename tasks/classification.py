"""Frozen-feature classification as a task: linear SVM, few-shot and t-SNE on ModelNet40, ScanObjectNN and
class-folder trees (ModelNet10 or ModelNet40 as Princeton distributes them, or any tree of that shape).

The protocol (docs/protocol.md): the encoder runs in eval mode and is never trained; a linear SVM on the
2048-d DGCNN feature, no feature scaling, fitted on the official training set and scored once on the test
set, in two columns: C = 0.01 as published, and C chosen by cross-validation on the training set only
(`svm.search_c`), since a fixed C on unscaled features measures their scale as much as their content;
few-shot with support from the training set and queries from the test set, StandardScaler + linear SVC,
mean +- std over runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np

from datasets import ModelNet40, ScanObjectNN
from engine.evaluate import (calibrated_batchnorm, calibration_subset, extract_features, few_shot_accuracy,
                             linear_svm_accuracy, plot_tsne, select_svm_c)
from engine.runtime import RunConfig
from models.build import BACKBONES
from tasks.folder_data import FolderData, build_folder_dataset, folder_title
from utils.config import Config, Length, OneOf, Pattern, PositiveFloat, PositiveInt, Range, choose
from utils.signals import WorkerLoader

DATASETS = ("modelnet40", "scanobjectnn", "folder")


@dataclass
class ClassificationData:
    root: str = "data"
    # folder: the class-folder tree of data.folder.root (e.g. data.datasets=[folder] data.folder.root=ModelNet10)
    datasets: Annotated[list[str], OneOf(*DATASETS), Length(min=1)] = field(
        default_factory=lambda: ["modelnet40", "scanobjectnn"])
    modelnet40_points: Annotated[int, Range(ge=1, le=2048)] = 1024  # the first 1024 of 2048 (published)
    scanobjectnn_points: Annotated[int, Range(ge=1, le=2048)] = 2048
    scanobjectnn_variant: Annotated[str, OneOf("OBJ_BG", "OBJ_ONLY", "PB_T50_RS")] = "OBJ_BG"
    folder_points: PositiveInt = 1024  # as ModelNet40's protocol
    folder: FolderData = field(default_factory=FolderData)
    batch_size: PositiveInt = 64  # feature extraction


@dataclass
class SvmConfig:
    c: PositiveFloat = 0.01  # the published protocol's C (AdaCrossNet test.py, CrossPoint notebook)
    search_c: bool = True  # also report C chosen by stratified cross-validation on the training set
    c_grid: Annotated[list[float], Range(gt=0), Length(min=1)] = field(
        default_factory=lambda: [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4])  # features of any scale
    folds: Annotated[int, Range(ge=2)] = 5


@dataclass
class FewShotConfig:
    settings: Annotated[list[str], Pattern(r"[1-9]\d*w[1-9]\d*s", "<N>w<K>s, e.g. 5w10s")] = field(
        default_factory=lambda: ["5w10s", "5w20s", "10w10s", "10w20s"])
    queries: PositiveInt = 20  # test examples per class and episode
    runs: PositiveInt = 10
    c: PositiveFloat = 1.0  # C of the per-episode SVC on standardised features


@dataclass
class ClassificationConfig(RunConfig):
    out: str = "runs/classification"
    checkpoint: str | None = None  # train.py's best.pt / last.pt, or a CrossPoint / AdaCrossNet state_dict
    random_init: bool = False  # the same encoder at random initialisation (seeded), as a baseline
    # estimate the encoder's BatchNorm statistics on each dataset's trainval points before extracting features: with
    # random_init, the baseline that tells learned features from calibrated ones (engine.evaluate.calibrated_batchnorm)
    calibrate_batchnorm: bool = False
    calibration_shapes: PositiveInt = 256  # a seeded subset of trainval suffices (python -m bench.calibration)
    model: dict = choose(BACKBONES, "dgcnn")  # use the k the encoder was pretrained with
    data: ClassificationData = field(default_factory=ClassificationData)
    svm: SvmConfig = field(default_factory=SvmConfig)
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    tsne: bool = True  # tsne_<dataset>.png of the test features in the run directory


def flatten_scalars(metrics, prefix: str = "", skip=()) -> dict[str, float]:
    """{'a': {'b': 0.5}, 'c': [1, 2], 'n': 'x'} -> {'a/b': 0.5}: numbers only (lists, strings and the keys in
    `skip` left out)."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_scalars(value, name + "/", skip))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in skip:
            flat[name] = float(value)
    return flat


def build_dataset(cfg: Config, name: str, split: str):
    data = cfg.data
    if name == "modelnet40":
        return ModelNet40(data.root, split=split, num_points=data.modelnet40_points)
    if name == "scanobjectnn":
        return ScanObjectNN(data.root, variant=data.scanobjectnn_variant, split=split,
                            num_points=data.scanobjectnn_points)
    if name == "folder":
        return build_folder_dataset(data.folder, split, data.folder_points, "data.folder")
    raise ValueError(f"unknown dataset {name!r}")


def dataset_title(cfg: Config, name: str) -> str:
    return {"modelnet40": "ModelNet40", "scanobjectnn": f"ScanObjectNN {cfg.data.scanobjectnn_variant}",
            "folder": folder_title(cfg.data.folder)}[name]


def dataset_points(cfg: Config, name: str) -> int:
    return cfg.data[f"{name}_points"]


def parse_setting(text: str) -> tuple[int, int]:
    """'5w10s' -> (5, 10): N classes, K training examples each (validated by FewShotConfig)."""
    n_way, k_shot = re.fullmatch(r"(\d+)w(\d+)s", text).groups()
    return int(n_way), int(k_shot)


def few_shot_shortfall(train_y, test_y, n_way: int, k_shot: int, queries: int) -> tuple[str | None, list[int]]:
    """(why an N-way K-shot setting cannot run on this dataset or None, the classes it must leave out because
    they have >= k_shot training examples but fewer than `queries` test examples)."""
    size = max(int(train_y.max()), int(test_y.max())) + 1
    train_counts, test_counts = np.bincount(train_y, minlength=size), np.bincount(test_y, minlength=size)
    eligible = int(((train_counts >= k_shot) & (test_counts >= queries)).sum())
    short = [int(c) for c in np.flatnonzero((train_counts >= k_shot) & (test_counts > 0) & (test_counts < queries))]
    if eligible >= n_way:
        return None, short
    return (f"needs {n_way} classes with >= {k_shot} training and >= {queries} test examples "
            f"(fewshot.queries), {eligible} qualify here"), short


def evaluate_dataset(name: str, encoder, cfg: Config, runtime, run_dir: Path, writer) -> tuple[dict, dict]:
    """Linear SVM (published C and C by cross-validation), few-shot and t-SNE on one dataset -> (test
    metrics, details)."""
    title = dataset_title(cfg, name)
    features = {}
    # in-memory items: on a CPU, loader processes would only take cores from the encoder's threads
    workers = cfg.train.num_workers if runtime.device.type == "cuda" else 0
    for split in ("trainval", "test"):
        dataset = build_dataset(cfg, name, split)
        loader = WorkerLoader(dataset, batch_size=cfg.data.batch_size, shuffle=False, num_workers=workers,
                              pin_memory=runtime.device.type == "cuda")
        if split == "trainval" and cfg.calibrate_batchnorm:
            subset = calibration_subset(dataset, cfg.calibration_shapes, cfg.seed)
            encoder = calibrated_batchnorm(encoder, WorkerLoader(subset, batch_size=16, num_workers=workers),
                                           runtime.device, desc=f"{title} BatchNorm calibration ({len(subset)} shapes)")
        features[split] = extract_features(encoder, loader, runtime.device, runtime.amp_dtype,
                                           desc=f"{title} {split} features")
        class_names = list(dataset.class_names)
    (train_x, train_y), (test_x, test_y) = features["trainval"], features["test"]
    details = {"title": title, "train_samples": len(train_y), "test_samples": len(test_y),
               "feature_dim": int(train_x.shape[1]), "svm_c": cfg.svm.c}
    if cfg.calibrate_batchnorm:
        details["calibration_shapes"] = min(cfg.calibration_shapes, len(train_y))
    metrics = {"svm_acc": linear_svm_accuracy(train_x, train_y, test_x, test_y, C=cfg.svm.c)}
    if cfg.svm.search_c:
        print(f"{title}: choosing C by {cfg.svm.folds}-fold cross-validation on the training set "
              f"({len(cfg.svm.c_grid)} values)", flush=True)
        C, scores = select_svm_c(train_x, train_y, cfg.svm.c_grid, folds=cfg.svm.folds, seed=cfg.seed)
        details["svm_cv"] = {str(c): s for c, s in scores.items()}
        details["svm_c_cv"] = C
        metrics["svm_acc_cv"] = linear_svm_accuracy(train_x, train_y, test_x, test_y, C=C)

    fewshot, skipped = {}, {}
    for setting in cfg.fewshot.settings:
        n_way, k_shot = parse_setting(setting)
        reason, short = few_shot_shortfall(train_y, test_y, n_way, k_shot, cfg.fewshot.queries)
        if short:
            names = ", ".join(class_names[c] if c < len(class_names) else str(c) for c in short)
            print(f"warning: {title} few-shot {setting}: {len(short)} classes have fewer than "
                  f"{cfg.fewshot.queries} test objects (fewshot.queries) and are left out of the draw: {names}")
            details.setdefault("fewshot_short_classes", {})[setting] = short
        if reason:
            skipped[setting] = reason
            print(f"note: {title} few-shot {setting} skipped: {reason}")
            continue
        mean, std, runs = few_shot_accuracy(train_x, train_y, test_x, test_y, n_way, k_shot,
                                            n_query=cfg.fewshot.queries, n_runs=cfg.fewshot.runs,
                                            seed=cfg.seed, C=cfg.fewshot.c)
        fewshot[setting] = {"mean": mean, "std": std, "runs": runs}
    metrics["fewshot"] = fewshot
    details["fewshot_skipped"] = skipped

    for key, value in flatten_scalars(metrics).items():
        writer.add_scalar(f"{name}/{key}", value, 0)
    if cfg.tsne:
        path = run_dir / f"tsne_{name}.png"
        print(f"{title}: t-SNE of the {len(test_y)} test features", flush=True)
        plot_tsne(test_x, test_y, path, class_names=class_names, seed=cfg.seed)
        details["tsne"] = str(path)
    return metrics, details
