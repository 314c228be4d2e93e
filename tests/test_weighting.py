"""Loss weighters on synthetic loss curves: formulas, behaviour over time, state_dict round trips, config."""

import copy
import math

import numpy as np
import pytest
import torch

from losses.weighting import WEIGHTERS, build_weighter
from utils.errors import ConfigError

NAMES = ("im", "cm")


def exp_curves(steps, noise=0.02, seed=0):
    """L_im = 5 exp(-t/50) + 1 converges fast then flattens, L_cm = 5 exp(-t/2000) + 1 converges slowly."""
    t = np.arange(1, steps + 1, dtype=np.float64)
    clean = np.stack([5 * np.exp(-t / 50) + 1, 5 * np.exp(-t / 2000) + 1], axis=1)
    return clean * (1 + noise * np.random.default_rng(seed).standard_normal(clean.shape))


def swap_curves(steps, noise=0.02, seed=0, rates=(1e-3, 2e-4)):
    """Constant per-step decay rates (im fast, cm slow) that swap at steps // 2."""
    fast, slow = rates
    rho = np.where(np.arange(steps)[:, None] < steps // 2, [fast, slow], [slow, fast])
    clean = 6 * np.exp(-np.cumsum(rho, axis=0))
    return clean * (1 + noise * np.random.default_rng(seed).standard_normal(clean.shape))


def losses_at(row, shared=None):
    """The row's loss values; with a `shared` leaf, each loss also has a gradient on it of norm = its value."""
    if shared is None:
        return {name: torch.tensor(float(v)) for name, v in zip(NAMES, row)}
    delta = shared[0] - shared[0].detach()  # exactly 0, gradient e_0
    return {name: torch.tensor(float(v)) * (1 + delta) for name, v in zip(NAMES, row)}


def backward(tensor, inputs=None):
    tensor.backward(inputs=inputs)


def feed(weighter, curves, epoch_steps=None, optimiser=None):
    """Train-mode forward + backward_step on every row (the losses share a leaf, attached to the weighter as
    both layers); returns (weights (steps, K), totals (steps,))."""
    shared = torch.zeros(3, requires_grad=True)
    weighter.attach({"head": [shared], "encoder": [shared]})
    weights, totals = [], []
    for step, row in enumerate(curves, start=1):
        total = weighter(losses_at(row, shared))
        if optimiser is not None:
            optimiser.zero_grad()
        weighter.backward_step(total, backward)
        if optimiser is not None:
            optimiser.step()
        weights.append([weighter.weights()[n] for n in NAMES])
        totals.append(total.item())
        if epoch_steps and step % epoch_steps == 0:
            weighter.end_epoch()
    return np.array(weights), np.array(totals)


# ---- static ---------------------------------------------------------------------------------------------


def test_static_weights_and_total():
    weighter = build_weighter({"name": "static", "weights": [0.5, 2.0]}, NAMES)
    total = weighter({"im": torch.tensor(3.0), "cm": torch.tensor(4.0)})
    assert total.item() == 0.5 * 3 + 2 * 4 and weighter.weights() == {"im": 0.5, "cm": 2.0}
    assert build_weighter({"name": "static"}, NAMES).weights() == {"im": 1.0, "cm": 1.0}


# ---- adacrossnet (published rule) ------------------------------------------------------------------------


def test_adacrossnet_follows_the_published_rule_step_by_step():
    curves = exp_curves(20).astype(np.float32)
    weighter = build_weighter({"name": "adacrossnet"}, NAMES)
    lam, prev = np.ones(2), np.zeros(2)
    for row in curves:
        values = row.astype(np.float64)
        lam = 0.95 * lam + 0.05 / (1 + np.exp(-0.05 * (values - prev)))
        prev = values
        total = weighter(losses_at(row))
        np.testing.assert_allclose([weighter.weights()[n] for n in NAMES], lam, rtol=0, atol=1e-15)
        assert abs(total.item() - float(np.dot(lam, values))) < 1e-5


@pytest.mark.parametrize(
    "curves",
    [
        exp_curves(500),
        swap_curves(500),
        10 * exp_curves(500, noise=0.002)[:, ::-1],  # other scale (same absolute noise), roles swapped
        np.stack([np.linspace(1, 3, 500), np.linspace(8, 2, 500)], axis=1),  # one rising, one falling
    ],
)
def test_adacrossnet_collapses_to_one_half_whatever_the_curves(curves):
    weights, _ = feed(build_weighter({"name": "adacrossnet"}, NAMES), curves)
    assert np.abs(weights[-1] - 0.5).max() < 1e-3
    assert np.abs(weights[300:] - 0.5).max() < 1e-3


# ---- convergence (ours) ----------------------------------------------------------------------------------


def test_convergence_holds_weights_during_warmup():
    weighter = build_weighter({"name": "convergence", "window": 20, "warmup_steps": 50}, NAMES)
    weights, _ = feed(weighter, swap_curves(80))
    assert (weights[:50] == 1.0).all() and (weights[50:] != 1.0).any()


def test_convergence_gives_the_slower_loss_more_weight_and_follows_a_swap():
    # Default config. im shrinks 0.1% per step and cm 0.02% until t = 1500, then the other way round.
    weighter = build_weighter({"name": "convergence"}, NAMES)
    weights, totals = feed(weighter, swap_curves(3000))
    np.testing.assert_allclose(weights.sum(axis=1), 2.0, atol=1e-9)
    assert weights[1400, 1] > 1.4 > 0.6 > weights[1400, 0]  # cm converges slowly: more weight
    assert weights[2900, 0] > 1.4 > 0.6 > weights[2900, 1]  # after the swap im is the slow one
    assert weights[:, 0].std() > 0.3  # not a constant
    assert np.isfinite(totals).all()


def test_convergence_faster_gives_the_faster_loss_more_weight_and_follows_a_swap():
    slower, _ = feed(build_weighter({"name": "convergence"}, NAMES), swap_curves(3000))
    faster, totals = feed(build_weighter({"name": "convergence", "direction": "faster"}, NAMES), swap_curves(3000))
    np.testing.assert_allclose(faster.sum(axis=1), 2.0, atol=1e-9)
    assert faster[1400, 0] > 1.4 > 0.6 > faster[1400, 1]  # im converges fast: more weight
    assert faster[2900, 1] > 1.4 > 0.6 > faster[2900, 0]  # after the swap cm is the fast one
    np.testing.assert_allclose(faster, slower[:, ::-1], atol=1e-9)  # two losses: the mirror image
    assert np.isfinite(totals).all()


def test_convergence_faster_on_exp_curves():
    # While L_im still falls fast (t ~ 200) it gets more weight; once it has flattened, L_cm does.
    weighter = build_weighter({"name": "convergence", "window": 50, "warmup_steps": 100, "direction": "faster"},
                              NAMES)
    weights, _ = feed(weighter, exp_curves(1500))
    assert weights[199, 0] > 1.5
    assert weights[1499, 1] > 1.05


def test_convergence_on_exp_curves_tracks_the_current_rate():
    # While L_im still falls fast (t ~ 200) L_cm is the slower one and gets more weight. Once L_im has
    # flattened (t >~ 300) its rate is ~1 while L_cm keeps falling: L_im is now the slower, and gets more.
    weighter = build_weighter({"name": "convergence", "window": 50, "warmup_steps": 100}, NAMES)
    weights, _ = feed(weighter, exp_curves(1500))
    assert weights[199, 1] > 1.5
    assert weights[1499, 0] > 1.05
    np.testing.assert_allclose(weights.sum(axis=1), 2.0, atol=1e-9)


def test_convergence_ignores_loss_scale():
    curves = swap_curves(1200)
    scaled = curves * np.array([1.0, 100.0])
    w1, _ = feed(build_weighter({"name": "convergence"}, NAMES), curves)
    w2, _ = feed(build_weighter({"name": "convergence"}, NAMES), scaled)
    np.testing.assert_allclose(w1, w2, atol=1e-6)


def test_convergence_stays_near_one_for_equal_rates_under_noise():
    curves = swap_curves(3000, noise=0.05, rates=(5e-4, 5e-4))
    weights, _ = feed(build_weighter({"name": "convergence"}, NAMES), curves)
    assert np.abs(weights - 1).max() < 0.2


def test_eval_mode_does_not_update():
    weighter = build_weighter({"name": "convergence", "window": 2, "warmup_steps": 2}, NAMES)
    feed(weighter, swap_curves(10))
    state = copy.deepcopy(weighter.state_dict())
    weighter.eval()
    total = weighter({"im": torch.tensor(1.0), "cm": torch.tensor(7.0)})
    w = weighter.current()
    assert abs(total.item() - (w[0].item() * 1 + w[1].item() * 7)) < 1e-5
    assert all(torch.equal(state[k], v) for k, v in weighter.state_dict().items())


# ---- dwa -------------------------------------------------------------------------------------------------


def test_dwa_follows_its_formula_on_epoch_means():
    epoch_steps, epochs, T = 10, 5, 2.0
    curves = exp_curves(epoch_steps * epochs, noise=0.1)[:, ::-1] * np.array([1.0, 3.0])
    curves = curves.astype(np.float32).astype(np.float64)
    weighter = build_weighter({"name": "dwa"}, NAMES)
    weights, totals = feed(weighter, curves, epoch_steps=epoch_steps)
    means = curves.reshape(epochs, epoch_steps, 2).mean(axis=1)
    for epoch in range(epochs):
        seen = weights[epoch * epoch_steps : (epoch + 1) * epoch_steps]
        if epoch < 2:
            expected = np.ones(2)
        else:
            r = means[epoch - 1] / means[epoch - 2]
            expected = 2 * np.exp(r / T) / np.exp(r / T).sum()
        np.testing.assert_allclose(seen, np.broadcast_to(expected, seen.shape), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            totals[epoch * epoch_steps : (epoch + 1) * epoch_steps],
            (curves[epoch * epoch_steps : (epoch + 1) * epoch_steps] * expected).sum(axis=1),
            rtol=1e-6,
        )


def test_dwa_empty_epoch_is_a_no_op():
    weighter = build_weighter({"name": "dwa"}, NAMES)
    weighter.end_epoch()
    assert int(weighter.epochs) == 0


# ---- uncertainty -----------------------------------------------------------------------------------------


def test_uncertainty_learns_log_of_the_losses():
    weighter = build_weighter({"name": "uncertainty"}, NAMES)
    optimiser = torch.optim.SGD(weighter.parameters(), lr=0.1)
    feed(weighter, np.tile([2.0, 0.5], (300, 1)), optimiser=optimiser)
    np.testing.assert_allclose(weighter.log_vars.detach().numpy(), np.log([2.0, 0.5]), atol=1e-4)
    np.testing.assert_allclose(list(weighter.weights().values()), [0.5, 2.0], atol=1e-3)


def test_uncertainty_total_and_gradients():
    weighter = build_weighter({"name": "uncertainty"}, NAMES)
    with torch.no_grad():
        weighter.log_vars.copy_(torch.tensor([0.3, -0.7]))
    im, cm = torch.tensor(2.0, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    for mode in (True, False):
        weighter.train(mode)
        weighter.zero_grad()
        im.grad = cm.grad = None
        total = weighter({"im": im, "cm": cm})
        expected = math.exp(-0.3) * 2.0 + 0.3 + math.exp(0.7) * 0.5 - 0.7
        assert abs(total.item() - expected) < 1e-5
        total.backward()
        assert abs(im.grad.item() - math.exp(-0.3)) < 1e-6 and abs(cm.grad.item() - math.exp(0.7)) < 1e-6
        np.testing.assert_allclose(
            weighter.log_vars.grad.numpy(), [1 - math.exp(-0.3) * 2.0, 1 - math.exp(0.7) * 0.5], atol=1e-6
        )


# ---- gradnorm --------------------------------------------------------------------------------------------


def test_gradnorm_matches_a_step_computed_by_hand():
    # W 2x2 is the shared layer; L_1 = ||W a||^2 and L_2 = 3 ||W b||^2; the network takes SGD steps on W.
    a, b = np.array([1.0, 2.0]), np.array([-1.0, 0.5])
    w0 = np.array([[0.5, -0.3], [0.8, 0.2]])
    alpha, lr, net_lr = 1.5, 0.1, 0.05
    weighter = build_weighter({"name": "gradnorm", "alpha": alpha, "lr": lr}, NAMES)
    W = torch.tensor(w0, requires_grad=True)
    weighter.attach({"head": [W], "encoder": []})
    ta, tb = torch.tensor(a), torch.tensor(b)

    Wn, w, m, v, initial = w0.copy(), np.ones(2), np.zeros(2), np.zeros(2), None
    for step in range(1, 4):
        total = weighter({"im": (W @ ta).square().sum(), "cm": 3 * (W @ tb).square().sum()})
        weighter.backward_step(total, backward)
        with torch.no_grad():
            W -= net_lr * W.grad
            W.grad = None

        losses = np.array([np.sum((Wn @ a) ** 2), 3 * np.sum((Wn @ b) ** 2)])
        grads = [2 * np.outer(Wn @ a, a), 6 * np.outer(Wn @ b, b)]
        g = np.array([np.linalg.norm(grad) for grad in grads])
        initial = losses if initial is None else initial
        ratio = losses / initial
        r = ratio / ratio.mean()
        G = w * g
        target = G.mean() * r**alpha
        grad_w = np.sign(G - target) * g
        m = 0.9 * m + 0.1 * grad_w
        v = 0.999 * v + 0.001 * grad_w**2
        new_w = w - lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        new_w = 2 * new_w / new_w.sum()
        Wn = Wn - net_lr * (w[0] * grads[0] + w[1] * grads[1])  # the network saw this step's weights
        w = new_w
        np.testing.assert_allclose([weighter.weights()[n] for n in NAMES], w, rtol=0, atol=1e-12)
        np.testing.assert_allclose(W.detach().numpy(), Wn, rtol=0, atol=1e-12)
    assert abs(w[0] - 1) > 0.1  # it did move


def test_gradnorm_gives_weight_to_the_loss_that_has_trained_least():
    # Equal gradient norms; L_im halves while L_cm stays: r_cm > r_im, so w_cm grows and w_im shrinks.
    weighter = build_weighter({"name": "gradnorm", "lr": 0.01}, NAMES)
    shared = torch.zeros(2, requires_grad=True)
    weighter.attach({"head": [shared], "encoder": []})
    history = []
    for step in range(50):
        delta = shared[0] - shared[0].detach()
        values = {"im": torch.tensor(0.5 ** (step / 10)) + delta, "cm": torch.tensor(1.0) + delta}
        weighter.backward_step(weighter(values), backward)
        history.append(weighter.weights()["cm"])
    assert history[-1] > 1.2 and all(x <= y for x, y in zip(history, history[1:]))
    assert abs(sum(weighter.weights().values()) - 2) < 1e-12


def test_gradnorm_changes_nothing_without_backward_step_or_in_eval():
    weighter = build_weighter({"name": "gradnorm"}, NAMES)
    state = copy.deepcopy(weighter.state_dict())
    weighter({"im": torch.tensor(1.0), "cm": torch.tensor(2.0)})  # no backward_step
    weighter.eval()
    total = weighter({"im": torch.tensor(1.0), "cm": torch.tensor(2.0)})
    weighter.backward_step(total, lambda t, inputs=None: None)  # eval: no update, no attach needed
    assert total.item() == 3.0 and all(torch.equal(state[k], v) for k, v in weighter.state_dict().items())
    weighter.train()
    weighter({"im": torch.tensor(1.0), "cm": torch.tensor(2.0)})
    with pytest.raises(RuntimeError, match="attach"):
        weighter.backward_step(total, backward)


# ---- all weighters ---------------------------------------------------------------------------------------

CONFIGS = {
    "static": {"weights": [0.7, 1.3]},
    "adacrossnet": {},
    "convergence": {"window": 20, "warmup_steps": 40},
    "dwa": {},
    "uncertainty": {},
    "gradnorm": {"lr": 0.01},
}


def test_every_weighter_is_covered():
    assert set(CONFIGS) == set(WEIGHTERS)


@pytest.mark.parametrize("name", sorted(WEIGHTERS))
def test_state_dict_round_trip_continues_identically(name):
    cfg = {"name": name, **CONFIGS[name]}
    curves = swap_curves(300, noise=0.05)
    epoch_steps = 37  # the checkpoint at step 150 falls mid-epoch

    def make():
        weighter = build_weighter(cfg, NAMES)
        params = list(weighter.parameters())
        return weighter, (torch.optim.SGD(params, lr=0.05) if params else None)

    original, opt_original = make()
    feed(original, curves[:150], epoch_steps, opt_original)
    saved = copy.deepcopy(original.state_dict())
    restored, opt_restored = make()
    restored.load_state_dict(saved)
    # The first 150 steps already ran: keep the epoch boundaries where they were.
    tail = curves[150:]
    offset = 150 % epoch_steps
    head, rest = tail[: epoch_steps - offset], tail[epoch_steps - offset :]
    runs = []
    for weighter, optimiser in ((original, opt_original), (restored, opt_restored)):
        w1, t1 = feed(weighter, head, None, optimiser)
        weighter.end_epoch()
        w2, t2 = feed(weighter, rest, epoch_steps, optimiser)
        runs.append((np.concatenate([w1, w2]), np.concatenate([t1, t2]), weighter.state_dict()))
    (wa, ta, sa), (wb, tb, sb) = runs
    assert np.array_equal(wa, wb) and np.array_equal(ta, tb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    if name != "static":
        assert wa.std(axis=0).max() > 0  # the state did move after the restore


def test_build_weighter_errors():
    with pytest.raises(ConfigError, match="adacrossnet.*convergence.*dwa.*uncertainty"):
        build_weighter({"name": "nosuch"}, NAMES)
    bad = [
        ({"name": "static", "weights": [1.0]}, "weights"),
        ({"name": "static", "weights": [1.0, "x"]}, "weights"),
        ({"name": "static", "weights": [1.0, -1.0]}, "weights"),
        ({"name": "adacrossnet", "beta": 1.0}, "beta"),
        ({"name": "convergence", "window": 300, "warmup_steps": 100}, "warmup_steps"),
        ({"name": "convergence", "temperature": 0}, "temperature"),
        ({"name": "convergence", "window": 0}, "window"),
        ({"name": "convergence", "direction": "sideways"}, "direction"),
        ({"name": "dwa", "temperature": -1}, "temperature"),
        ({"name": "gradnorm", "alpha": -0.5}, "alpha"),
        ({"name": "gradnorm", "lr": 0}, "lr"),
        ({"name": "gradnorm", "layer": "image"}, "layer"),
        ({"name": "static", "wieghts": 1}, "unknown key"),
        ({}, "needs a name"),
    ]
    for cfg, match in bad:
        with pytest.raises(ConfigError, match=match):
            build_weighter(cfg, NAMES)
