"""What the three downstream scripts share: their command line, the pretrained-encoder report, the
multi-seed runner and a few small helpers. Nothing here knows about a particular task.

Every script is run from the repository root as a module (`python -m downstream.classification.main`).
The guard that says so when a script is run as a file lives at the top of each script, not here: a script run
as a file cannot import this module (the repository root is not on its path), which is exactly the case the
guard reports.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from engine.trainer import LAST_CHECKPOINT, Evaluation, Runtime, Trainer
from utils import distributed
from utils.checkpoint import LoadReport, load_pretrained_encoder
from utils.config import Config, load_config
from utils.errors import CheckpointError, ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
NOT_METRICS = {"selected_epoch"}  # scalars of a test result that are bookkeeping, not measurements


# ----------------------------------------------------------------------------------------- command line
Switch = tuple[str, str, str]  # (flag, the config override it stands for, help)


def parse_args(module: str, description: str, defaults: Path, argv=None,
               switches: Sequence[Switch] = ()) -> argparse.Namespace:
    """The command line every downstream script takes (`module`: the script's dotted name, for the usage
    line). A script's own on/off flags are `switches`: each stands for a config override, added after the
    others so that it wins, and validated like them."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(defaults), help=f"YAML config (default: {defaults.name})")
    parser.add_argument("--checkpoint", help="pretrained weights: train.py's best.pt / last.pt, or a released "
                                             "CrossPoint / AdaCrossNet state_dict (same as checkpoint=...)")
    parser.add_argument("--data-root", help="folder holding the dataset folders (same as data.root=...)")
    parser.add_argument("--out", help="run directory (same as out=...)")
    parser.add_argument("--seeds", nargs="+", metavar="S",
                        help="run once per seed into <out>/seed_<S>/ and report mean +- std over the seeds")
    parser.add_argument("--resume", help="'auto': continue the run in --out where it stopped (fine-tuning: from its "
                                         "last.pt; classification: keep a finished run of the same config), or a "
                                         "last.pt path")
    for flag, override, help_text in switches:
        parser.add_argument(flag, action="store_true", help=f"{help_text} (same as {override})")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. optim.lr=0.05")
    args = parser.parse_args(argv)
    # `--seeds 0 1 optim.lr=0.05`: argparse hands the overrides that follow --seeds to --seeds
    seeds, overrides = [], []
    for token in args.seeds or []:
        (overrides if "=" in token else seeds).append(token)
    try:
        args.seeds = [int(s) for s in seeds] or None
    except ValueError:
        raise ConfigError(f"--seeds: expected integers, got {' '.join(seeds)}") from None
    args.overrides = overrides + list(args.overrides)
    args.overrides += [override for flag, override, _ in switches
                       if getattr(args, flag.lstrip("-").replace("-", "_"))]
    return args


def load_script_config(args: argparse.Namespace, defaults: Path) -> Config:
    """The user's config over the script's defaults (which validate it), then overrides, then the flags.

    Paths given as flags are taken verbatim (never parsed as YAML, where `on` or `1e5` would change type).
    """
    cfg = load_config(args.config, args.overrides, defaults=defaults)
    for key, value in (("checkpoint", args.checkpoint), ("out", args.out), ("resume", args.resume)):
        if value is not None:
            cfg[key] = value
    if args.data_root is not None:
        cfg.data["root"] = args.data_root
    return cfg


def script_main(module: str, description: str, defaults: Path, run_one: Callable[[Config], Mapping], argv=None,
                switches: Sequence[Switch] = ()) -> Mapping:
    """The whole main() of a downstream script: parse, load the config, run once or once per seed."""
    args = parse_args(module, description, defaults, argv, switches)
    cfg = load_script_config(args, defaults)
    try:
        return run_seeds(cfg, run_one, args.seeds)
    finally:
        distributed.cleanup()


# ----------------------------------------------------------------------------------- pretrained weights
def load_encoder_weights(model: nn.Module, path: str | os.PathLike, *, require_all: bool = False) -> LoadReport:
    """Load a pretrained point encoder into `model` (names mapped, shapes checked, layer by layer) and print
    the report. With `require_all` every tensor of `model` must be loaded (frozen-feature evaluation: a layer
    left at its random initial value would silently change what is measured); otherwise a CheckpointError."""
    report = load_pretrained_encoder(model, path, log=None)
    if distributed.is_main_process():
        print(report.summary())
    missing = [k for k in report.missing if not k.endswith("num_batches_tracked")]
    if require_all and missing:
        mismatch = f"; e.g. {report.mismatched[0][0]} is {report.mismatched[0][1]} there, " \
                   f"{report.mismatched[0][2]} here" if report.mismatched else ""
        layers = sorted({k.split(".")[0] for k in missing})
        raise CheckpointError(f"{path}: does not fit the {report.model} encoder: {len(missing)} tensors "
                              f"(layers {', '.join(layers)}) would keep their random values{mismatch}; check "
                              f"model.name and model.emb_dims")
    return report


def report_dict(report: LoadReport) -> dict:
    """A LoadReport as JSON for metrics.json."""
    def count(keys):
        return sum(not k.endswith("num_batches_tracked") for k in keys)

    return {"source": report.source, "layout": report.layout, "model": report.model,
            "loaded_tensors": count(report.loaded), "model_tensors": count(report.loaded) + count(report.missing),
            "loaded": report.loaded, "missing": report.missing, "unexpected": report.unexpected,
            "mismatched": [{"key": k, "checkpoint": list(a), "model": list(b)} for k, a, b in report.mismatched],
            "left_out": report.left_out}


# ------------------------------------------------------------------------------------------ fine-tuning
class PointSegmentation(nn.Module):
    """A segmentation model and its training loss, as the Trainer wants them: forward(batch) ->
    {"loss": label-smoothed cross-entropy over all points, "acc": point accuracy}.

    Batches hold `points` (B, N, C) and `seg` (B, N); with `with_category` also `category` (B,), passed to the
    model (part segmentation). Label smoothing as DGCNN defines it: the true class gets 1 - eps and each of the
    other P - 1 classes eps / (P - 1). (That is PyTorch's `label_smoothing` of eps * P / (P - 1), which spreads
    its value over all P classes, the true one included.)
    """

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0, with_category: bool = False):
        super().__init__()
        if not 0.0 <= label_smoothing < 0.5:
            raise ConfigError(f"loss.label_smoothing {label_smoothing}: expected a value in [0, 0.5)")
        self.model, self.label_smoothing, self.with_category = model, float(label_smoothing), with_category

    def logits(self, batch: Mapping) -> torch.Tensor:
        if self.with_category:
            return self.model(batch["points"], batch["category"])
        return self.model(batch["points"])

    def forward(self, batch: Mapping) -> dict[str, torch.Tensor]:
        logits, seg = self.logits(batch), batch["seg"]
        classes = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, classes).float(), seg.reshape(-1),
                               label_smoothing=self.label_smoothing * classes / (classes - 1))
        acc = (logits.detach().argmax(-1) == seg).float().mean()
        return {"loss": loss, "acc": acc}


def predict(module: PointSegmentation, loader: DataLoader, runtime: Runtime, desc: str):
    """Yield (float logits on the device, batch on the device) for every batch, in eval mode, no gradients;
    the module's previous mode is restored afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc=desc, leave=False, mininterval=1.0 if os.isatty(2) else 30.0):
                batch = {k: v.to(runtime.device, non_blocking=True) for k, v in batch.items()}
                with torch.autocast(runtime.device.type, dtype=runtime.amp_dtype or torch.float32,
                                    enabled=runtime.amp_dtype is not None):
                    logits = module.logits(batch)
                yield logits.float(), batch
    finally:
        module.train(was_training)


def initial_weights(cfg: Config, model: nn.Module, runtime: Runtime) -> LoadReport | None:
    """Load `cfg.checkpoint`'s encoder into `model` where names map and shapes match (report printed), or say
    that the model starts from scratch. Called before any dataset is read, so a bad checkpoint fails at once."""
    if cfg.checkpoint:
        return load_encoder_weights(model, cfg.checkpoint)
    if runtime.is_main:
        print(f"no --checkpoint: {type(model).__name__} is trained from scratch (seed {cfg.seed})")
    return None


def fine_tune(cfg: Config, runtime: Runtime, module: PointSegmentation, report: LoadReport | None, train_set,
              evaluation: Evaluation) -> dict:
    """Record where the weights came from in metrics.json, optionally score the untrained model on the
    validation split (`eval_initial`), then hand over to the Trainer (which resumes, validates, keeps best.pt
    and tests once on it). Returns Trainer.fit()'s result."""
    run_dir = Path(cfg.out)
    resuming = bool(cfg.resume) and (cfg.resume != "auto" or (run_dir / LAST_CHECKPOINT).exists())
    if runtime.is_main and not resuming:  # a resumed run keeps what its first start recorded
        metrics = {"checkpoint": cfg.checkpoint, "load_report": report_dict(report) if report else None}
        if cfg.eval_initial:
            module.to(runtime.device)
            metrics["initial_val"] = evaluation.validate(module)
            print("before training, val: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics["initial_val"].items()))
        write_json(metrics, run_dir / "metrics.json")
    trainer = Trainer(cfg, runtime, module, train_set, evaluation, run_dir)
    return trainer.fit()


# -------------------------------------------------------------------------------------------- helpers
class ScaleShift:
    """DGCNN's training augmentation (`translate_pointcloud`): per-axis scale U(low, high) then per-axis shift
    U(-shift, shift) of the xyz columns; further columns pass through. `t(points, rng)` as datasets.transforms."""

    def __init__(self, low: float = 2.0 / 3.0, high: float = 1.5, shift: float = 0.2):
        self.low, self.high, self.shift = float(low), float(high), float(shift)

    def __call__(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.array(points, dtype=np.float32, copy=True)
        scale = rng.uniform(self.low, self.high, size=3).astype(np.float32)
        shift = rng.uniform(-self.shift, self.shift, size=3).astype(np.float32)
        out[:, :3] = out[:, :3] * scale + shift
        return out

    def __repr__(self) -> str:
        return f"ScaleShift({self.low:.4g}, {self.high:.4g}, {self.shift:.4g})"


def eval_loader(dataset, cfg: Config) -> DataLoader:
    """In order, no augmentation, every sample (no drop_last)."""
    return DataLoader(dataset, batch_size=cfg.optim.batch_size, shuffle=False,
                      num_workers=cfg.train.num_workers, pin_memory=cfg.device != "cpu" and torch.cuda.is_available())


def write_json(data: Any, path: str | os.PathLike) -> None:
    """Atomically, with NaN written as null (strict JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2))
    os.replace(tmp, path)


def update_metrics(path: str | os.PathLike, **entries) -> dict:
    """Merge `entries` into a run's metrics.json (created when absent)."""
    path = Path(path)
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics.update(entries)
    write_json(metrics, path)
    return metrics


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def pct(value: float | None) -> str:
    return "   n/a" if value is None or not math.isfinite(value) else f"{100 * value:6.2f}"


# ---------------------------------------------------------------------------------- multi-seed runner
def run_seeds(cfg: Config, run_one: Callable[[Config], Mapping], seeds: list[int] | None) -> Mapping:
    """Run `run_one(cfg)` (which returns the run's test metrics) once, or once per seed.

    No seeds or one seed: one plain run into `cfg.out`. Several: run k writes into `<out>/seed_<s>/`, then
    `<out>/summary.json` and `<out>/summary.md` tabulate every scalar test metric as mean +- sample std (n-1)
    with the per-seed values. `resume=auto` resumes each seed's own run directory.
    """
    if not seeds or len(seeds) == 1:
        if seeds:
            cfg["seed"] = seeds[0]
        return run_one(cfg)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: repeated seed in {' '.join(map(str, seeds))}")
    if cfg.resume not in (None, "auto"):
        raise ConfigError(f"resume '{cfg.resume}' names one run; with several seeds use resume=auto (each seed "
                          f"continues from <out>/seed_<s>/last.pt)")
    out = Path(cfg.out)
    results = {}
    for number, seed in enumerate(seeds, 1):
        run_cfg = Config(cfg.to_dict())
        run_cfg["seed"], run_cfg["out"] = seed, str(out / f"seed_{seed}")
        if distributed.is_main_process():
            print(f"\n===== seed {seed} ({number}/{len(seeds)}) -> {run_cfg.out}", flush=True)
        results[seed] = run_one(run_cfg)
    summary = summarize(results)
    if distributed.is_main_process():
        table = summary_markdown(summary)
        write_json(summary, out / "summary.json")
        (out / "summary.md").write_text(table + "\n")
        print(f"\n{table}\n\nsummary: {out / 'summary.md'}, {out / 'summary.json'}")
    return summary


def flatten_scalars(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """{'a': {'b': 0.5}, 'c': [1, 2], 'n': 'x'} -> {'a/b': 0.5}: numbers only (lists and strings left out)."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_scalars(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in NOT_METRICS:
            flat[name] = float(value)
    return flat


def summarize(results: Mapping[int, Mapping]) -> dict:
    """{seed: test metrics} -> {metric: {mean, std, n, values: {seed: value}}}; std is the sample std (n-1).

    A metric missing (or NaN) in some runs is summarised over the runs that have it (n says how many).
    """
    per_seed = {seed: flatten_scalars(metrics) for seed, metrics in results.items()}
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
