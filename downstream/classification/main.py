"""Frozen-feature evaluation of a pretrained point encoder: linear SVM, few-shot and t-SNE on ModelNet40,
ScanObjectNN and class-folder trees such as ModelNet10 (configs/classification.yaml describes the protocol).

    python -m downstream.classification.main --checkpoint runs/pretrain/best.pt --data-root data
    python -m downstream.classification.main --random-init --data-root data          # the baseline
    python -m downstream.classification.main --random-init --calibrate-bn --data-root data   # its BN calibrated
    python -m downstream.classification.main --checkpoint best.pt data.datasets=[folder] data.folder.root=ModelNet10
    python -m downstream.classification.main --checkpoint dgcnn_cls_best.pth model.k=15  # CrossPoint's release
    python -m downstream.classification.main --checkpoint best.pt --seeds 0 1 2       # mean +- std
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: "
          "python -m downstream.classification.main --help", file=sys.stderr)
    raise SystemExit(2)

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from downstream import common
from engine.runtime import prepare_fresh_run_dir, run_changes, setup_runtime
from models.build import BACKBONES
from tasks.classification import ClassificationConfig, dataset_points, evaluate_dataset
from tasks.encoders import load_encoder_weights, report_dict
from utils.config import Config, build_part, read_yaml, require_points_for_k, save_config
from utils.errors import ConfigError, exit_on_user_error
from utils.files import make_folder, read_json, write_json

DEFAULTS = common.CONFIGS / "classification.yaml"


def print_results(cfg: Config, encoder_name: str, test: dict, details: dict) -> None:
    for name, metrics in test.items():
        info = details[name]
        print(f"\n{info['title']}, {dataset_points(cfg, name)} points ({info['train_samples']} train / "
              f"{info['test_samples']} test), {encoder_name}, test set:")
        print(f"  linear SVM, C={info['svm_c']:g} (published protocol){'':<14} {common.pct(metrics['svm_acc'])} %")
        if "svm_acc_cv" in metrics:
            chosen = f"C={info['svm_c_cv']:g} ({cfg.svm.folds}-fold CV on the training set)"
            print(f"  linear SVM, {chosen:<44} {common.pct(metrics['svm_acc_cv'])} %")
        for setting, result in metrics["fewshot"].items():
            print(f"  few-shot {setting:<7} ({cfg.fewshot.runs} runs){'':<29} {common.pct(result['mean'])} +- "
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
    require_points_for_k("model.k", cfg.model.get("k", 0),
                         {f"data.{name}_points": cfg.data[f"{name}_points"] for name in cfg.data.datasets})
    if "folder" in cfg.data.datasets and not cfg.data.folder.root:
        raise ConfigError("data.datasets lists folder, but 'data.folder.root' is not set: give the class-folder tree, "
                          "e.g. data.folder.root=data/ModelNet10")
    runtime = setup_runtime(cfg)
    encoder = build_part(BACKBONES, cfg.model)  # seeded by setup_runtime: the random-init baseline
    report = None
    if cfg.checkpoint:
        report = load_encoder_weights(encoder, cfg.checkpoint, require_all=True)
    encoder.requires_grad_(False).to(runtime.device).eval()
    encoder_name = f"encoder from {cfg.checkpoint}" if cfg.checkpoint else f"random-init encoder (seed {cfg.seed})"
    if cfg.calibrate_batchnorm:
        encoder_name += f", BatchNorm statistics estimated on {cfg.calibration_shapes} trainval shapes"

    test, details = {}, {}
    if runtime.is_main:
        make_folder(run_dir)
        prepare_fresh_run_dir(run_dir, cfg.overwrite, restart=cfg.resume == "auto")
        save_config(cfg, run_dir / "config.yaml")
        writer = SummaryWriter(str(run_dir / "tensorboard"))
        try:
            for name in cfg.data.datasets:
                test[name], details[name] = evaluate_dataset(name, encoder, cfg, runtime, run_dir, writer)
        finally:
            writer.close()
        write_json({"seed": cfg.seed, "encoder": "pretrained" if cfg.checkpoint else "random_init",
                    "checkpoint": cfg.checkpoint, "load_report": report_dict(report) if report else None,
                    "details": details, "test": test}, metrics_path)
        print_results(cfg, encoder_name, test, details)
        print(f"run directory: {run_dir}")
    return test


def finished_run(run_dir: Path, cfg: Config) -> dict | None:
    """The test metrics of a finished run of the same config in `run_dir` (keys that do not change the results,
    such as data.root or device, may differ), else None."""
    metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.yaml"
    if not (metrics_path.exists() and config_path.exists()):
        return None
    saved = read_yaml(config_path, "saved config")
    metrics = read_json(metrics_path)
    if not isinstance(saved, dict) or run_changes(saved, cfg.to_dict()) or "test" not in metrics:
        return None
    return metrics["test"]


@exit_on_user_error
def main(argv=None):
    return common.script_main(__spec__.name, __doc__, DEFAULTS, ClassificationConfig, run, argv, switches=[
        ("--random-init", "random_init=true", "evaluate the encoder at random initialisation (seeded), the baseline"),
        ("--calibrate-bn", "calibrate_batchnorm=true", "estimate the BatchNorm statistics on each dataset's trainval "
         "points first (with --random-init: the baseline that tells learned features from calibrated ones)")])


if __name__ == "__main__":
    main()
