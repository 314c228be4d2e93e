"""Fine-tuned shape classification: a backbone with DGCNN's classification head, trained end to end from a
pretraining checkpoint or from scratch (configs/finetune_dgcnn.yaml, configs/finetune_pointnet.yaml).

    python -m downstream.classification.main_finetune --checkpoint runs/pretrain/best.pt --data-root data
    python -m downstream.classification.main_finetune --config configs/finetune_pointnet.yaml   # from scratch
    python -m downstream.classification.main_finetune --checkpoint best.pt data.dataset=scanobjectnn \\
        data.scanobjectnn_variant=PB_T50_RS
    python -m downstream.classification.main_finetune --config configs/finetune_pointnet.yaml \\
        data.dataset=folder data.folder.root=data/ModelNet10 --seeds 0 1 2
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: "
          "python -m downstream.classification.main_finetune --help", file=sys.stderr)
    raise SystemExit(2)

from pathlib import Path

from downstream import common
from engine.runtime import setup_runtime
from engine.trainer import Evaluation
from models.build import build_model
from tasks import classification_finetune as cls
from tasks import finetune
from utils.config import Config
from utils.errors import ConfigError, exit_on_user_error
from utils.files import update_json

DEFAULTS = common.CONFIGS / "finetune_dgcnn.yaml"


def print_table(result: dict, title: str, shapes: int) -> None:
    print(f"\n{title} test set ({shapes} shapes), model of epoch {result['selected_epoch']} (best val OA):")
    print("                  OA      mean class acc")
    print(f"  no voting     {common.pct(result['oa'])} %   {common.pct(result['mean_class_acc'])} %")
    if "oa_vote" in result:
        print(f"  voting        {common.pct(result['oa_vote'])} %   {common.pct(result['mean_class_acc_vote'])} %")


def run(cfg: Config) -> dict:
    finetune.check_points_for_k(cfg)
    runtime = setup_runtime(cfg)
    data = cfg.data
    train_set = cls.build_dataset(data, "train", train=True, seed=cfg.seed)
    names = list(train_set.class_names)
    if cfg.model.get("class_names") not in (None, names):
        raise ConfigError(f"model.class_names: {cfg.model.class_names[:3]}... differ from the dataset's classes "
                          f"{names[:3]}...; leave the key out, the script fills it from the dataset")
    cfg.model["num_classes"], cfg.model["class_names"] = len(names), names
    module = cls.PointClassification(build_model(cfg.model), cfg.loss.label_smoothing)
    report = finetune.initial_weights(cfg, module.model.backbone, runtime)
    val_loader = finetune.eval_loader(cls.build_dataset(data, "val"), cfg)
    test_set = cls.build_dataset(data, "test")
    test_loader = finetune.eval_loader(test_set, cfg)

    evaluation = Evaluation(
        validate=lambda m: cls.score(m, val_loader, runtime, len(names), "val"),
        test=lambda m: cls.score(m, test_loader, runtime, len(names), "test", voting=cfg.voting),
        select_metric="oa")
    result = finetune.fine_tune(cfg, runtime, module, report, train_set, evaluation)
    if not runtime.is_main:
        return result["test"]
    title = cls.dataset_title(data)
    update_json(Path(cfg.out) / "metrics.json", {"dataset": title, "test_shapes": len(test_set)})
    print_table(result["test"], title, len(test_set))
    print(f"run directory: {cfg.out}")
    return result["test"]


@exit_on_user_error
def main(argv=None):
    return common.script_main(__spec__.name, __doc__, DEFAULTS, cls.ClsFineTuneConfig, run, argv)


if __name__ == "__main__":
    main()
