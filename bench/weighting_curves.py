"""What each loss weighter does on synthetic loss curves (no model, no data; a few seconds on CPU).

    python -m bench.weighting_curves [--steps 3000] [--noise 0.02] [--every 250] [--set window=50 warmup_steps=100]

Curves: L_im(t) = 5 exp(-t/50) + 1 (converges fast, then flat), L_cm(t) = 5 exp(-t/2000) + 1 (converges
slowly), each times (1 + noise * N(0, 1)). "swap": the per-step decay rates 0.1% / 0.02% of the two losses
exchange at t = steps/2. DWA sees epochs of `--epoch-steps` steps.
"""

import argparse
import math

import numpy as np
import torch
import yaml

from losses.weighting import WEIGHTERS, build_weighter
from utils.config import part_keys

NAMES = ("im", "cm")


def exp_curves(steps: int, noise: float, seed: int = 0) -> np.ndarray:
    """(steps, 2) values of L_im, L_cm at t = 1..steps."""
    t = np.arange(1, steps + 1, dtype=np.float64)
    clean = np.stack([5 * np.exp(-t / 50) + 1, 5 * np.exp(-t / 2000) + 1], axis=1)
    return clean * (1 + noise * np.random.default_rng(seed).standard_normal(clean.shape))


def swap_curves(steps: int, noise: float, seed: int = 0) -> np.ndarray:
    """L_k(t) = 6 exp(-sum of rho_k); rho = (0.1%, 0.02%) per step, swapped to (0.02%, 0.1%) at steps/2."""
    rho = np.where(np.arange(steps)[:, None] < steps // 2, [1e-3, 2e-4], [2e-4, 1e-3])
    clean = 6 * np.exp(-np.cumsum(rho, axis=0))
    return clean * (1 + noise * np.random.default_rng(seed).standard_normal(clean.shape))


def run(name: str, curves: np.ndarray, epoch_steps: int, cfg: dict | None = None) -> list[dict[str, float]]:
    """Feed the curves to weighter `name` (training mode); the weights after each step. Of `cfg`, the keys
    that weighter has apply."""
    own = part_keys(WEIGHTERS[name]).keys
    weighter = build_weighter({"name": name, **{k: v for k, v in (cfg or {}).items() if k in own}}, NAMES).train()
    optimiser = torch.optim.SGD(weighter.parameters(), lr=0.01) if name == "uncertainty" else None
    history = []
    for step, row in enumerate(curves, start=1):
        total = weighter({k: torch.tensor(float(v)) for k, v in zip(NAMES, row)})
        if optimiser is not None:
            optimiser.zero_grad()
            total.backward()
            optimiser.step()
        history.append(weighter.weights())
        if step % epoch_steps == 0:
            weighter.end_epoch()
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--epoch-steps", type=int, default=100)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="weighting keys, applied to each weighter that has them")
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    print(f"weighting config overrides (each weighter takes the keys it has): {overrides}")
    for label, curves in (("exp", exp_curves(args.steps, args.noise)), ("swap", swap_curves(args.steps, args.noise))):
        print(f"\ncurves '{label}', noise {args.noise}: weights w_im / w_cm after step t")
        steps = list(range(args.every, args.steps + 1, args.every))
        print(f"{'t':>12} " + " ".join(f"{t:>11d}" for t in steps))
        print(f"{'L_im / L_cm':>12} " + " ".join(f"{curves[t - 1, 0]:5.2f}/{curves[t - 1, 1]:5.2f}" for t in steps))
        for name in ("static", "adacrossnet", "convergence", "dwa", "uncertainty"):
            history = run(name, curves, args.epoch_steps, overrides)
            cells = [f"{history[t - 1]['im']:5.3f}/{history[t - 1]['cm']:5.3f}" for t in steps]
            print(f"{name:>12} " + " ".join(f"{c:>11}" for c in cells))
        lam = run("adacrossnet", curves, args.epoch_steps, overrides)[-1]
        print(f"adacrossnet after {args.steps} steps: |lambda - 0.5| = "
              f"{max(abs(v - 0.5) for v in lam.values()):.1e}; uncertainty optimum exp(-s) = 1/L: "
              f"{1 / curves[-1, 0]:.3f}/{1 / curves[-1, 1]:.3f}; convergence weights sum to "
              f"{math.fsum(run('convergence', curves, args.epoch_steps, overrides)[-1].values()):.6f}")


if __name__ == "__main__":
    main()
