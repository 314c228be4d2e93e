"""ShapeNetPart part segmentation: fine-tune DGCNN_partseg from a pretrained encoder or from scratch
(configs/partseg.yaml describes the protocol).

    python -m downstream.segmentation.main_partseg --checkpoint runs/pretrain/best.pt --data-root data
    python -m downstream.segmentation.main_partseg --data-root data --out runs/partseg_scratch   # from scratch
    python -m downstream.segmentation.main_partseg --checkpoint best.pt --resume auto --out runs/partseg
    python -m downstream.segmentation.main_partseg --checkpoint best.pt --seeds 0 1 2
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: "
          "python -m downstream.segmentation.main_partseg --help", file=sys.stderr)
    raise SystemExit(2)

from pathlib import Path

import numpy as np
import torch

from datasets.shapenet_part import CATEGORY_NAMES, PART_RANGES, ShapeNetPart
from downstream import common
from engine.evaluate import part_seg_miou, restrict_to_category
from engine.trainer import Evaluation, setup_runtime
from models.build import build_model
from utils.config import Config
from utils.errors import ConfigError, exit_on_user_error

DEFAULTS = common.CONFIGS / "partseg.yaml"


def score(module, loader, runtime, desc: str) -> dict:
    """Part-seg metrics of `module` on a split: predictions restricted to each shape's category parts."""
    preds, segs, categories = [], [], []
    for logits, batch in common.predict(module, loader, runtime, desc):
        preds.append(restrict_to_category(logits, batch["category"], PART_RANGES).cpu())
        segs.append(batch["seg"].cpu())
        categories.append(batch["category"].cpu())
    pred, seg, category = torch.cat(preds).numpy(), torch.cat(segs).numpy(), torch.cat(categories).numpy()
    result = part_seg_miou(pred, seg, category, PART_RANGES, CATEGORY_NAMES)
    result["acc"] = float(np.mean(pred == seg))
    return result


def print_table(result: dict, shapes: int) -> None:
    print(f"\nShapeNetPart test set ({shapes} shapes), model of epoch {result['selected_epoch']} "
          f"(best val instance mIoU):")
    print(f"  instance mIoU {common.pct(result['instance_miou'])} %   class mIoU {common.pct(result['class_miou'])} %"
          f"   point accuracy {common.pct(result['acc'])} %")
    print("  " + "  ".join(f"{name[:9]:>9}" for name in result["per_category"]))
    print("  " + "  ".join(f"{common.pct(v).strip():>9}" for v in result["per_category"].values()))
    if result["missing_categories"]:
        print(f"  no test shapes of: {', '.join(result['missing_categories'])}")


def run(cfg: Config) -> dict:
    if cfg.model.name != "dgcnn_partseg":
        raise ConfigError(f"model.name '{cfg.model.name}': part segmentation fine-tunes dgcnn_partseg")
    runtime = setup_runtime(cfg)
    module = common.PointSegmentation(build_model(cfg.model), cfg.loss.label_smoothing, with_category=True)
    report = common.initial_weights(cfg, module.model, runtime)
    transform = common.ScaleShift() if cfg.data.augment else None
    train_set = ShapeNetPart(cfg.data.root, split="train", num_points=cfg.data.num_points, transform=transform,
                             seed=cfg.seed)
    val_loader = common.eval_loader(ShapeNetPart(cfg.data.root, split="val", num_points=cfg.data.num_points), cfg)
    test_set = ShapeNetPart(cfg.data.root, split="test", num_points=cfg.data.num_points)
    test_loader = common.eval_loader(test_set, cfg)

    tables = {}

    def validate(m):
        result = score(m, val_loader, runtime, "val")
        return {key: result[key] for key in ("instance_miou", "class_miou", "acc")}

    def test(m):
        tables.update(score(m, test_loader, runtime, "test"))
        return {key: tables[key] for key in ("instance_miou", "class_miou", "acc")}

    result = common.fine_tune(cfg, runtime, module, report, train_set, Evaluation(validate, test, "instance_miou"))
    if not runtime.is_main:
        return result["test"]
    full = {**result["test"], "per_category": tables["per_category"],
            "missing_categories": tables["missing_categories"]}
    common.update_metrics(Path(cfg.out) / "metrics.json", test=full, test_shapes=len(test_set))
    print_table(full, len(test_set))
    print(f"run directory: {cfg.out}")
    return full


@exit_on_user_error
def main(argv=None):
    return common.script_main(__spec__.name, __doc__, DEFAULTS, run, argv)


if __name__ == "__main__":
    main()
