"""Two CPU processes over gloo: gathered negatives give the single-process gradients; weighters stay in sync."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from losses.crossmodal import cross_modal_loss
from losses.ntxent import nt_xent
from losses.weighting import WEIGHTERS, build_weighter
from utils import distributed

WORLD, B, D, T, STEPS = 2, 4, 8, 0.2, 60
NAMES = ("im", "cm")
WEIGHTER_CONFIGS = {name: {"name": name} for name in WEIGHTERS}
WEIGHTER_CONFIGS["convergence"] = {"name": "convergence", "window": 10, "warmup_steps": 20}
WEIGHTER_CONFIGS["static"] = {"name": "static", "weights": [0.5, 1.5]}
WEIGHTER_CONFIGS["gradnorm"] = {"name": "gradnorm", "lr": 0.01}


def full_batch():
    """The same (WORLD * B, D) float64 embeddings on every process: z1, z2, rgb, gray."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(WORLD * B, D, generator=g, dtype=torch.float64) for _ in range(4)]


def rank_losses(step, rank):
    """Per-rank loss values of one step: a decreasing curve plus rank-dependent noise."""
    rng = np.random.default_rng((step, rank))
    return np.array([5 * np.exp(-step / 10) + 1, 5 * np.exp(-step / 100) + 1]) * (1 + 0.1 * rng.standard_normal(2))


def run_weighter(cfg, losses_for_step, epoch_steps=15):
    """Train-mode steps through backward_step (SGD for learnable weighters); each loss has a gradient of norm
    = its value on a shared leaf (for gradnorm). The final state_dict and the weights after each step."""
    weighter = build_weighter(cfg, NAMES)
    shared = torch.zeros(2, requires_grad=True)
    weighter.attach({"head": [shared], "encoder": [shared]})
    params = list(weighter.parameters())
    optimiser = torch.optim.SGD(params, lr=0.05) if params else None
    history = []
    for step in range(1, STEPS + 1):
        values = losses_for_step(step)
        delta = shared[0] - shared[0].detach()  # exactly 0, gradient e_0
        total = weighter({name: torch.tensor(v, dtype=torch.float32) * (1 + delta) for name, v in zip(NAMES, values)})
        if optimiser is not None:
            optimiser.zero_grad()
        weighter.backward_step(total, lambda tensor, inputs=None: tensor.backward(inputs=inputs))
        if optimiser is not None:
            optimiser.step()
        history.append(list(weighter.weights().values()))
        if step % epoch_steps == 0:
            weighter.end_epoch()
    return {k: v.clone() for k, v in weighter.state_dict().items()}, history


def _worker(rank, port, out_dir):
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    got_rank, local_rank, size = distributed.init_distributed("cpu")
    assert (got_rank, local_rank, size) == (rank, rank, WORLD)
    assert distributed.is_distributed() and distributed.world_size() == WORLD
    assert distributed.is_main_process() == (rank == 0)
    result = {}
    rows = slice(rank * B, (rank + 1) * B)
    local = [t[rows].clone().requires_grad_() for t in full_batch()]
    z1, z2, rgb, gray = local

    loss = nt_xent(z1, z2, T, gather=True)
    loss.backward()
    result["ntxent"] = (loss.item(), z1.grad.clone(), z2.grad.clone())

    for t in local:
        t.grad = None
    loss = cross_modal_loss(z1, z2, rgb, gray, mode="stacked", temperature=T, exclude_same_object=True, gather=True)
    loss.backward()
    result["stacked"] = (loss.item(), [t.grad.clone() for t in local])

    result["mean"] = distributed.all_reduce_mean(torch.tensor([float(rank), 10.0 * rank])).tolist()
    result["weighters"] = {
        name: run_weighter(cfg, lambda step: rank_losses(step, rank)) for name, cfg in WEIGHTER_CONFIGS.items()
    }
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    distributed.cleanup()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_not_distributed_defaults():
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
    x = torch.randn(3, 2)
    assert distributed.gather_with_grad(x) is x and distributed.all_reduce_mean(x) is x
    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        assert distributed.init_distributed("cpu") == (0, 0, 1)
    finally:
        os.environ.update(env)
    distributed.cleanup()  # nothing to clean: no error


def test_gathered_ntxent_equals_the_concatenated_batch(results):
    z1, z2, _, _ = (t.requires_grad_() for t in full_batch())
    loss = nt_xent(z1, z2, T)
    loss.backward()
    # The mean over ranks of the per-rank losses is the full-batch loss ...
    assert abs(np.mean([r["ntxent"][0] for r in results]) - loss.item()) < 1e-12
    # ... and each rank's gradient is WORLD times its slice of the full-batch gradient (DDP then divides
    # the parameter gradients by WORLD, giving exactly the single-process gradient).
    for rank, r in enumerate(results):
        rows = slice(rank * B, (rank + 1) * B)
        torch.testing.assert_close(r["ntxent"][1] / WORLD, z1.grad[rows], rtol=0, atol=1e-12)
        torch.testing.assert_close(r["ntxent"][2] / WORLD, z2.grad[rows], rtol=0, atol=1e-12)


def test_gathered_stacked_cross_modal_with_exclusion(results):
    full = [t.requires_grad_() for t in full_batch()]
    loss = cross_modal_loss(*full, mode="stacked", temperature=T, exclude_same_object=True)
    loss.backward()
    assert abs(np.mean([r["stacked"][0] for r in results]) - loss.item()) < 1e-12
    for rank, r in enumerate(results):
        rows = slice(rank * B, (rank + 1) * B)
        for got, t in zip(r["stacked"][1], full):
            torch.testing.assert_close(got / WORLD, t.grad[rows], rtol=0, atol=1e-12)


def test_all_reduce_mean(results):
    assert all(r["mean"] == [0.5, 5.0] for r in results)


@pytest.mark.parametrize("name", sorted(WEIGHTER_CONFIGS))
def test_weighters_identical_across_ranks_and_equal_to_the_averaged_run(results, name):
    (state0, history0), (state1, history1) = (r["weighters"][name] for r in results)
    assert all(torch.equal(state0[k], state1[k]) for k in state0)  # bit-identical on every rank
    assert history0 == history1

    def mean_losses(step):
        # What all_reduce_mean hands the weighter: float32 losses, in float64, summed, divided by WORLD.
        values = [torch.tensor(rank_losses(step, r), dtype=torch.float32).double() for r in range(WORLD)]
        return (sum(values) / WORLD).tolist()

    state, history = run_weighter(WEIGHTER_CONFIGS[name], mean_losses)
    np.testing.assert_allclose(history0, history, rtol=0, atol=1e-6)
    if name != "static":
        assert np.std(history, axis=0).max() > 0
