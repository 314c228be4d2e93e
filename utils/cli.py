"""The one command line of every entry script: a config file, flags that stand for config keys, overrides.

    script [--config FILE] [--data-root DIR] [--out DIR] [--resume auto|PATH] [--overwrite] [--checkpoint PATH]
           [--seeds S ...] [--<switch>] [key.sub=value ...]

Each flag is a config key under another name (`--data-root` is `data.root`): flags are applied after the
overrides, their values taken verbatim (a path is never parsed as YAML), and validated like any override.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from utils.config import Config, load_config
from utils.errors import ConfigError

# flag -> (config key, help)
PATH_FLAGS = {
    "--data-root": ("data.root", "folder holding the dataset folders"),
    "--out": ("out", "run directory"),
    "--resume": ("resume", "'auto': continue the run in --out where it stopped, or a last.pt path"),
    "--checkpoint": ("checkpoint", "pretrained weights: train.py's best.pt / last.pt, or a released CrossPoint / "
                                   "AdaCrossNet state_dict"),
}
Switch = tuple[str, str, str]  # (flag, the config override it stands for, help)
OVERWRITE: Switch = ("--overwrite", "overwrite=true", "start from scratch in --out even though it holds another "
                     "run: that run's files (metrics.json, curves, checkpoints, tensorboard/) are deleted first")


def parse_config(prog: str, description: str, default_config: Path | None, schema: type, argv=None,
                 flags: Sequence[str] = ("--data-root", "--out", "--resume"), switches: Sequence[Switch] = (),
                 seeds: bool = False) -> tuple[Config, list[int] | None]:
    """Parse `argv` and load the config it describes -> (config, the --seeds given or None)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    default_name = default_config.name if default_config is not None else "the built-in defaults"
    parser.add_argument("--config", default=default_config, help=f"YAML config (default: {default_name})")
    for flag in flags:
        key, help_text = PATH_FLAGS[flag]
        parser.add_argument(flag, help=f"{help_text} (same as {key}=...)")
    if seeds:
        parser.add_argument("--seeds", nargs="+", metavar="S",
                            help="run once per seed into <out>/seed_<S>/ and report mean +- std over the seeds")
    switches = (OVERWRITE, *switches)
    for flag, override, help_text in switches:
        parser.add_argument(flag, action="store_true", help=f"{help_text} (same as {override})")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. optim.lr=5e-4")
    args = parser.parse_intermixed_args(argv)  # overrides may come before and after the flags
    overrides, seed_list = list(args.overrides), None
    if seeds and args.seeds:
        # `--seeds 0 1 optim.lr=0.05`: argparse hands the overrides that follow --seeds to --seeds
        given = [token for token in args.seeds if "=" not in token]
        overrides = [token for token in args.seeds if "=" in token] + overrides
        try:
            seed_list = [int(s) for s in given]
        except ValueError:
            raise ConfigError(f"--seeds: expected integers, got {' '.join(given)}") from None
        if len(set(seed_list)) != len(seed_list):
            raise ConfigError(f"--seeds: repeated seed in {' '.join(given)}")
        if any(s < 0 for s in seed_list):
            raise ConfigError(f"--seeds: seeds must be >= 0, got {' '.join(given)}")
    overrides += [override for flag, override, _ in switches if getattr(args, _attribute(flag))]
    verbatim = {PATH_FLAGS[flag][0]: getattr(args, _attribute(flag)) for flag in flags
                if getattr(args, _attribute(flag)) is not None}
    return load_config(args.config, overrides, schema=schema, verbatim=verbatim), seed_list


def _attribute(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")
