"""Loss weighters: how the intra- and cross-modal losses are combined into the one scalar we step.

Every weighter is an nn.Module with the same small interface:

    total = weighter({"im": loss_im, "cm": loss_cm})   # in train() mode this also updates its state
    weighter.end_epoch()                                # only DWA does anything here
    weighter.weights()                                  # {"im": 1.02, "cm": 0.98}, for logging
    weighter.attach({"head": [W], "encoder": [W']})     # the task's shared layers, once, at build time
    weighter.backward_step(total, backward)             # the trainer's backward pass, through the weighter

In training mode `forward` first updates the state from the DETACHED loss values of this step, averaged
over ranks when distributed (so every rank keeps identical weights), then returns sum_k w_k * L_k with the
updated weights (`gradnorm` instead updates in `backward_step`, where it has the gradients). In eval mode it
only combines. All state lives in buffers (or, for `uncertainty`, a
parameter), so it is saved with `state_dict()` and a resumed run continues bit-exactly. Keep a weighter on
the same device as the losses (`objective.to(device)`).

Pick one by config name from the plain dict WEIGHTERS with `build_weighter(cfg, names)`: the `weighting`
section is `{name: ..., <the keyword-only parameters of that weighter's constructor>}`. Adding a weighter is
one class plus one line in WEIGHTERS.
"""

from collections.abc import Mapping, Sequence
from typing import Annotated

import torch
from torch import nn

from utils.config import (Fraction, NonNegativeFloat, NonNegativeInt, OneOf, PositiveFloat, PositiveInt, Range,
                          build_part)
from utils.distributed import all_reduce_mean

class Weighter(nn.Module):
    """Base class: subclasses implement `current()` and, if they have state, `update()`."""

    # whether it differentiates the unscaled losses itself, whose gradients can underflow in fp16 (the
    # pretraining task then refuses fp16 autocast)
    unscaled_gradients = False

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

    def attach(self, shared_layers: Mapping[str, Sequence[torch.Tensor]]) -> None:
        """Called once by the task with the parameters of the layers both losses share, by name ("head",
        "encoder"). A weighter that needs the gradients of a shared layer keeps the one it is configured for."""

    def backward_step(self, total: torch.Tensor, backward) -> None:
        """Back-propagate this step's `total` with `backward(tensor, inputs=None)` (the trainer's, which knows
        the loss scaler). A weighter that needs gradients of the single losses overrides this."""
        backward(total)

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

    def __init__(self, names: Sequence[str], *,
                 weights: Annotated[list[float] | None, Range(ge=0)] = None):
        super().__init__(names)
        weights = [1.0] * len(self.names) if weights is None else list(weights)
        if len(weights) != len(self.names):
            raise ValueError(f"weights: one per loss {list(self.names)}, got {weights}")
        self.register_buffer("w", torch.tensor(weights, dtype=torch.float64))

    def current(self) -> torch.Tensor:
        return self.w


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

    def __init__(self, names: Sequence[str], *, alpha: float = 0.05, beta: Fraction = 0.95):
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


class ConvergenceWeighter(Weighter):
    """Weights that follow each loss's recent convergence rate: by default the slower a loss converges, the
    more weight (`direction="slower"`); `direction="faster"` gives more weight to the faster one instead.

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
         closer to 1 (or above) gets more weight. With direction "faster" the target is
         K * softmax(-rate / temperature): the loss that is shrinking fastest gets more. The temperature sets the sensitivity: a rate gap of
         `temperature` is a factor e between two weights. Rate gaps over a window of 200 steps are
         ~0.05-0.3 while losses still fall fast, hence the default of 0.1 (a gap of 0.14, e.g. 1% vs 0.2%
         decrease per 10 steps, gives weights 0.4 / 1.6).
      4. w <- beta * w + (1 - beta) * target, renormalised to sum K: the EWMA the paper describes, so the
         weights move smoothly; renormalising only removes rounding drift.
    During the first `warmup_steps` (>= window, so a rate exists) the weights stay at 1: the early
    emas are dominated by the initial transient. The weights are only constant if the rates are equal,
    i.e. when the losses really converge at the same rate; the losses must be positive (NT-Xent is).
    """

    def __init__(self, names: Sequence[str], *, temperature: PositiveFloat = 0.1, beta: Fraction = 0.95,
                 window: PositiveInt = 200, warmup_steps: NonNegativeInt = 200, loss_ema: Fraction = 0.98,
                 direction: Annotated[str, OneOf("slower", "faster")] = "slower"):
        super().__init__(names)
        if direction not in ("slower", "faster"):
            raise ValueError(f"direction must be 'slower' or 'faster', got {direction!r}")
        if warmup_steps < window:
            raise ValueError(f"warmup_steps ({warmup_steps}) must be >= window ({window}): a rate needs a "
                             f"full window of history")
        self.temperature, self.beta, self.loss_ema = temperature, beta, loss_ema
        self.window, self.warmup_steps = window, warmup_steps
        self.sign = 1.0 if direction == "slower" else -1.0
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
        target = len(self.names) * torch.softmax(self.sign * rate / self.temperature, dim=0)
        w = self.w * self.beta + (1 - self.beta) * target
        w = w * (len(self.names) / w.sum())
        self.w.copy_(torch.where(self.step > self.warmup_steps, w, self.w))

    def current(self) -> torch.Tensor:
        return self.w


class DWAWeighter(Weighter):
    """Dynamic Weight Average (Liu et al., CVPR 2019), on epoch means of the losses.

    w_k = K * exp(r_k / T) / sum_i exp(r_i / T), r_k = L_k(e-1) / L_k(e-2), where L_k(e) is the mean of
    loss k over epoch e; w = 1 during the first two epochs. forward() accumulates the epoch sums,
    end_epoch() turns them into means and computes the next epoch's weights.
    """

    def __init__(self, names: Sequence[str], *, temperature: PositiveFloat = 2.0):
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


class UncertaintyWeighter(Weighter):
    """Homoscedastic uncertainty weighting (Kendall et al., CVPR 2018): total = sum_k exp(-s_k) L_k + s_k.

    s_k = log sigma_k^2 is learned with the model (init 0, so weights start at 1); its optimum for a
    fixed L_k is s_k = log L_k. The pretraining task puts them in a parameter group without weight decay
    (tasks/pretrain.py), which would otherwise pull the weights towards 1.
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


class GradNormWeighter(Weighter):
    """GradNorm (Chen et al., ICML 2018): learned weights that balance the gradient norms the losses put on a
    shared layer W, pulled towards equal training rates.

    Each training step, with the weights w_k the forward applied and g_k = ||grad_W L_k||_2:
      G_k = w_k g_k;  r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0)), L_k(0) the first step's value (the loss
      that has trained least has the largest r_k);  target_k = mean(G) * r_k^alpha, held constant;
      L_grad = sum_k |G_k - target_k|, whose gradient in w_k is sign(G_k - target_k) * g_k (G_k is linear in
      w_k, so the g_k need no second-order graph).
    The weights take one Adam step on L_grad (betas 0.9 / 0.999, eps 1e-8; its moments live in buffers, so a
    resumed run continues bit-exactly), are kept positive and renormalised to sum to K. Adam rather than a
    plain gradient step because the size of g_k depends on the layer and the loss: with Adam a weight moves by
    about `lr` per step whatever that size. The network gets the gradient of sum_k w_k L_k, weights detached.

    `alpha` is the restoring force: 0 equalises the gradient norms, a larger value pulls harder towards equal
    training rates; 1.5 is the middle of the range (0.12 to 3) the paper reports. `layer` names the shared
    layer: the last layer of the point projection head (cheap: one matmul from the loss) or of the point
    encoder; the task hands both over with `attach`.

    The state advances in `backward_step`, not in `forward`: a forward without it changes nothing.
    Under torchrun the losses and the g_k are averaged over ranks (one all_reduce), so every rank keeps the
    same weights. The g_k are norms of each rank's own gradient (autograd.grad sees no DDP averaging), so
    their mean approximates the norm of the averaged gradient from above. The g_k come from the unscaled
    losses: under fp16 autocast they may underflow, so the supported precisions are fp32 and bf16 (the
    pretraining task refuses fp16 with gradnorm).
    """

    unscaled_gradients = True
    # Negative weights would make the network ascend a loss; a weight at the floor still recovers, since
    # its G_k = 0 sits below any positive target.
    min_weight = 1e-6
    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, names: Sequence[str], *, alpha: NonNegativeFloat = 1.5, lr: PositiveFloat = 1e-3,
                 layer: Annotated[str, OneOf("head", "encoder")] = "head"):
        super().__init__(names)
        self.alpha, self.lr, self.layer = alpha, lr, layer
        k = len(self.names)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("initial", torch.zeros(k, dtype=torch.float64))  # L_k(0)
        self.register_buffer("w", torch.ones(k, dtype=torch.float64))
        self.register_buffer("adam_m", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("adam_v", torch.zeros(k, dtype=torch.float64))
        self.shared: list[torch.Tensor] = []
        self.pending: torch.Tensor | None = None  # this step's losses, graph attached, until backward_step

    def attach(self, shared_layers: Mapping[str, Sequence[torch.Tensor]]) -> None:
        self.shared = list(shared_layers[self.layer])

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = self._stack(losses)
        self.pending = values if self.training else None
        # A copy: autograd keeps the factor for the backward pass, and backward_step updates w in place first.
        return (self.w.to(values, copy=True) * values).sum()

    def backward_step(self, total: torch.Tensor, backward) -> None:
        values, self.pending = self.pending, None
        if values is not None:
            if not self.shared:
                raise RuntimeError("gradnorm: no shared layer attached; the task must call attach() at build time")
            # Before backward(total), which frees the graph.
            norms = torch.stack([self._grad_norm(values[k]) for k in range(len(self.names))])
            observed = all_reduce_mean(torch.cat([values.detach().to(torch.float64), norms]))
            observed = observed.to(self.w.device)
            self.update_weights(observed[: len(self.names)], observed[len(self.names):])
        backward(total)

    def _grad_norm(self, loss: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(loss, self.shared, retain_graph=True)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.to(torch.float64)) for g in grads]))

    def update_weights(self, losses: torch.Tensor, norms: torch.Tensor) -> None:
        """One GradNorm step from the (K,) rank-averaged loss values and gradient norms g_k, in float64."""
        self.step += 1
        self.initial.copy_(torch.where(self.step == 1, losses, self.initial))  # no host sync to test the step
        ratio = losses / self.initial.clamp_min(1e-12)
        rate = ratio / ratio.mean()
        weighted = self.w * norms  # G_k
        target = weighted.mean() * rate.pow(self.alpha)
        grad = torch.sign(weighted - target) * norms
        beta1, beta2 = self.betas
        self.adam_m.mul_(beta1).add_((1 - beta1) * grad)
        self.adam_v.mul_(beta2).add_((1 - beta2) * grad * grad)
        step = self.step.to(torch.float64)  # float ** int64 tensor would be float32
        m_hat = self.adam_m / (1 - beta1**step)
        v_hat = self.adam_v / (1 - beta2**step)
        self.w.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps)).clamp_(min=self.min_weight)
        self.w.mul_(len(self.names) / self.w.sum())

    def current(self) -> torch.Tensor:
        return self.w


WEIGHTERS = {
    "static": StaticWeighter,
    "adacrossnet": AdaCrossNetWeighter,
    "convergence": ConvergenceWeighter,
    "dwa": DWAWeighter,
    "uncertainty": UncertaintyWeighter,
    "gradnorm": GradNormWeighter,
}


def build_weighter(cfg: Mapping, names: Sequence[str]) -> Weighter:
    """The weighter a `weighting` section names, over the losses `names`."""
    return build_part(WEIGHTERS, cfg, names, where="weighting")
