"""Score a weighting study's encoders again, factor by factor, at any SVM C: what each weighting taught.

    python -m bench.weighting_factors runs/weighting_study --svm-c 3

The weighting benchmark's label is shell x core x coat (data/README.md, "Weighting benchmark"): the core
reaches the point encoder through the intra-modal loss only, the coat is what the renders show. One linear
SVM per target (the 20-class label, the shell, the core, the coat) says which of them the features carry.

For every finished run of the study (or of `--variants` / `--seeds`): the frozen features of its best.pt,
the checkpoint the study scored, at the run's `monitor.num_points`, on the benchmark's splits; per target a
linear SVM fit on train and scored on val, and fit on trainval and scored on test, as the study scores the
label, with C = `--svm-c` (default: the run's own `monitor.svm_c`). The baselines are the same backbone at
random initialisation, built from the run's config under `torch.manual_seed(seed)`, per seed: as initialised,
and with its BatchNorm statistics estimated on the trainval points (engine.evaluate.calibrated_batchnorm).

Writes into the study folder `factors_C<C>.md` and `.json` (test accuracy per target, mean +- sample std
over seeds; the paired difference to static-1:1 on the same seeds with a 95 % t-interval; the label's
validation accuracy) and `factors_C<C>_accuracy.png` (the label's test accuracy per variant, every seed); and
into each run's folder its own `factors.json`, so that running the command again scores only runs that are
new at that C (a study still running can be scored as it goes). No training: seconds per run.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from bench.weighting_study import (BASELINES, REFERENCE, VARIANTS, finished, mean_std, paired_interval, plot_accuracy,
                                  run_dir)
from data.synthetic_gen.weighting_bench import CORES, COATS, SHELLS, factors
from datasets.modelnet40 import ModelNet40
from engine.evaluate import calibrated_batchnorm, extract_features, linear_svm_accuracy
from models.build import BACKBONES
from tools.common import load_model
from utils.config import build_part
from utils.errors import ConfigError, exit_on_user_error
from utils.files import atomic_write_text, read_json, update_json, write_json

TARGETS = {"label": len(SHELLS) * len(CORES) * len(COATS), "shell": len(SHELLS), "core": len(CORES),
           "coat": len(COATS)}

BASELINE_ROWS = {name: label for name, (_, label) in BASELINES.items()}  # the study's rows, per factor here


def targets(labels: np.ndarray) -> dict[str, np.ndarray]:
    shell, core, coat = factors(labels)
    return {"label": labels, "shell": shell, "core": core, "coat": coat}


@functools.lru_cache(maxsize=None)
def benchmark(root: str, num_points: int) -> tuple[ModelNet40, ModelNet40, dict[str, np.ndarray]]:
    """The trainval and test sets, read and checked once per process, and the rows of trainval that form train
    and val: features are extracted for trainval once and split, not extracted again per part."""
    trainval, test = (ModelNet40(root, split=split, num_points=num_points) for split in ("trainval", "test"))
    top = max(int(trainval.labels.max()), int(test.labels.max()))
    if top >= TARGETS["label"]:
        raise ConfigError(f"{root}: labels up to {top}, not the weighting benchmark's {TARGETS['label']} "
                          f"classes (python data/make_synthetic.py --size weighting)")
    rows = {part: np.searchsorted(trainval.indices, ModelNet40(root, split=part, num_points=num_points).indices)
            for part in ("train", "val")}
    return trainval, test, rows


def score(encoder: torch.nn.Module, root: str, num_points: int, c: float) -> dict[str, dict[str, float]]:
    """{"val": {target: accuracy}, "test": {target: accuracy}} of one encoder (fractions)."""
    trainval, test, rows = benchmark(root, num_points)
    (x, y), test_xy = (extract_features(encoder, DataLoader(dataset, batch_size=128, shuffle=False), "cpu")
                       for dataset in (trainval, test))
    data = {"trainval": (x, y), "test": test_xy, **{part: (x[picked], y[picked]) for part, picked in rows.items()}}
    result = {}
    for name, (fit, held_out) in {"val": ("train", "val"), "test": ("trainval", "test")}.items():
        (fit_x, fit_y), (held_x, held_y) = data[fit], data[held_out]
        fit_y, held_y = targets(fit_y), targets(held_y)
        result[name] = {t: linear_svm_accuracy(fit_x, fit_y[t], held_x, held_y[t], C=c) for t in TARGETS}
    return result


def score_run(directory: Path, seed: int, svm_c: float | None, baselines: dict) -> dict:
    """The run's best.pt scored, and the untrained backbone of its config and seed (computed once per seed and
    setting, kept in `baselines`)."""
    cfg = yaml.safe_load((directory / "config.yaml").read_text())
    root, num_points, backbone = cfg["data"]["root"], cfg["monitor"]["num_points"], cfg["model"]["point_backbone"]
    c = svm_c if svm_c is not None else cfg["monitor"]["svm_c"]
    saved = read_json(directory / "factors.json").get(f"{c:g}", {})  # scored before at this C: a re-run only
    if "random_init_bn_calibrated" in saved:  # adds new runs (and the calibrated baseline to older scores)
        return saved
    trained, _ = load_model(directory / "best.pt", "embed")
    key = (seed, root, num_points, c, yaml.safe_dump(backbone, sort_keys=True))
    if key not in baselines:
        torch.manual_seed(seed)
        untrained = build_part(BACKBONES, backbone).eval().requires_grad_(False)
        calibrated = calibrated_batchnorm(untrained, DataLoader(benchmark(root, num_points)[0], batch_size=128), "cpu")
        baselines[key] = {"random_init": score(untrained, root, num_points, c)["test"],
                          "random_init_bn_calibrated": score(calibrated, root, num_points, c)["test"]}
    scores = {"svm_c": c, **score(trained, root, num_points, c), **baselines[key]}
    update_json(directory / "factors.json", {f"{c:g}": scores})
    return scores


def summarize(table: dict, reference: str = REFERENCE) -> dict:
    """Per variant and target: test mean/std over seeds and the paired difference to the reference."""
    ref = table.get(reference, {})
    summary = {}
    for variant, rows in table.items():
        shared = [s for s in rows if s in ref]
        entry = {"runs": len(rows), "seeds": sorted(rows)}
        for target in TARGETS:
            entry[target] = dict(zip(("mean", "std"), mean_std([r["test"][target] for r in rows.values()])))
            diff, low, high = paired_interval([rows[s]["test"][target] - ref[s]["test"][target] for s in shared])
            entry[target].update(diff=diff, low=low, high=high, paired_seeds=len(shared))
        entry["label_val"] = dict(zip(("mean", "std"), mean_std([r["val"]["label"] for r in rows.values()])))
        summary[variant] = entry
    for name, label in BASELINE_ROWS.items():
        baseline = {s: r[name] for rows in table.values() for s, r in rows.items()}
        summary[label] = {"runs": len(baseline), "seeds": sorted(baseline),
                          **{t: dict(zip(("mean", "std"), mean_std([b[t] for b in baseline.values()])))
                             for t in TARGETS}}
    return summary


def _cell(entry: dict) -> str:
    if entry.get("mean") is None:
        return "n/a"
    return f"{100 * entry['mean']:.1f}" + ("" if entry.get("std") is None else f" +- {100 * entry['std']:.1f}")


def _diff(entry: dict) -> str:
    if entry.get("diff") is None or entry.get("low") is None:
        return "-"
    star = "*" if entry["low"] > 0 or entry["high"] < 0 else ""
    return f"{100 * entry['diff']:+.1f} [{100 * entry['low']:+.1f}, {100 * entry['high']:+.1f}]{star}"


def markdown(summary: dict, cs: list[float], command: str, reference: str = REFERENCE) -> str:
    lines = [f"Linear-SVM (C = {', '.join(f'{c:g}' for c in cs)}) test accuracy in % per target, mean +- sample "
             f"std over seeds; below each, the paired difference to {reference} on the same seeds with its 95 % "
             "t-interval ('*': it excludes 0). Chance: label 5, shell 20, core 50, coat 50.", "",
             f"    {command}", "",
             "| variant | runs | label (val) | label | shell | core | coat |", "|---|---|---|---|---|---|---|"]
    for variant, entry in summary.items():
        val = _cell(entry["label_val"]) if "label_val" in entry else ""
        lines.append(f"| {variant} | {entry['runs']} | {val} | " + " | ".join(_cell(entry[t]) for t in TARGETS) + " |")
        compared = variant != reference and variant not in BASELINE_ROWS.values()
        if compared and any(entry[t].get("low") is not None for t in TARGETS):
            lines.append("| | | | " + " | ".join(_diff(entry[t]) for t in TARGETS) + " |")
    return "\n".join(lines) + "\n"


@exit_on_user_error
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.weighting_factors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="the --out folder of python -m bench.weighting_study")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="V")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="S")
    parser.add_argument("--svm-c", type=float, help="the SVMs' C (default: each run's monitor.svm_c)")
    args = parser.parse_args(argv)
    study = Path(args.study)
    if not study.is_dir():
        raise ConfigError(f"{study}: no such study folder")
    if args.svm_c is not None and not args.svm_c > 0:
        raise ConfigError(f"--svm-c: must be > 0, got {args.svm_c:g}")
    table, baselines = {}, {}
    for variant in args.variants:
        rows = {}
        for seed in args.seeds:
            directory = run_dir(study, variant, seed)
            if finished(directory):
                rows[seed] = score_run(directory, seed, args.svm_c, baselines)
                scores = ", ".join(f"{t} {100 * v:.1f}" for t, v in rows[seed]["test"].items())
                print(f"{variant} seed {seed}: {scores}", flush=True)
        if rows:
            table[variant] = rows
    if not table:
        raise ConfigError(f"{study}: no finished run of {', '.join(args.variants)} for seeds {args.seeds}")
    command = "python -m bench.weighting_factors " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = summarize(table)
    cs = sorted({row["svm_c"] for rows in table.values() for row in rows.values()})
    c_text = ", ".join(f"{c:g}" for c in cs)
    name = "factors_C" + "-".join(f"{c:g}" for c in cs)  # one set of files per C: re-scoring keeps the others
    write_json({"command": command, "svm_c": cs, "targets": TARGETS, "summary": summary,
                "runs": {v: {str(s): row for s, row in rows.items()} for v, rows in table.items()}},
               study / f"{name}.json")
    atomic_write_text(study / f"{name}.md", markdown(summary, cs, command))
    plot_accuracy({v: [row["test"]["label"] for row in rows.values()] for v, rows in table.items()},
                  study / f"{name}_accuracy.png", f"test linear-SVM accuracy (%), C = {c_text}")
    print("\n" + (study / f"{name}.md").read_text())
    print(f"written: {study / name}.md, .json, _accuracy.png")
    return summary


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
