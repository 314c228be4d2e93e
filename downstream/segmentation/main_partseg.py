"""ShapeNetPart part segmentation: fine-tune DGCNN_partseg from a pretrained encoder or from scratch
(configs/partseg.yaml describes the protocol).

    python -m downstream.segmentation.main_partseg --checkpoint runs/pretrain/best.pt --data-root data
    python -m downstream.segmentation.main_partseg --data-root data --out runs/partseg_scratch   # from scratch
    python -m downstream.segmentation.main_partseg --checkpoint best.pt --resume auto --out runs/partseg
    python -m downstream.segmentation.main_partseg --checkpoint best.pt --seeds 0 1 2
    # CrossPoint's protocol: train on train+val for the epochs a train run selected, test the last epoch
    python -m downstream.segmentation.main_partseg --checkpoint best.pt data.train_split=trainval optim.epochs=E
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: "
          "python -m downstream.segmentation.main_partseg --help", file=sys.stderr)
    raise SystemExit(2)

from pathlib import Path

from datasets.shapenet_part import ShapeNetPart
from datasets.transforms import ScaleShift
from downstream import common
from engine.runtime import setup_runtime
from engine.trainer import Evaluation
from models.build import build_model
from tasks import finetune
from tasks import segmentation as seg
from utils.config import Config
from utils.errors import exit_on_user_error
from utils.files import update_json

DEFAULTS = common.CONFIGS / "partseg.yaml"


def print_table(result: dict, shapes: int) -> None:
    chosen = "best val instance mIoU" if result.get("selected_on_val") else "the last epoch"
    print(f"\nShapeNetPart test set ({shapes} shapes), model of epoch {result['selected_epoch']} ({chosen}):")
    print(f"  instance mIoU {common.pct(result['instance_miou'])} %   class mIoU {common.pct(result['class_miou'])} %"
          f"   point accuracy {common.pct(result['acc'])} %")
    print("  " + "  ".join(f"{name[:9]:>9}" for name in result["per_category"]))
    print("  " + "  ".join(f"{common.pct(v).strip():>9}" for v in result["per_category"].values()))
    if result["missing_categories"]:
        print(f"  no test shapes of: {', '.join(result['missing_categories'])}")


def run(cfg: Config) -> dict:
    finetune.check_points_for_k(cfg)
    runtime = setup_runtime(cfg)
    module = seg.PointSegmentation(build_model(cfg.model), cfg.loss.label_smoothing, with_category=True)
    report = finetune.initial_weights(cfg, module.model, runtime)
    data = cfg.data
    transform = ScaleShift() if data.augment else None
    train_set = ShapeNetPart(data.root, split=data.train_split, num_points=data.num_points, transform=transform,
                             seed=cfg.seed)
    test_set = ShapeNetPart(data.root, split="test", num_points=data.num_points)
    test_loader = finetune.eval_loader(test_set, cfg)
    selected_on_val = data.train_split == "train"

    def validate(m):
        result = seg.score_part_seg(m, val_loader, runtime, "val")
        return {key: result[key] for key in seg.PART_SEG_SCALARS}

    def test(m):
        result = seg.score_part_seg(m, test_loader, runtime, "test")
        return {key: result[key] for key in (*seg.PART_SEG_SCALARS, "per_category", "missing_categories")}

    if selected_on_val:
        val_loader = finetune.eval_loader(ShapeNetPart(data.root, split="val", num_points=data.num_points), cfg)
        evaluation = Evaluation(validate, test, "instance_miou")
    else:  # val is part of training: nothing is left to select on, the last epoch is tested
        evaluation = Evaluation(None, test, None)
    result = finetune.fine_tune(cfg, runtime, module, report, train_set, evaluation)
    if not runtime.is_main:
        return result["test"]
    full = {**result["test"], "selected_on_val": selected_on_val}
    update_json(Path(cfg.out) / "metrics.json", {"test": full, "test_shapes": len(test_set)})
    print_table(full, len(test_set))
    print(f"run directory: {cfg.out}")
    return full


@exit_on_user_error
def main(argv=None):
    return common.script_main(__spec__.name, __doc__, DEFAULTS, seg.PartSegConfig, run, argv)


if __name__ == "__main__":
    main()
