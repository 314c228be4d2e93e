"""What the three downstream scripts share: their main(), the multi-seed runner and its summary table.

Every script is run from the repository root as a module (`python -m downstream.classification.main`).
The guard that says so when a script is run as a file lives at the top of each script, not here: a script run
as a file cannot import this module (the repository root is not on its path), which is exactly the case the
guard reports.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from engine.runtime import prepare_fresh_run_dir, refuse_another_run
from tasks.classification import flatten_scalars
from utils import distributed
from utils.cli import Switch, parse_config
from utils.config import Config
from utils.errors import ConfigError
from utils.files import atomic_write_text, write_json

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
NOT_METRICS = {"selected_epoch"}  # scalars of a test result that are bookkeeping, not measurements


def script_main(module: str, description: str, default_config: Path, schema: type,
                run_one: Callable[[Config], Mapping], argv=None, switches: Sequence[Switch] = ()) -> Mapping:
    """The whole main() of a downstream script: parse, load the config, run once or once per seed."""
    cfg, seeds = parse_config(f"python -m {module}", description, default_config, schema, argv,
                              flags=("--checkpoint", "--data-root", "--out", "--resume"), switches=switches,
                              seeds=True)
    try:
        return run_seeds(cfg, run_one, seeds)
    finally:
        distributed.cleanup()


def pct(value: float | None) -> str:
    return "   n/a" if value is None or not math.isfinite(value) else f"{100 * value:6.2f}"


def prepare_driver_dirs(cfg: Config, run_dirs: Sequence[Path]) -> None:
    """For a driver of several runs (one per seed, per 6-fold area) into `cfg.out`: a fresh start checks every
    run's directory before the first run starts (not after hours, at the seed whose directory holds another
    run), and with overwrite deletes the driver's own files in `out` (its summary of the replaced runs)."""
    if cfg.resume is not None:
        return
    refuse_another_run([Path(cfg.out), *run_dirs], cfg.overwrite)
    if distributed.is_main_process():
        prepare_fresh_run_dir(cfg.out, cfg.overwrite)


# ---------------------------------------------------------------------------------- multi-seed runner
def run_seeds(cfg: Config, run_one: Callable[[Config], Mapping], seeds: list[int] | None) -> Mapping:
    """Run `run_one(cfg)` (which returns the run's test metrics) once, or once per seed.

    No seeds or one seed: one plain run into `cfg.out`. Several: run k writes into `<out>/seed_<s>/`, then
    `<out>/summary.json` and `<out>/summary.md` tabulate every scalar test metric as mean +- sample std (n-1)
    with the per-seed values. `resume=auto` resumes each seed's own run directory. A fresh start refuses, before
    the first run, when `out` or a seed's directory holds another run (overwrite=true replaces them).
    """
    if not seeds or len(seeds) == 1:
        if seeds:
            cfg["seed"] = seeds[0]
        return run_one(with_seed_checkpoint(cfg))
    if cfg.resume not in (None, "auto"):
        raise ConfigError(f"resume '{cfg.resume}' names one run; with several seeds use resume=auto (each seed "
                          f"continues from <out>/seed_<s>/last.pt)")
    out = Path(cfg.out)
    prepare_driver_dirs(cfg, [out / f"seed_{seed}" for seed in seeds])
    results = {}
    for number, seed in enumerate(seeds, 1):
        run_cfg = Config(cfg.to_dict())
        run_cfg["seed"], run_cfg["out"] = seed, str(out / f"seed_{seed}")
        run_cfg = with_seed_checkpoint(run_cfg)
        if distributed.is_main_process():
            print(f"\n===== seed {seed} ({number}/{len(seeds)}) -> {run_cfg.out}", flush=True)
        results[seed] = run_one(run_cfg)
    summary = summarize(results)
    if distributed.is_main_process():
        table = summary_markdown(summary)
        write_json(summary, out / "summary.json")
        atomic_write_text(out / "summary.md", table + "\n")
        print(f"\n{table}\n\nsummary: {out / 'summary.md'}, {out / 'summary.json'}")
    return summary


def with_seed_checkpoint(cfg: Config) -> Config:
    """`checkpoint` with `{seed}` replaced by the run's seed: one pretraining per seed, e.g.
    `--checkpoint 'runs/pretrain/seed_{seed}/best.pt' --seeds 0 1 2`."""
    if isinstance(cfg.get("checkpoint"), str) and "{seed}" in cfg.checkpoint:
        cfg["checkpoint"] = cfg.checkpoint.replace("{seed}", str(cfg.seed))
    return cfg


def summarize(results: Mapping[int, Mapping]) -> dict:
    """{seed: test metrics} -> {metric: {mean, std, n, values: {seed: value}}}; std is the sample std (n-1).

    A metric missing (or NaN) in some runs is summarised over the runs that have it (n says how many).
    """
    per_seed = {seed: flatten_scalars(metrics, skip=NOT_METRICS) for seed, metrics in results.items()}
    names = list(dict.fromkeys(name for flat in per_seed.values() for name in flat))
    table = {}
    for name in names:
        values = {seed: flat[name] for seed, flat in per_seed.items()
                  if name in flat and math.isfinite(flat[name])}
        array = np.array(list(values.values()), dtype=np.float64)
        table[name] = {"mean": float(array.mean()) if len(array) else None,
                       "std": float(array.std(ddof=1)) if len(array) > 1 else None,
                       "n": len(array), "values": {str(seed): v for seed, v in values.items()}}
    return {"seeds": [int(s) for s in results], "std": "sample standard deviation over seeds (ddof=1, n-1)",
            "metrics": table}


def summary_markdown(summary: Mapping) -> str:
    seeds = summary["seeds"]
    lines = [f"Test metrics over {len(seeds)} seeds, in %: mean +- sample std (n-1), then each seed's value.",
             "",
             "| metric | mean +- std | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for name, row in summary["metrics"].items():
        mean_std = f"{pct(row['mean']).strip()} +- {pct(row['std']).strip()}" if row["std"] is not None \
            else pct(row["mean"]).strip()
        cells = [pct(row["values"].get(str(s))).strip() for s in seeds]
        lines.append(f"| {name} | {mean_std} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
