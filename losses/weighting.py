"""Loss weighters: how the intra- and cross-modal losses are combined into the one scalar we step.

Every weighter is an nn.Module with the same small interface:

    total = weighter({"im": loss_im, "cm": loss_cm})   # in train() mode this also updates its state
    weighter.end_epoch()                                # only DWA does anything here
    weighter.weights()                                  # {"im": 1.02, "cm": 0.98}, for logging

In training mode `forward` first updates the state from the DETACHED loss values of this step, averaged
over ranks when distributed (so every rank keeps identical weights), then returns sum_k w_k * L_k with the
updated weights. In eval mode it only combines. All state lives in buffers (or, for `uncertainty`, a
parameter), so it is saved with `state_dict()` and a resumed run continues bit-exactly. Keep a weighter on
the same device as the losses (`objective.to(device)`).

Pick one by config name from the plain dict WEIGHTERS with `build_weighter(cfg, names)`.
"""

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from utils.distributed import all_reduce_mean
from utils.errors import ConfigError

# The `weighting` config section: every key and its default. A weighter reads only the keys it needs.
DEFAULTS = {
    "name": "convergence",
    "static_weights": None,  # static: one float per loss; None = all 1
    "alpha": 0.05,  # adacrossnet: slope of sigmoid(alpha * d)
    "beta": 0.95,  # adacrossnet: EWMA of lambda; convergence: EWMA of the weights
    "temperature": 0.1,  # convergence: softmax temperature over the rates
    "warmup_steps": 500,  # convergence: steps with the weights held at 1 (>= window)
    "window": 200,  # convergence: rate = ema(t) / ema(t - window)
    "loss_ema": 0.98,  # convergence: EWMA coefficient of the loss values
    "dwa_temperature": 2.0,  # dwa: T in exp(r_k / T)
}


class Weighter(nn.Module):
    """Base class: subclasses implement `current()` and, if they have state, `update()`."""

    def __init__(self, names: Sequence[str]):
        super().__init__()
        names = tuple(names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"weighter: loss names must be distinct and non-empty, got {names}")
        self.names = names

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = self._stack(losses)
        if self.training:
            self.update(self._observe(values))
        return (self.current().to(values) * values).sum()

    def update(self, observed: torch.Tensor) -> None:
        """Advance the state with this step's detached, rank-averaged loss values (K,) in float64."""

    def current(self) -> torch.Tensor:
        """The (K,) weights applied by the latest forward (the initial ones before any)."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        """Called by the trainer after each epoch."""

    def weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.current().detach().cpu().tolist()))

    def _stack(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if set(losses) != set(self.names):
            raise KeyError(f"weighter: expected losses {sorted(self.names)}, got {sorted(losses)}")
        return torch.stack([losses[name].reshape(()) for name in self.names])

    def _observe(self, values: torch.Tensor) -> torch.Tensor:
        # float64: the state is updated hundreds of thousands of times; averaged on the losses' device
        # (NCCL wants CUDA tensors), then moved to where the state lives.
        observed = all_reduce_mean(values.detach().to(torch.float64))
        state = next(iter(self.buffers()), None)
        return observed if state is None else observed.to(state.device)


class StaticWeighter(Weighter):
    """Fixed weights from the config (CrossPoint: 1 and 1)."""

    def __init__(self, names: Sequence[str], weights: Sequence[float] | None = None):
        super().__init__(names)
        weights = [1.0] * len(self.names) if weights is None else list(weights)
        if len(weights) != len(self.names):
            raise ValueError(f"static weighter: {len(weights)} weights for losses {self.names}")
        self.register_buffer("w", torch.tensor(weights, dtype=torch.float64))

    def current(self) -> torch.Tensor:
        return self.w

    @classmethod
    def from_config(cls, cfg: Mapping, names: Sequence[str]) -> "StaticWeighter":
        weights = cfg["static_weights"]
        if weights is not None:
            if not isinstance(weights, Sequence) or len(weights) != len(names):
                raise ConfigError(f"weighting.static_weights: need a list of {len(names)} floats, got {weights!r}")
            weights = [_float(w, "weighting.static_weights", low=0.0) for w in weights]
        return cls(names, weights)


class AdaCrossNetWeighter(Weighter):
    """AdaCrossNet's published rule, reproduced exactly as their train.py runs it.

    Every iteration, with detached loss values: d_k = L_k(t) - L_k(t-1) (L_k(0) = 0),
    lambda_k <- beta * lambda_k + (1 - beta) * sigmoid(alpha * d_k), lambda_k(0) = 1, and
    total = sum_k lambda_k L_k with the updated lambdas.

    It collapses to the constant 1/2 for every loss. Per-step loss changes are small (|d| ~ 1e-2), so
    sigmoid(alpha * d) = 1/2 + alpha * d / 4 + ... = 1/2 +- ~1e-4 with alpha = 0.05; the EWMA forgets the
    initial 1 as beta^t (0.95^150 ~ 5e-4). After a couple of hundred steps both lambdas sit at 0.5 within
    ~1e-4 whatever the losses do: the same for a loss that converges fast and one that converges slowly.
    Kept as the faithful baseline; `convergence` is the rule the paper describes.
    """

    def __init__(self, names: Sequence[str], alpha: float = 0.05, beta: float = 0.95):
        super().__init__(names)
        self.alpha, self.beta = alpha, beta
        self.register_buffer("lam", torch.ones(len(self.names), dtype=torch.float64))
        self.register_buffer("prev", torch.zeros(len(self.names), dtype=torch.float64))

    def update(self, observed: torch.Tensor) -> None:
        d = observed - self.prev
        self.lam.mul_(self.beta).add_((1 - self.beta) * torch.sigmoid(self.alpha * d))
        self.prev.copy_(observed)

    def current(self) -> torch.Tensor:
        return self.lam

    @classmethod
    def from_config(cls, cfg: Mapping, names: Sequence[str]) -> "AdaCrossNetWeighter":
        return cls(names, alpha=_float(cfg["alpha"], "weighting.alpha"), beta=_beta(cfg))


class ConvergenceWeighter(Weighter):
    """Weights that follow each loss's recent convergence rate: the slower a loss converges, the more weight.

    Each step:
      1. ema_k <- g * ema_k + (1 - g) * L_k  (g = loss_ema; ema starts at the first value, so no bias).
         Smoothing before taking ratios: one step's NT-Xent is noisy, and a ratio of raw values would
         amplify that noise.
      2. rate_k = ema_k(t) / ema_k(t - window), read from a ring buffer of the last `window` emas.
         A ratio is scale-free, so a loss of 8 and one of 0.5 are compared on how fast they shrink,
         not on their size; measuring over a window (not step to step, as the published rule does)
         turns the tiny per-step change into a signal that stands above the noise. rate ~ 1: the loss
         has stopped improving; rate << 1: it is converging fast; rate > 1: it is getting worse.
      3. target = K * softmax(rate / temperature): as in DWA, weights sum to K, so the total stays on the
         scale of the unweighted sum (the learning rate keeps its meaning) and a loss whose rate is
         closer to 1 (or above) gets more weight. The temperature sets the sensitivity: a rate gap of
         `temperature` is a factor e between two weights. Rate gaps over a window of 200 steps are
         ~0.05-0.3 while losses still fall fast, hence the default of 0.1 (a gap of 0.14, e.g. 1% vs 0.2%
         decrease per 10 steps, gives weights 0.4 / 1.6).
      4. w <- beta * w + (1 - beta) * target, renormalised to sum K: the EWMA the paper describes, so the
         weights move smoothly; renormalising only removes rounding drift.
    During the first `warmup_steps` (>= window, so a rate exists) the weights stay at 1: the early
    emas are dominated by the initial transient. The weights are only constant if the rates are equal,
    i.e. when the losses really converge at the same rate; the losses must be positive (NT-Xent is).
    """

    def __init__(
        self,
        names: Sequence[str],
        temperature: float = 0.1,
        beta: float = 0.95,
        window: int = 200,
        warmup_steps: int = 500,
        loss_ema: float = 0.98,
    ):
        super().__init__(names)
        if window < 1 or warmup_steps < window:
            raise ValueError(f"convergence weighter: need 1 <= window <= warmup_steps, got {window}, {warmup_steps}")
        self.temperature, self.beta, self.loss_ema = temperature, beta, loss_ema
        self.window, self.warmup_steps = window, warmup_steps
        k = len(self.names)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("ema", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("history", torch.zeros(window, k, dtype=torch.float64))
        self.register_buffer("w", torch.ones(k, dtype=torch.float64))

    def update(self, observed: torch.Tensor) -> None:
        # Tensor ops only, with the step counter on the device: a Python int of it would sync every step.
        # Both branches are computed and torch.where picks one, so the values are those of the if/else form.
        self.step += 1
        smoothed = self.ema * self.loss_ema + (1 - self.loss_ema) * observed
        self.ema.copy_(torch.where(self.step == 1, observed, smoothed))
        slot = ((self.step - 1) % self.window).view(1)  # holds ema(step - window) until overwritten below
        old = self.history.index_select(0, slot)[0]
        self.history.index_copy_(0, slot, self.ema.unsqueeze(0))
        rate = self.ema / old.clamp_min(1e-12)
        target = len(self.names) * torch.softmax(rate / self.temperature, dim=0)
        w = self.w * self.beta + (1 - self.beta) * target
        w = w * (len(self.names) / w.sum())
        self.w.copy_(torch.where(self.step > self.warmup_steps, w, self.w))

    def current(self) -> torch.Tensor:
        return self.w

    def rates(self) -> torch.Tensor:
        """The latest rates ema(t) / ema(t - window) (ones before the first `window` steps), for logging."""
        old = self.history.index_select(0, (self.step % self.window).view(1))[0]
        return torch.where(self.step < self.window, torch.ones_like(self.ema), self.ema / old.clamp_min(1e-12))

    @classmethod
    def from_config(cls, cfg: Mapping, names: Sequence[str]) -> "ConvergenceWeighter":
        window = _int(cfg["window"], "weighting.window", low=1)
        warmup = _int(cfg["warmup_steps"], "weighting.warmup_steps", low=0)
        if warmup < window:
            raise ConfigError(f"weighting.warmup_steps: must be >= weighting.window ({window}), got {warmup}")
        loss_ema = _float(cfg["loss_ema"], "weighting.loss_ema", low=0.0)
        if loss_ema >= 1:
            raise ConfigError(f"weighting.loss_ema: must be in [0, 1), got {loss_ema}")
        temperature = _float(cfg["temperature"], "weighting.temperature", low=0.0, strict=True)
        return cls(names, temperature, _beta(cfg), window, warmup, loss_ema)


class DWAWeighter(Weighter):
    """Dynamic Weight Average (Liu et al., CVPR 2019), on epoch means of the losses.

    w_k = K * exp(r_k / T) / sum_i exp(r_i / T), r_k = L_k(e-1) / L_k(e-2), where L_k(e) is the mean of
    loss k over epoch e; w = 1 during the first two epochs. forward() accumulates the epoch sums,
    end_epoch() turns them into means and computes the next epoch's weights.
    """

    def __init__(self, names: Sequence[str], temperature: float = 2.0):
        super().__init__(names)
        self.temperature = temperature
        k = len(self.names)
        self.register_buffer("epoch_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("prev1", torch.zeros(k, dtype=torch.float64))  # mean of the last epoch
        self.register_buffer("prev2", torch.zeros(k, dtype=torch.float64))  # mean of the one before
        self.register_buffer("epochs", torch.zeros((), dtype=torch.int64))
        self.register_buffer("w", torch.ones(k, dtype=torch.float64))

    def update(self, observed: torch.Tensor) -> None:
        self.epoch_sum.add_(observed)
        self.epoch_steps += 1

    def end_epoch(self) -> None:
        if int(self.epoch_steps) == 0:
            return  # no training step this epoch: nothing to average
        self.prev2.copy_(self.prev1)
        self.prev1.copy_(self.epoch_sum / self.epoch_steps)
        self.epoch_sum.zero_()
        self.epoch_steps.zero_()
        self.epochs += 1
        if int(self.epochs) >= 2:
            rate = self.prev1 / self.prev2.clamp_min(1e-12)
            self.w.copy_(len(self.names) * torch.softmax(rate / self.temperature, dim=0))

    def current(self) -> torch.Tensor:
        return self.w

    @classmethod
    def from_config(cls, cfg: Mapping, names: Sequence[str]) -> "DWAWeighter":
        return cls(names, _float(cfg["dwa_temperature"], "weighting.dwa_temperature", low=0.0, strict=True))


class UncertaintyWeighter(Weighter):
    """Homoscedastic uncertainty weighting (Kendall et al., CVPR 2018): total = sum_k exp(-s_k) L_k + s_k.

    s_k = log sigma_k^2 is learned with the model (init 0, so weights start at 1); its optimum for a
    fixed L_k is s_k = log L_k. Put the objective's parameters in the optimiser, without weight decay.
    weights() reports exp(-s_k).

    Under DDP the gradient of s_k, 1 - exp(-s_k) L_k, would differ from rank to rank (each sees its own
    L_k), and the objective is usually not inside the DDP wrapper that averages gradients. So in training
    mode the s-part of the total uses the rank-averaged detached L_k: the value is unchanged, the
    gradient reaching the model is still exp(-s_k) per loss, and every rank gets the same gradient for s.
    """

    def __init__(self, names: Sequence[str]):
        super().__init__(names)
        self.log_vars = nn.Parameter(torch.zeros(len(self.names)))

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = self._stack(losses)
        s = self.log_vars.to(values.device)
        precision = torch.exp(-s)
        if not self.training:
            return (precision.to(values) * values + s.to(values)).sum()
        observed = self._observe(values).to(s)
        s_part = precision * observed + s - (precision * observed).detach()  # value s, grad from mean L
        return (precision.detach().to(values) * values).sum() + s_part.sum().to(values)

    def _observe(self, values: torch.Tensor) -> torch.Tensor:
        return all_reduce_mean(values.detach().to(torch.float64))

    def current(self) -> torch.Tensor:
        return torch.exp(-self.log_vars.detach())


WEIGHTERS = {
    "static": StaticWeighter,
    "adacrossnet": AdaCrossNetWeighter,
    "convergence": ConvergenceWeighter,
    "dwa": DWAWeighter,
    "uncertainty": UncertaintyWeighter,
}


def build_weighter(cfg: Mapping, names: Sequence[str]) -> Weighter:
    """The weighter named by cfg["name"] (see DEFAULTS for every key), over the losses `names`."""
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"weighting: unknown keys {unknown}; valid keys are {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **cfg}
    name = cfg["name"]
    if name not in WEIGHTERS:
        raise ConfigError(f"weighting.name: {name!r} is not one of {sorted(WEIGHTERS)}")
    cls = WEIGHTERS[name]
    return cls.from_config(cfg, names) if hasattr(cls, "from_config") else cls(names)


def _float(value, key: str, low: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: need a number, got {value!r}")
    if low is not None and (value < low or (strict and value == low)):
        raise ConfigError(f"{key}: must be {'>' if strict else '>='} {low}, got {value}")
    return float(value)


def _int(value, key: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}: need an integer >= {low}, got {value!r}")
    return value


def _beta(cfg: Mapping) -> float:
    beta = _float(cfg["beta"], "weighting.beta", low=0.0)
    if beta >= 1:
        raise ConfigError(f"weighting.beta: must be in [0, 1), got {beta}")
    return beta
