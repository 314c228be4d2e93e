"""Frozen-feature evaluation of a pretrained point encoder: linear SVM, few-shot and t-SNE on ModelNet40 and
ScanObjectNN (configs/classification.yaml describes the protocol).

    python -m downstream.classification.main --checkpoint runs/pretrain/best.pt --data-root data
    python -m downstream.classification.main --random-init --data-root data          # the baseline
    python -m downstream.classification.main --checkpoint dgcnn_cls_best.pth model.k=15 svm.search_c=true
    python -m downstream.classification.main --checkpoint best.pt --seeds 0 1 2       # mean +- std
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: "
          "python -m downstream.classification.main --help", file=sys.stderr)
    raise SystemExit(2)

import json
import re
from pathlib import Path

import numpy as np
import yaml
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from datasets import ModelNet40, ScanObjectNN
from downstream import common
from engine.evaluate import extract_features, few_shot_accuracy, linear_svm_accuracy, plot_tsne, select_svm_c
from engine.trainer import setup_runtime
from models.build import BACKBONES
from utils.config import Config, save_config
from utils.errors import ConfigError, exit_on_user_error

DEFAULTS = common.CONFIGS / "classification.yaml"
TITLES = {"modelnet40": "ModelNet40", "scanobjectnn": "ScanObjectNN"}


def build_dataset(cfg: Config, name: str, split: str):
    data = cfg.data
    if name == "modelnet40":
        return ModelNet40(data.root, split=split, num_points=data.modelnet40_points)
    if name == "scanobjectnn":
        return ScanObjectNN(data.root, variant=data.scanobjectnn_variant, split=split,
                            num_points=data.scanobjectnn_points)
    raise ConfigError(f"data.datasets: unknown dataset '{name}' (choose from {', '.join(TITLES)})")


def parse_setting(text: str) -> tuple[int, int]:
    found = re.fullmatch(r"(\d+)w(\d+)s", str(text))
    if not found or min(int(found.group(1)), int(found.group(2))) < 1:
        raise ConfigError(f"fewshot.settings: '{text}' is not <N>w<K>s (e.g. 5w10s)")
    return int(found.group(1)), int(found.group(2))


def few_shot_shortfall(train_y, test_y, n_way: int, k_shot: int, queries: int) -> str | None:
    """Why an N-way K-shot setting cannot run on this dataset, or None when it can."""
    train_counts = np.bincount(train_y)
    test_counts = np.bincount(test_y, minlength=len(train_counts))
    eligible = int(((train_counts >= k_shot) & (test_counts[: len(train_counts)] >= queries)).sum())
    if eligible >= n_way:
        return None
    return (f"needs {n_way} classes with >= {k_shot} training and >= {queries} test examples "
            f"(fewshot.queries), {eligible} qualify here")


def evaluate_dataset(name: str, encoder, cfg: Config, runtime, run_dir: Path, writer) -> tuple[dict, dict]:
    """Linear SVM, few-shot and t-SNE on one dataset -> (test metrics, details)."""
    title = TITLES[name]
    features = {}
    for split in ("trainval", "test"):
        dataset = build_dataset(cfg, name, split)
        loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=False,
                            num_workers=cfg.train.num_workers, pin_memory=runtime.device.type == "cuda")
        progress = tqdm(loader, desc=f"{title} {split} features", leave=False,
                        mininterval=1.0 if sys.stderr.isatty() else 30.0)
        features[split] = extract_features(encoder, progress, runtime.device, runtime.amp_dtype)
        class_names = list(dataset.class_names)
    (train_x, train_y), (test_x, test_y) = features["trainval"], features["test"]
    details = {"train_samples": len(train_y), "test_samples": len(test_y), "feature_dim": int(train_x.shape[1])}

    if cfg.svm.search_c:
        C, scores = select_svm_c(train_x, train_y, cfg.svm.c_grid, folds=cfg.svm.folds, seed=cfg.seed)
        details["svm_cv"] = {str(c): s for c, s in scores.items()}
        print(f"{title}: C = {C:g} chosen by {cfg.svm.folds}-fold cross-validation on the training set")
    else:
        C = cfg.svm.c
    details["svm_c"] = C
    metrics = {"svm_acc": linear_svm_accuracy(train_x, train_y, test_x, test_y, C=C)}

    fewshot, skipped = {}, {}
    for setting in cfg.fewshot.settings:
        n_way, k_shot = parse_setting(setting)
        reason = few_shot_shortfall(train_y, test_y, n_way, k_shot, cfg.fewshot.queries)
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

    for key, value in common.flatten_scalars(metrics).items():
        writer.add_scalar(f"{name}/{key}", value, 0)
    if cfg.tsne:
        path = run_dir / f"tsne_{name}.png"
        plot_tsne(test_x, test_y, path, class_names=class_names, seed=cfg.seed)
        details["tsne"] = str(path)
    return metrics, details


def print_results(cfg: Config, encoder_name: str, test: dict, details: dict) -> None:
    for name, metrics in test.items():
        info = details[name]
        points = cfg.data.modelnet40_points if name == "modelnet40" else cfg.data.scanobjectnn_points
        variant = f" {cfg.data.scanobjectnn_variant}" if name == "scanobjectnn" else ""
        print(f"\n{TITLES[name]}{variant}, {points} points ({info['train_samples']} train / {info['test_samples']} "
              f"test), {encoder_name}, test set:")
        print(f"  linear SVM (C={info['svm_c']:g})      {common.pct(metrics['svm_acc'])} %")
        for setting, result in metrics["fewshot"].items():
            print(f"  few-shot {setting:<7} ({cfg.fewshot.runs} runs) {common.pct(result['mean'])} +- "
                  f"{100 * result['std']:.2f} %   (mean +- std over episodes)")
        for setting, reason in info["fewshot_skipped"].items():
            print(f"  few-shot {setting:<7} skipped: {reason}")
        if "tsne" in info:
            print(f"  t-SNE: {info['tsne']}")


def run(cfg: Config) -> dict:
    run_dir = Path(cfg.out)
    metrics_path = run_dir / "metrics.json"
    if cfg.resume:
        if cfg.resume != "auto":
            raise ConfigError(f"resume '{cfg.resume}': this evaluation trains nothing, so there is no checkpoint "
                              "to resume; resume=auto reuses a finished run's results when its config is the same")
        done = finished_run(run_dir, cfg)
        if done is not None:
            print(f"resume: {run_dir} already holds the results of this config; nothing to do")
            return done
    if bool(cfg.checkpoint) == bool(cfg.random_init):
        raise ConfigError("choose the encoder: --checkpoint PATH (pretrained weights) or --random-init (the "
                          "randomly initialised baseline)" if not cfg.checkpoint else
                          "--checkpoint and --random-init exclude each other: run them separately")
    if cfg.model.name not in BACKBONES:
        raise ConfigError(f"model.name '{cfg.model.name}': expected a point encoder ({', '.join(BACKBONES)})")
    runtime = setup_runtime(cfg)
    encoder = BACKBONES[cfg.model.name](cfg.model)  # seeded by setup_runtime: the random-init baseline
    report = None
    if cfg.checkpoint:
        report = common.load_encoder_weights(encoder, cfg.checkpoint, require_all=True)
    encoder.requires_grad_(False).to(runtime.device).eval()
    encoder_name = f"encoder from {cfg.checkpoint}" if cfg.checkpoint else f"random-init encoder (seed {cfg.seed})"

    test, details = {}, {}
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        writer = SummaryWriter(str(run_dir / "tensorboard"))
        try:
            for name in cfg.data.datasets:
                test[name], details[name] = evaluate_dataset(name, encoder, cfg, runtime, run_dir, writer)
        finally:
            writer.close()
        common.write_json({"seed": cfg.seed, "encoder": "pretrained" if cfg.checkpoint else "random_init",
                           "checkpoint": cfg.checkpoint,
                           "load_report": common.report_dict(report) if report else None,
                           "details": details, "test": test}, metrics_path)
        print_results(cfg, encoder_name, test, details)
        print(f"run directory: {run_dir}")
    return test


def finished_run(run_dir: Path, cfg: Config) -> dict | None:
    """The test metrics of a finished run of the same config in `run_dir`, else None."""
    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.yaml"
    if not (metrics_path.exists() and config_path.exists()):
        return None
    saved = yaml.safe_load(config_path.read_text()) or {}
    current = cfg.to_dict()
    saved.pop("resume", None), current.pop("resume", None)
    metrics = json.loads(metrics_path.read_text())
    return metrics.get("test") if saved == current and "test" in metrics else None


@exit_on_user_error
def main(argv=None):
    return common.script_main(__spec__.name, __doc__, DEFAULTS, run, argv, switches=[
        ("--random-init", "random_init=true", "evaluate the encoder at random initialisation (seeded), the baseline")])


if __name__ == "__main__":
    main()
