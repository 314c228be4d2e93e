"""S3DIS semantic segmentation: fine-tune DGCNN_semseg on the areas other than the test area, from a
pretrained encoder or from scratch; Area 5 or 6-fold (configs/semseg.yaml describes the protocol).

    python -m downstream.segmentation.main_semseg --data-root data                       # Area 5, scratch
    python -m downstream.segmentation.main_semseg --checkpoint semseg.pth data.test_area=6
    python -m downstream.segmentation.main_semseg --six-fold --out runs/semseg_6fold      # areas 1..6
    python -m downstream.segmentation.main_semseg --six-fold --resume auto --out runs/semseg_6fold
"""

from __future__ import annotations

import sys

if not __package__:  # run as a file: the repository root is not importable, say how to run it
    print("error: run this script from the repository root as a module: "
          "python -m downstream.segmentation.main_semseg --help", file=sys.stderr)
    raise SystemExit(2)

from pathlib import Path

import numpy as np

from datasets.s3dis import CLASS_NAMES, S3DIS
from downstream import common
from engine.runtime import setup_runtime
from engine.trainer import Evaluation
from models.build import build_model
from tasks import finetune
from tasks import segmentation as seg
from tasks.segmentation_metrics import SemSegMeter
from utils import distributed
from utils.config import Config
from utils.errors import ConfigError, exit_on_user_error
from utils.files import update_json, write_json

DEFAULTS = common.CONFIGS / "semseg.yaml"
AREAS = (1, 2, 3, 4, 5, 6)
SCALARS = seg.SEM_SEG_SCALARS


def print_per_class(title: str, result: dict) -> None:
    print(f"\n{title}")
    print(f"  mIoU {common.pct(result['miou'])} %   OA {common.pct(result['overall_acc'])} %   "
          f"mean class acc {common.pct(result['mean_class_acc'])} %")
    print("  " + "  ".join(f"{name[:8]:>8}" for name in CLASS_NAMES))
    print("  " + "  ".join(f"{common.pct(v).strip():>8}" for v in result["per_class_iou"].values()))


def run_area(cfg: Config) -> dict:
    """Train with Area `data.test_area` held out, select on the val rooms, test once on the test area."""
    finetune.check_points_for_k(cfg)
    runtime = setup_runtime(cfg)
    module = seg.PointSegmentation(build_model(cfg.model), cfg.loss.label_smoothing)
    report = finetune.initial_weights(cfg, module.model, runtime)
    data = cfg.data

    def split(name: str):
        return S3DIS(data.root, split=name, test_area=data.test_area, num_points=data.num_points, seed=cfg.seed,
                     val_fraction=data.val_fraction)

    train_set = split("train")
    val_loader, test_loader = finetune.eval_loader(split("val"), cfg), finetune.eval_loader(split("test"), cfg)
    if len(val_loader.dataset) == 0:
        raise ConfigError(f"data.val_fraction {data.val_fraction}: no validation rooms held out; raise it")

    def validate(m):
        return {k: v for k, v in seg.score_sem_seg(m, val_loader, runtime, "val").compute().items() if k in SCALARS}

    def test(m):
        return seg.sem_seg_result(seg.score_sem_seg(m, test_loader, runtime, f"test (Area {data.test_area})"))

    result = finetune.fine_tune(cfg, runtime, module, report, train_set, Evaluation(validate, test, "miou"))
    if not runtime.is_main:
        return result["test"]
    full = result["test"]
    update_json(Path(cfg.out) / "metrics.json", {"test_area": data.test_area,
                                                  "test_blocks": len(test_loader.dataset)})
    print_per_class(f"S3DIS Area {data.test_area} ({len(test_loader.dataset)} test blocks), model of epoch "
                    f"{full['selected_epoch']} (best val mIoU):", full)
    print(f"run directory: {cfg.out}")
    return full


def run_six_fold(cfg: Config) -> dict:
    """Test areas 1..6 one after another into <out>/area_<a>/; the 6-fold figures come from the six test
    confusion matrices summed (every S3DIS point is tested exactly once)."""
    if cfg.resume not in (None, "auto"):
        raise ConfigError(f"resume '{cfg.resume}' names one run; the 6-fold driver runs six, use resume=auto")
    out = Path(cfg.out)
    common.prepare_driver_dirs(cfg, [out / f"area_{area}" for area in AREAS])
    per_area = {}
    for area in AREAS:
        area_cfg = Config(cfg.to_dict())
        area_cfg.data["test_area"], area_cfg["out"] = area, str(out / f"area_{area}")
        if distributed.is_main_process():
            print(f"\n===== 6-fold: test Area {area} -> {area_cfg.out}", flush=True)
        per_area[area] = run_area(area_cfg)
    if not distributed.is_main_process():
        return {}
    meter = SemSegMeter(len(CLASS_NAMES))
    meter.confusion = sum(np.asarray(per_area[a]["confusion"], dtype=np.int64) for a in AREAS)
    overall = seg.sem_seg_result(meter)
    areas = {str(a): {k: per_area[a][k] for k in (*SCALARS, "selected_epoch")} for a in AREAS}
    write_json({"seed": cfg.seed, "six_fold": True, "per_area": areas, "test": overall},
                      out / "metrics.json")
    print("\nS3DIS per test area (each model scored once on its held-out area):")
    print("  area      mIoU       OA   mAcc   epoch")
    for area, row in areas.items():
        print(f"  {area:>4}  {common.pct(row['miou'])}  {common.pct(row['overall_acc'])}  "
              f"{common.pct(row['mean_class_acc'])}  {row['selected_epoch']:>5}")
    print_per_class("S3DIS 6-fold (confusion matrices of the six test areas summed):", overall)
    print(f"run directory: {out}")
    return overall


def run(cfg: Config) -> dict:
    return run_six_fold(cfg) if cfg.data.six_fold else run_area(cfg)


@exit_on_user_error
def main(argv=None):
    return common.script_main(__spec__.name, __doc__, DEFAULTS, seg.SemSegConfig, run, argv, switches=[
        ("--six-fold", "data.six_fold=true", "test areas 1..6 in turn")])


if __name__ == "__main__":
    main()
