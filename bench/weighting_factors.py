"""What each run of a weighting study learned, factor by factor, on the weighting benchmark.

    python -m bench.weighting_factors runs/weighting_study --variants static-1:0 static-1:1 static-0:1

The benchmark's label is shell x core x coat (data/README.md, "Weighting benchmark"): the core reaches the
point encoder through the intra-modal loss only, the coat is what the renders show. A linear SVM on one
factor at a time says which of them an encoder's features carry. For every finished run of the given
variants (all finished ones by default): the frozen features of its best.pt, the checkpoint the study scored,
on the trainval and test splits at the run's `monitor.num_points`, and one linear SVM per target (the
20-class label, the shell, the core, the coat) with the run's `monitor.svm_c`, fit on trainval and scored on
test, as the study scores the label. Writes `<study>/factors.md` and `factors.json`: test accuracy in %,
mean +- sample std over seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import yaml
from torch.utils.data import DataLoader

from bench.weighting_study import VARIANTS, finished, mean_std, run_dir
from data.synthetic_gen.weighting_bench import CORES, COATS, SHELLS, factors
from datasets.modelnet40 import ModelNet40
from engine.evaluate import extract_features, linear_svm_accuracy
from tools.common import load_model
from utils.errors import ConfigError, exit_on_user_error
from utils.files import atomic_write_text, write_json

TARGETS = {"label": len(SHELLS) * len(CORES) * len(COATS), "shell": len(SHELLS), "core": len(CORES),
           "coat": len(COATS)}


def targets(labels: np.ndarray) -> dict[str, np.ndarray]:
    shell, core, coat = factors(labels)
    return {"label": labels, "shell": shell, "core": core, "coat": coat}


def features(encoder, root: str, split: str, num_points: int):
    loader = DataLoader(ModelNet40(root, split=split, num_points=num_points), batch_size=128, shuffle=False)
    return extract_features(encoder, loader, "cpu")


def factor_accuracies(directory: Path) -> dict[str, float]:
    """Test accuracy per target of the run's best.pt (fractions)."""
    cfg = yaml.safe_load((directory / "config.yaml").read_text())
    encoder, _ = load_model(directory / "best.pt", "embed")
    root, num_points, c = cfg["data"]["root"], cfg["monitor"]["num_points"], cfg["monitor"]["svm_c"]
    train_x, train_y = features(encoder, root, "trainval", num_points)
    test_x, test_y = features(encoder, root, "test", num_points)
    if max(train_y.max(), test_y.max()) >= TARGETS["label"]:
        raise ConfigError(f"{root}: labels up to {max(train_y.max(), test_y.max())}, not the weighting "
                          f"benchmark's {TARGETS['label']} classes (python data/make_synthetic.py --size weighting)")
    fit, score = targets(train_y), targets(test_y)
    return {name: linear_svm_accuracy(train_x, fit[name], test_x, score[name], C=c) for name in TARGETS}


def markdown(table: dict, command: str) -> str:
    lines = ["Linear-SVM test accuracy in % per target, mean +- sample std over seeds (chance: label 5, shell 20, "
             "core 50, coat 50).", "", f"    {command}", "",
             "| variant | runs | " + " | ".join(TARGETS) + " |", "|---|---|" + "---|" * len(TARGETS)]
    for variant, rows in table.items():
        cells = []
        for name in TARGETS:
            mean, std = mean_std([row[name] for row in rows.values()])
            cells.append("n/a" if mean is None else f"{100 * mean:.1f}" + ("" if std is None else f" +- {100 * std:.1f}"))
        lines.append(f"| {variant} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.weighting_factors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="the --out folder of python -m bench.weighting_study")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="V")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="S")
    args = parser.parse_args(argv)
    study = Path(args.study)
    if not study.is_dir():
        raise ConfigError(f"{study}: no such study folder")
    table = {}
    for variant in args.variants:
        rows = {}
        for seed in args.seeds:
            directory = run_dir(study, variant, seed)
            if finished(directory):
                rows[seed] = factor_accuracies(directory)
                print(f"{variant} seed {seed}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in rows[seed].items()),
                      flush=True)
        if rows:
            table[variant] = rows
    if not table:
        raise ConfigError(f"{study}: no finished run of {', '.join(args.variants)} for seeds {args.seeds}")
    command = "python -m bench.weighting_factors " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json({"command": command, "targets": TARGETS,
                "variants": {v: {str(s): row for s, row in rows.items()} for v, rows in table.items()}},
               study / "factors.json")
    atomic_write_text(study / "factors.md", markdown(table, command))
    print("\n" + (study / "factors.md").read_text())
    return table


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
