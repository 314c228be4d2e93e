"""Does adaptive loss weighting help? Pretrain every weighting variant with several seeds and compare.

    python -m bench.weighting_study --config configs/weighting_study.yaml --seeds 0 1 2 3 4 \
        --out runs/weighting_study [--variants static-1:1 adacrossnet ...] [dotted overrides for every run]

Each (variant, seed) is one `train.py` run into `<out>/<variant>/seed_<s>/`, with the overrides of the
variant and the seed on top of `--config` and the command line's overrides. A run that finished (its
metrics.json holds a test result) is skipped, a run that was interrupted resumes from its last.pt: a killed
study is continued by running the same command again. A run is the same only if its resolved config is
(train.py's resume rule: data.root, device and the like may differ): a run directory holding a run of another
config is refused before any run starts, or replaced with --overwrite. At the end, and after every run:
  - summary.md / summary.json: per variant, the linear-SVM accuracy on the validation split (the best epoch's,
    which chose the checkpoint) and on the test split (scored once, on that checkpoint), mean +- sample std
    over seeds; the paired difference to the reference variant (static-1:1) on the same seeds, with a 95 %
    t-interval over seeds; the wall time per run; the test accuracy of the encoders before training, as
    initialised and with their BatchNorm statistics estimated on the data (scored in each seed's first run
    only: the random initialisation depends on the seed alone);
  - weights.png: the weights of the two losses against the step, per variant (mean over seeds);
  - accuracy.png: test accuracy per variant, every seed and the mean +- std.
`--variants` takes names from VARIANTS, or custom ones as `label=key=value,key=value`.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from engine.runtime import run_changes
from utils.config import read_yaml
from utils.errors import ConfigError, UserError, exit_on_user_error
from utils.files import atomic_write_text, make_folder, read_json, write_json

REFERENCE = "static-1:1"
# the untrained encoder's two scores (train.py, metrics.json "random_init": metric key) and their table rows: as
# initialised, and with its BatchNorm statistics estimated on the data
BASELINES = {"random_init": ("svm_acc", "(random init)"),
             "random_init_bn_calibrated": ("svm_acc_bn_calibrated", "(random init, BN calibrated)")}
VARIANTS = {
    "static-1:0": ["weighting.name=static", "weighting.weights=[1.0,0.0]"],
    "static-3:1": ["weighting.name=static", "weighting.weights=[1.5,0.5]"],
    "static-1:1": ["weighting.name=static", "weighting.weights=[1.0,1.0]"],
    "static-1:3": ["weighting.name=static", "weighting.weights=[0.5,1.5]"],
    "static-0:1": ["weighting.name=static", "weighting.weights=[0.0,1.0]"],
    "adacrossnet": ["weighting.name=adacrossnet"],
    "convergence-slower": ["weighting.name=convergence", "weighting.direction=slower"],
    "convergence-faster": ["weighting.name=convergence", "weighting.direction=faster"],
    "dwa": ["weighting.name=dwa"],
    "uncertainty": ["weighting.name=uncertainty"],
    "gradnorm": ["weighting.name=gradnorm"],
}


def parse_variants(names: list[str]) -> dict[str, list[str]]:
    variants = {}
    for name in names:
        label, sep, rest = name.partition("=")
        if sep:
            overrides = [item for item in rest.split(",") if item]
            malformed = [item for item in overrides if "=" not in item]
            if not overrides or malformed:  # e.g. an override for every run placed after --variants
                raise ConfigError(f"--variants: '{name}' is not label=key=value[,key=value] (a value cannot hold a "
                                  f"comma; overrides for every run go after --out, not after --variants)")
            variants[label] = overrides
        elif name in VARIANTS:
            variants[name] = VARIANTS[name]
        else:
            raise ConfigError(f"--variants: unknown variant '{name}' (known: {', '.join(VARIANTS)}; or "
                              f"label=key=value,key=value)")
    return variants


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / variant.replace(":", "-") / f"seed_{seed}"


def finished(directory: Path) -> bool:
    return "svm_acc" in read_json(directory / "metrics.json").get("test", {})


class StudyFailed(UserError):
    """No run of the study has a result: there is nothing to summarise."""


def train_argv(config: str | None, directory: Path, seed: int, overrides: list[str], start: str) -> list[str]:
    """train.py's command line for one run; `start`: "resume=auto" to continue it, "overwrite=true" to replace
    the run of another config in its directory."""
    return ([] if config is None else ["--config", config]) + [*overrides, f"seed={seed}", f"out={directory}",
                                                               start]


def run_one(config: str | None, directory: Path, seed: int, overrides: list[str],
            start: str = "resume=auto") -> float:
    """One pretraining run in this process; returns its wall time in seconds (kept across resumes)."""
    import train  # the entry script: the study runs exactly what a user runs

    argv = train_argv(config, directory, seed, overrides, start)
    if start != "resume=auto":  # the replaced run's time is not this run's
        (directory / "study.json").unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        train.main(argv)
    finally:  # an interrupted run keeps the time it spent: the resumed run adds to it
        seconds = read_json(directory / "study.json").get("seconds", 0.0) + time.perf_counter() - started
        if directory.is_dir():  # not when train.py refused its config before making the run directory
            write_json({"seconds": seconds, "argv": argv}, directory / "study.json")
    return seconds


def saved_config(directory: Path) -> dict | None:
    """The resolved config a started run saved, None before it saved one."""
    path = directory / "config.yaml"
    if not path.exists():
        return None
    saved = read_yaml(path, "saved config")
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: not a config train.py wrote (a {type(saved).__name__}); move the run away")
    return saved


def started_with_baseline(saved: dict | None, default: bool) -> bool:
    """Whether a started run scores the untrained encoder (its saved config says), else `default`."""
    if saved is None:
        return default
    monitor = saved.get("monitor")
    return bool(monitor.get("random_init", default)) if isinstance(monitor, dict) else default


def plan_runs(args, variants: dict) -> list[tuple[str, int, Path, list[str], str]]:
    """(variant, seed, directory, overrides, start) per run, seed-major; a directory holding a run of another
    config is refused here, before any run, unless --overwrite replaces it (start "overwrite=true")."""
    import train

    plan = []
    for seed in args.seeds:  # seed-major: an interrupted study has every variant on its first seeds
        for position, (variant, variant_overrides) in enumerate(variants.items()):
            directory = run_dir(Path(args.out), variant, seed)
            saved = saved_config(directory)
            # the encoder before training depends on the seed only: scored in the seed's first run, or as the
            # run started, when it resumes under another --variants order
            baseline = f"monitor.random_init={str(started_with_baseline(saved, position == 0)).lower()}"
            overrides = [*args.overrides, *variant_overrides, baseline]
            start = "resume=auto"
            if saved is not None:
                current = train.load_config(train_argv(args.config, directory, seed, overrides, start))
                changes = run_changes(saved, current.to_dict())
                if changes and not args.overwrite:
                    shown = ", ".join(f"{key} ({old!r} -> {new!r})" for key, old, new in changes[:3])
                    raise ConfigError(f"{directory / 'config.yaml'}: a run of another config ({shown}"
                                      f"{', ...' if len(changes) > 3 else ''}); run the study's own command to "
                                      "continue it, give another --out, or add --overwrite to replace its runs")
                if changes:
                    start = "overwrite=true"
            plan.append((variant, seed, directory, overrides, start))
    return plan


def collect(out: Path, variants: dict, seeds: list[int]) -> dict:
    """Per variant and seed: val and test accuracy, wall time, and the weight curves, for the finished runs."""
    table = {}
    for variant in variants:
        rows = {}
        for seed in seeds:
            directory = run_dir(out, variant, seed)
            if not finished(directory):
                continue
            metrics = read_json(directory / "metrics.json")
            rows[seed] = {"val": metrics["best"]["value"], "test": metrics["test"]["svm_acc"],
                          "random_init": metrics.get("random_init", {}),
                          "epoch": metrics["test"].get("selected_epoch"),
                          "seconds": read_json(directory / "study.json").get("seconds"),
                          "curves": weight_curves(directory / "curves.csv")}
        table[variant] = rows
    return table


def weight_curves(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = ["step"] + [k for k in (rows[0] if rows else {}) if k.startswith("weight_")]
    return {key: [float(row[key]) for row in rows] for key in keys}


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else None


def paired_interval(diffs: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean of paired differences and its 95 % t-interval over seeds (None where undefined)."""
    from scipy.stats import t

    if not diffs:
        return None, None, None
    array = np.asarray(diffs, dtype=np.float64)
    if len(array) < 2:
        return float(array.mean()), None, None
    half = t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array))
    return float(array.mean()), float(array.mean() - half), float(array.mean() + half)


def summarize(table: dict, seeds: list[int], reference: str = REFERENCE) -> dict:
    summary = {"seeds": seeds, "reference": reference,
               "std": "sample standard deviation over seeds (ddof=1)",
               "interval": "95 % t-interval of the mean paired difference to the reference over shared seeds",
               "variants": {}}
    ref = table.get(reference, {})
    for variant, rows in table.items():
        entry = {"runs": len(rows), "seeds": sorted(rows)}
        for split in ("val", "test"):
            entry[f"{split}_mean"], entry[f"{split}_std"] = mean_std([r[split] for r in rows.values()])
            shared = [s for s in rows if s in ref]
            diff, low, high = paired_interval([rows[s][split] - ref[s][split] for s in shared])
            entry[f"{split}_diff"], entry[f"{split}_diff_low"], entry[f"{split}_diff_high"] = diff, low, high
            entry[f"{split}_diff_seeds"] = len(shared)
            entry[f"{split}_per_seed"] = {str(s): r[split] for s, r in rows.items()}
        entry["seconds_mean"], _ = mean_std([r["seconds"] for r in rows.values() if r["seconds"] is not None])
        summary["variants"][variant] = entry
    for name, (key, _) in BASELINES.items():
        baselines = {seed: row["random_init"][key] for rows in table.values() for seed, row in rows.items()
                     if key in row["random_init"]}
        summary[f"{name}_test_mean"], summary[f"{name}_test_std"] = mean_std(list(baselines.values()))
        summary[f"{name}_seeds"] = sorted(baselines)
    return summary


def pct(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"


def markdown(summary: dict, command: str) -> str:
    reference = summary["reference"]
    lines = [f"Linear-SVM accuracy in %, mean +- sample std over seeds {summary['seeds']}; differences are paired "
             f"with {reference} on the same seed, with a 95 % t-interval over seeds ('*': the interval excludes 0).",
             "", f"    {command}", "",
             "| variant | runs | val | test | test - ref [95 % CI] | val - ref [95 % CI] | s / run |",
             "|---|---|---|---|---|---|---|"]
    for name, (_, label) in BASELINES.items():
        if summary[f"{name}_test_mean"] is not None:
            std, runs = summary[f"{name}_test_std"], len(summary[f"{name}_seeds"])
            lines.append(f"| {label} | {runs} | | {pct(summary[f'{name}_test_mean'])}"
                         f"{'' if std is None else ' +- ' + pct(std)} | | | |")
    for variant, e in summary["variants"].items():
        def cell(split):
            mean, std = e[f"{split}_mean"], e[f"{split}_std"]
            return f"{pct(mean)} +- {pct(std)}" if std is not None else pct(mean)

        def diff(split):
            if variant == reference or e[f"{split}_diff"] is None:
                return "-"
            low, high = e[f"{split}_diff_low"], e[f"{split}_diff_high"]
            star = "*" if low is not None and (low > 0 or high < 0) else ""
            return f"{pct(e[f'{split}_diff'], True)} [{pct(low, True)}, {pct(high, True)}]{star}"

        seconds = f"{e['seconds_mean']:.0f}" if e["seconds_mean"] is not None else "n/a"
        lines.append(f"| {variant} | {e['runs']} | {cell('val')} | {cell('test')} | {diff('test')} | "
                     f"{diff('val')} | {seconds} |")
    return "\n".join(lines) + "\n"


def plot(table: dict, out: Path) -> None:
    variants = [v for v, rows in table.items() if rows]
    if not variants:
        return
    plot_weights({v: [r["curves"] for r in table[v].values()] for v in variants}, out / "weights.png")
    plot_accuracy({v: [r["test"] for r in table[v].values()] for v in variants}, out / "accuracy.png",
                  "test linear-SVM accuracy (%)")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_weights(curves: dict[str, list[dict]], path: Path) -> None:
    """The weights of the two losses against the step, one panel per variant (mean over its runs)."""
    plt = _pyplot()
    columns = min(4, len(curves))
    rows_n = math.ceil(len(curves) / columns)
    figure, axes = plt.subplots(rows_n, columns, figsize=(3.6 * columns, 2.8 * rows_n), squeeze=False,
                                sharey=True)
    for axis, (variant, runs) in zip(axes.flat, curves.items()):
        runs = [c for c in runs if c.get("step")]
        for key, colour in (("weight_im", "tab:blue"), ("weight_cm", "tab:orange")):
            usable = [c for c in runs if key in c]
            if not usable:
                continue
            length = min(len(c[key]) for c in usable)
            mean = np.mean([c[key][:length] for c in usable], axis=0)
            axis.plot(usable[0]["step"][:length], mean, color=colour, label=key.replace("weight_", "w_"))
        axis.set_title(variant, fontsize="small")
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    axes.flat[0].legend(fontsize="small")
    for axis in list(axes.flat)[len(curves):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_accuracy(values: dict[str, list[float]], path: Path, ylabel: str) -> None:
    """Every seed's accuracy (grey) and the mean +- sample std (red) per variant; values are fractions."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(6, 0.8 * len(values) + 2), 4))
    for x, (variant, accuracies) in enumerate(values.items()):
        percent = [100 * v for v in accuracies]
        axis.scatter([x] * len(percent), percent, color="tab:gray", s=14, zorder=2)
        mean, std = mean_std(percent)
        if mean is not None:
            axis.errorbar(x + 0.15, mean, yerr=std or 0, fmt="o", color="tab:red", capsize=4, zorder=3)
    axis.set_xticks(range(len(values)), list(values), rotation=35, ha="right", fontsize="small")
    axis.set_ylabel(ylabel)
    axis.set_title("every seed (grey) and mean +- std (red)")
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def report(out: Path, variants: dict, seeds: list[int], command: str, reference: str = REFERENCE) -> dict:
    table = collect(out, variants, seeds)
    summary = summarize(table, seeds, reference)
    summary["command"] = command
    write_json(summary, out / "summary.json")
    atomic_write_text(out / "summary.md", markdown(summary, command))
    plot(table, out)
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.weighting_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="train.py config of every run (default: train.py's default)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="V")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="S")
    parser.add_argument("--out", default="runs/weighting_study")
    parser.add_argument("--reference", default=REFERENCE, metavar="V",
                        help=f"the variant the paired differences are taken to (default {REFERENCE})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the runs in --out whose config differs from this command's (they are "
                             "refused otherwise); runs of this config are continued or kept as always")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for every run")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv=None) -> dict:
    args = parse_args(argv)
    variants = parse_variants(args.variants)
    if args.reference not in variants:
        raise ConfigError(f"--reference: '{args.reference}' is not among the variants ({', '.join(variants)})")
    out = Path(args.out)
    plan = plan_runs(args, variants)
    make_folder(out)
    command = "python -m bench.weighting_study " + " ".join(argv if argv is not None else sys.argv[1:])
    failed = []
    for number, (variant, seed, directory, overrides, start) in enumerate(plan, 1):
        if start == "resume=auto" and finished(directory):
            print(f"[{number}/{len(plan)}] {variant} seed {seed}: finished before, skipped", flush=True)
            continue
        print(f"[{number}/{len(plan)}] {variant} seed {seed} -> {directory}", flush=True)
        try:
            seconds = run_one(args.config, directory, seed, overrides, start)
        except SystemExit as stop:  # train.py printed its one-line error
            if stop.code in (130, 143):  # SIGINT / SIGTERM: the run kept its last.pt; the study stops too
                print(f"[{number}/{len(plan)}] {variant} seed {seed}: interrupted; the same command continues "
                      f"the study", flush=True)
                raise
            print(f"[{number}/{len(plan)}] {variant} seed {seed}: failed (exit {stop.code}); left out", flush=True)
            failed.append(f"{variant} seed {seed}")
            continue
        print(f"[{number}/{len(plan)}] {variant} seed {seed}: {seconds:.0f} s", flush=True)
        report(out, variants, args.seeds, command, args.reference)
    if not any(finished(directory) for _, _, directory, _, _ in plan):
        raise StudyFailed(f"every run of the study failed ({len(failed)} of {len(plan)}: "
                          f"{', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''}); each one's error is "
                          f"above, nothing to summarise in {out}")
    summary = report(out, variants, args.seeds, command, args.reference)
    print("\n" + (out / "summary.md").read_text())
    print(f"written: {out / 'summary.md'}, {out / 'summary.json'}, {out / 'weights.png'}, {out / 'accuracy.png'}")
    if failed:
        print(f"note: {len(failed)} of {len(plan)} runs failed and are left out of the summary: {', '.join(failed)}")
    return summary


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
