"""NT-Xent against a line-by-line version of SimCLR's definition, analytic values and a few SGD steps."""

import math

import numpy as np
import pytest
import torch

from losses.ntxent import nt_xent


def ntxent_loop(a, b, temperature, same_object=None):
    """SimCLR's NT-Xent written out anchor by anchor, in float64 numpy.

    Rows 0..B-1 are a, rows B..2B-1 are b; the positive of row i is row (i + B) mod 2B. The denominator
    runs over every row except the anchor itself and, when ids are given, except the rows of the same
    object that are not the positive.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    rows = np.concatenate([a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)])
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        numerator = math.exp(rows[i] @ rows[positive] / temperature)
        denominator = 0.0
        for j in range(2 * n):
            if j == i:
                continue
            if same_object is not None and j != positive and same_object[j % n] == same_object[i % n]:
                continue
            denominator += math.exp(rows[i] @ rows[j] / temperature)
        total += -math.log(numerator / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("n, dim, temperature", [(2, 3, 0.5), (5, 8, 0.1), (16, 32, 0.2), (7, 4, 1.0)])
def test_matches_loop_in_float64(n, dim, temperature):
    g = torch.Generator().manual_seed(n * 100 + dim)
    a = torch.randn(n, dim, generator=g, dtype=torch.float64)
    b = torch.randn(n, dim, generator=g, dtype=torch.float64)
    loss = nt_xent(a, b, temperature)
    assert loss.dtype == torch.float64
    assert abs(loss.item() - ntxent_loop(a, b, temperature)) < 1e-10


def test_symmetric_and_gather_without_process_group_is_identity():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(9, 16, generator=g, dtype=torch.float64), torch.randn(9, 16, generator=g, dtype=torch.float64)
    assert abs(nt_xent(a, b, 0.2).item() - nt_xent(b, a, 0.2).item()) < 1e-12
    assert nt_xent(a, b, 0.2, gather=True).item() == nt_xent(a, b, 0.2).item()


def test_scale_invariant_rows():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    scale = torch.rand(6, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    assert abs(nt_xent(a * scale, b, 0.3).item() - nt_xent(a, b, 0.3).item()) < 1e-12


@pytest.mark.parametrize("n, temperature", [(4, 0.1), (8, 0.2), (8, 1.0)])
def test_aligned_orthogonal_embeddings_analytic(n, temperature):
    # a_i = b_i = e_i (orthonormal). Each anchor: positive similarity 1, its 2B-2 negatives similarity 0, so
    # loss = -log(e^{1/t} / (e^{1/t} + (2B-2) e^0)) = log(1 + (2B-2) e^{-1/t}) for every anchor.
    eye = torch.eye(n, 2 * n, dtype=torch.float64)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / temperature))
    assert abs(nt_xent(eye * 3.0, eye, temperature).item() - expected) < 1e-12


def test_all_identical_embeddings_analytic():
    # Every similarity is 1: the positive is one of 2B-1 equal terms, loss = -log(1/(2B-1)) (lightly's check).
    n = 6
    same = torch.ones(n, 4, dtype=torch.float64)
    assert abs(nt_xent(same, same, 0.5).item() - math.log(2 * n - 1)) < 1e-12


def test_same_object_exclusion_hand_computation():
    # Orthogonal aligned rows, objects [0, 0, 1, 1, 1]. An anchor of an object with g rows per side loses
    # the other 2(g-1) rows of its object from its negatives: loss = log(1 + (2B-2 - 2(g-1)) e^{-1/t}).
    n, t = 5, 0.2
    eye = torch.eye(n, dtype=torch.float64)
    ids = torch.tensor([0, 0, 1, 1, 1])
    per_anchor = [math.log(1 + (2 * n - 2 - 2 * (g - 1)) * math.exp(-1 / t)) for g in (2, 2, 3, 3, 3)]
    expected = sum(per_anchor) / n  # the b-side anchors repeat the a-side values
    assert abs(nt_xent(eye, eye, t, same_object=ids).item() - expected) < 1e-12
    assert nt_xent(eye, eye, t, same_object=ids).item() < nt_xent(eye, eye, t).item()
    # Unique ids exclude nothing.
    assert nt_xent(eye, eye, t, same_object=torch.arange(n)).item() == nt_xent(eye, eye, t).item()


def test_same_object_random_matches_loop():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randn(8, 6, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    assert abs(nt_xent(a, b, 0.2, same_object=ids).item() - ntxent_loop(a, b, 0.2, ids.tolist())) < 1e-10


def test_gradients_finite_even_for_degenerate_inputs():
    for a in (torch.randn(8, 16), torch.ones(8, 16), torch.eye(8, 16)):
        a = a.clone().requires_grad_()
        b = a.detach().clone().requires_grad_()
        nt_xent(a, b, 0.1).backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_half_precision_inputs_are_computed_in_float32():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    loss = nt_xent(a.bfloat16(), b.bfloat16(), 0.05)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert abs(loss.item() - nt_xent(a, b, 0.05).item()) < 0.1


def test_loss_decreases_under_sgd():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(16, 8, generator=g).requires_grad_()
    b = torch.randn(16, 8, generator=g).requires_grad_()
    optimiser = torch.optim.SGD([a, b], lr=0.5)
    losses = []
    for _ in range(20):
        loss = nt_xent(a, b, 0.2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(later <= earlier + 1e-6 for earlier, later in zip(losses, losses[1:]))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), 0.1, same_object=torch.arange(3))


@pytest.mark.parametrize("mode, exclude", [("plain", False), ("mean", False), ("stacked", False), ("stacked", True)])
def test_fp32_inside_bf16_autocast(mode, exclude):
    """Under a bf16 autocast region the similarities are still computed in fp32: loss and gradients w.r.t.
    the (fp32) embeddings equal those computed without autocast."""
    from losses.crossmodal import cross_modal_loss

    g = torch.Generator().manual_seed(6)
    embeddings = [torch.randn(12, 32, generator=g) for _ in range(4)]

    def loss_and_grads(autocast):
        leaves = [e.clone().requires_grad_() for e in embeddings]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if mode == "plain":
                loss = nt_xent(leaves[0], leaves[1], 0.1)
            else:
                loss = cross_modal_loss(*leaves, mode=mode, temperature=0.1, exclude_same_object=exclude)
        loss.backward()
        return loss, [leaf.grad for leaf in leaves]

    reference, reference_grads = loss_and_grads(False)
    loss, grads = loss_and_grads(True)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - reference.item()) <= 1e-5
    for grad, expected in zip(grads, reference_grads):
        if expected is None:  # an input the mode does not use
            assert grad is None
        else:
            assert torch.allclose(grad, expected, rtol=0, atol=1e-5)
