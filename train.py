"""Pretrain AdaCrossNet: two augmented point views and a rendered image per object, contrastive losses.

    python train.py                                   # the CPU demo on synthetic data (configs/demo.yaml)
    python train.py --config configs/pretrain.yaml data.root=/data optim.lr=5e-4
    torchrun --nproc_per_node 4 train.py --config configs/pretrain.yaml
"""

from __future__ import annotations

from pathlib import Path

from engine.runtime import setup_runtime
from engine.trainer import Trainer
from tasks.pretrain import PretrainConfig, build_pretraining
from utils import distributed
from utils.cli import parse_config
from utils.config import Config
from utils.errors import exit_on_user_error
from utils.files import read_json, update_json

DEMO = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def load_config(argv=None) -> Config:
    """The resolved config of a train.py command line (`argv` without the program name)."""
    cfg, _ = parse_config("train.py", __doc__, DEMO, PretrainConfig, argv)
    return cfg


@exit_on_user_error
def main(argv=None) -> dict:
    cfg = load_config(argv)
    runtime = setup_runtime(cfg)
    try:
        module, train_set, monitor = build_pretraining(cfg, runtime)
        trainer = Trainer(cfg, runtime, module, train_set, monitor.evaluation(), cfg.out)
        metrics_path = Path(cfg.out) / "metrics.json"
        if runtime.is_main and cfg.monitor.random_init and "random_init" not in read_json(metrics_path):
            # The same encoder before any training: the baseline that pretraining must beat. Computed once per
            # run (a resumed run keeps the first value; a fresh one found its directory without a metrics.json),
            # before the first step.
            module.to(runtime.device)
            update_json(metrics_path, {"random_init": monitor.baseline(module.encoder)})
        result = trainer.fit()
        if runtime.is_main:
            baseline = read_json(metrics_path).get("random_init")
            print(f"\n{monitor.title} linear SVM (C={cfg.monitor.svm_c}), test set, scored once:")
            if baseline is not None:
                print(f"  random init                : {100 * baseline['svm_acc']:6.2f} %")
                if "svm_acc_bn_calibrated" in baseline:  # absent in a run directory from before it existed
                    print(f"  random init, BN calibrated : {100 * baseline['svm_acc_bn_calibrated']:6.2f} %   "
                          "(BatchNorm statistics estimated on the data, no training)")
            print(f"  pretrained                 : {100 * result['test']['svm_acc']:6.2f} %   (epoch "
                  f"{result['test']['selected_epoch']}, chosen on the validation split)")
            print(f"run directory: {cfg.out}")
        return result
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main()
