"""DGCNN (Wang et al., 2019): the classification encoder, the part- and semantic-segmentation backbones and
models.

Points are `(B, N, C)` at the boundary and features stay channels-last inside. Every EdgeConv recomputes the
kNN graph on its own input.

EdgeConv without the edge tensor
--------------------------------
The textbook EdgeConv builds `e_ij = [x_j - x_i, x_i]` for every edge (a `(B, 2C, N, k)` tensor), applies a
1x1 conv, BatchNorm2d and LeakyReLU, and takes the max over the k neighbours; autograd then keeps several
`(B, C', N, k)` activations for backward. `EdgeConv` computes the same function from per-point tensors:

* Projection first: `W [x_j - x_i; x_i] = W1 x_j + (W2 - W1) x_i`, so `A = W1 x` and `Bp = (W2 - W1) x` are
  computed once per point `(B, N, C')` and an edge value is `y_ij = A_j + Bp_i`: a gather and an add.
* BatchNorm statistics over all `B*N*k` edges: the mean follows from in-degrees,
  `sum_ij y_ij = sum_j indeg_j A_j + k sum_i Bp_i`; the variance is summed edge by edge while the edges stream
  through (one neighbour slot at a time, `(B*N, C')` at once; the full edge tensor never exists).
* BatchNorm's affine map and LeakyReLU are monotone per channel, increasing when the BN scale `gamma >= 0`
  and decreasing when `gamma < 0`. So `max_j LReLU(BN(y_ij)) = LReLU(BN(y_ij*))` with `j*` the arg-max of
  `sign(gamma) * y_ij`: the channels with a negative scale take the minimum. Backward keeps per-point
  tensors only: the selected value, its slot (one byte per point and channel), the centred projections and
  the per-point sums over the neighbours.
* A custom autograd Function does the backward analytically: the gradient reaches the selected neighbour
  through the max, and every edge through the batch mean and variance; the per-edge part of the latter is a
  scatter of per-point values over the graph (`index_add_`), never a `(B, C', N, k)` float tensor.
* Training mode uses the batch statistics of all edges and updates the running statistics exactly as
  `nn.BatchNorm2d` would on the edge tensor (momentum or cumulative average, unbiased running variance);
  eval mode uses the running statistics. Parameters are a `nn.Conv2d` weight `(C', 2C, 1, 1)` and a
  `nn.BatchNorm2d`, so state_dicts map 1:1 onto the textbook module.
* Under `torch.autocast` the projections run in the autocast dtype; the edge statistics and outputs are
  computed in fp32 and returned in the projection dtype. kNN always runs in fp32 (fp64 for fp64 input).

Blocks with two convolutions per edge (the segmentation models) need the full first-layer edge activations
for the second conv; they still skip the `(B, 2C, N, k)` input, use standard autograd, and by default keep
only the block's per-point inputs for backward, rebuilding the edge activations there (checkpointing), so
that only one block's edge activations exist at a time.

State-dict layout (keys below each model's root)
------------------------------------------------
`DGCNN`: `edge1..edge4.{conv.weight, bn.*}`, `embed.{conv.weight, bn.*}`.
`DGCNNPartSegEncoder`: `transform_net.{edge.{conv,bn,conv2,bn2}, embed, fc1.{linear,bn}, fc2.{linear,bn},
transform}`, `edge1/edge2.{conv,bn,conv2,bn2}`, `edge3.{conv,bn}`, `embed`. `DGCNNSemSegEncoder`: `edge1`,
`edge2`, `edge3`, `embed`. The segmentation models are backbone + head (models/segmenter.py):
`DGCNNPartSeg`: `backbone.*` (a DGCNNPartSegEncoder), `head.{category, seg1, seg2, seg3, classifier}`;
`DGCNNSemSeg`: `backbone.*` (a DGCNNSemSegEncoder), `head.{seg1, seg2, classifier}`. Blocks with the same role
share a name across backbones (edge2 is the EdgeConv over the 64-d features of block 1 everywhere), so an
encoder loads into another model's backbone wherever the shapes agree.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from models.common import NEGATIVE_SLOPE, LinearBN, PointConv, check_points
from models.segmenter import PartSegHead, PartSegmenter, SemSegHead, SemSegmenter
from utils.config import Fraction, PositiveInt

_KNN_BLOCK = 1 << 25  # elements of the (b, N, N) distance block kept at once on a GPU
# On the CPU a 1 MiB block (256 rows of a 1,024-point cloud): the selection that reads the scores back then
# finds them in the core's cache instead of main memory. Small blocks also stay inside glibc's heap, which
# reuses them (blocks above 32 MiB are fresh mmaps, page-faulted in at a cost larger than the matmul that
# fills them).
_KNN_BLOCK_CPU = 1 << 18


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices `(B, N, k)` (int64) of the k nearest points of every point of `x` `(B, N, C)`, itself included.

    Squared Euclidean distances via one matmul, in fp32 (fp64 for fp64 input) whatever the autocast state,
    without autograd. The constant `|x_i|^2` of each row is left out: it does not change the ranking. The
    score matrix is computed block by block (whole clouds, or row chunks of one large cloud) into one buffer.
    """
    batch, points, _ = x.shape
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        # [x_i, 1] . [2 x_j, -|x_j|^2] = |x_i|^2 - |x_i - x_j|^2: one matmul, larger is nearer within a row
        queries = torch.cat((x, torch.ones_like(x[..., :1])), dim=-1)
        keys = torch.cat((2 * x, -(x * x).sum(-1, keepdim=True)), dim=-1).transpose(1, 2)
        out = torch.empty(batch, points, k, dtype=torch.long, device=x.device)
        cpu = x.device.type == "cpu"
        block = _KNN_BLOCK_CPU if cpu else _KNN_BLOCK
        rows = max(1, min(points, block // points))
        clouds = max(1, block // (points * points)) if rows == points else 1
        buffer = torch.empty(min(clouds, batch) * rows * points, dtype=x.dtype, device=x.device)
        for s in range(0, batch, clouds):
            for r in range(0, points, rows):
                q = queries[s:s + clouds, r:r + rows]
                score = torch.bmm(q, keys[s:s + clouds], out=buffer[:q.shape[0] * q.shape[1] * points]
                                  .view(q.shape[0], q.shape[1], points))
                out[s:s + clouds, r:r + rows] = _largest(score, k) if cpu else score.topk(k, dim=-1,
                                                                                           sorted=False).indices
    return out


def _group_size(n: int, k: int) -> int | None:
    """The group size s (a divisor of n, at most n // k) that makes `_largest`'s two selections smallest
    (n / s group maxima, then k * s candidates); None when no split saves at least half of one topk over n."""
    sizes = [s for s in range(2, n // k + 1) if n % s == 0]
    best = min(sizes, key=lambda s: n // s + k * s, default=None)
    return best if best is not None and n // best + k * best <= n // 2 else None


def _largest(score: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the k largest entries of each row of a CPU `score` (..., n), unsorted: the same entries
    as `score.topk(k, sorted=False).indices` (among equal values another may be chosen).

    In two selections over few entries, since CPU topk spends ~10 ns on every entry of a row: the entries
    are split into n / s interleaved groups of s (group g: entries g, g + n/s, ...). The k groups with the
    largest maxima hold the k largest entries: an entry of another group is at most its group's maximum,
    which is at most the k-th largest group maximum, which is at most the k-th largest entry (and where it
    equals the k-th largest entry, a chosen group holds an entry of that value in its place). So the k
    largest of those k * s entries are the answer (n=1024, k=20: 128 maxima and 160 candidates).
    """
    *lead, n = score.shape
    size = _group_size(n, k)
    if size is None or score.dtype != torch.float32:
        return score.topk(k, dim=-1, sorted=False).indices
    groups = n // size
    table = score.reshape(-1, size, groups)
    chosen = _top_columns(table.amax(dim=1), k)
    candidates = torch.gather(table, 2, chosen.unsqueeze(1).expand(-1, size, k)).view(-1, size * k)
    best = _top_columns(candidates, k)
    return ((best // k) * groups + torch.gather(chosen, 1, best % k)).view(*lead, k)


def _top_columns(values: torch.Tensor, k: int) -> torch.Tensor:
    """Columns (R, k) of the k largest entries of each row of a float32 CPU `values` (R, w), unsorted.

    Each entry becomes one int64 key, its value's bits (turned so that integers order like the floats) above
    its column: numpy's partition of plain integers then does the selection, about twice as fast as topk,
    which moves (value, index) pairs, and the columns are the keys' low 32 bits. Equal values: the larger
    column wins.
    """
    width = values.shape[1]
    bits = values.view(torch.int32)
    keys = ((bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64) << 32) | torch.arange(width)
    top = np.partition(keys.numpy(), width - k, axis=1)[:, width - k:]
    return torch.from_numpy(top & 0xFFFFFFFF)


def _global_rows(idx: torch.Tensor) -> torch.Tensor:
    """(B, N, k) per-cloud indices -> (B*N, k) row indices into the flattened (B*N, C) feature matrix."""
    batch, points, k = idx.shape
    offset = torch.arange(batch, device=idx.device).view(batch, 1, 1) * points
    return (idx + offset).view(batch * points, k)


# ----------------------------------------------------------------------------------------- fused EdgeConv
def _edge_pass(P, c, rows_t, track_argmax: bool, stats: bool):
    """Stream the edges one neighbour slot at a time: y_t = P[rows_t[t]] + c, (R, C) each.

    Returns the max over slots `m`, the first slot reaching it `a` (float, or None), and when `stats` the
    per-row sums `S = sum_t y_t` and the per-channel sum of squares over all edges.
    """
    k = rows_t.shape[0]
    y = torch.empty_like(P)
    if not (track_argmax or stats):  # max_t (P_t + c) = (max_t P_t) + c, bit for bit (rounding is monotone)
        m = torch.index_select(P, 0, rows_t[0])
        for t in range(1, k):
            torch.maximum(m, torch.index_select(P, 0, rows_t[t], out=y), out=m)
        return m.add_(c), None, None, None
    slot = m = S = Q = None
    for t in range(k):
        torch.index_select(P, 0, rows_t[t], out=y)
        y.add_(c)
        if t == 0:
            m, y = y, torch.empty_like(P)
            if track_argmax:
                slot, step = torch.zeros_like(m), torch.empty_like(m)
            if stats:
                S, Q = m.clone(), m * m
            continue
        if track_argmax:  # slot := t where y_t is a new strict maximum (the first maximum wins ties)
            torch.sub(y, m, out=step)
            step.sign_().mul_(t).clamp_(min=0)
            torch.maximum(slot, step, out=slot)
        torch.maximum(m, y, out=m)
        if stats:
            S.add_(y)
            Q.addcmul_(y, y)
    return m, slot, S, (Q.sum(0) if stats else None)


def _edge_conv_bn_forward(A, Bp, gamma, beta, rows, running_mean, running_var, eps, slope, track_argmax):
    """LReLU(BN(y_ij)) max-pooled over j, with y_ij = A_j + Bp_i; see the module docstring.

    A, Bp: (R, C) projections; rows: (R, k) neighbour rows. Batch statistics when running_mean is None.
    Returns (out, batch_mean, batch_var_unbiased, saved-for-backward).
    """
    R, k = rows.shape
    edges = R * k
    out_dtype, cdt = A.dtype, torch.promote_types(A.dtype, torch.float32)
    gamma, beta = gamma.detach().to(cdt), beta.detach().to(cdt)
    A, Bp = A.to(cdt), Bp.to(cdt)
    sign = torch.where(gamma >= 0, 1.0, -1.0).to(cdt)  # work in the space where the BN scale is >= 0
    batch_stats = running_mean is None
    indeg = None
    if batch_stats:
        indeg = _in_degree(rows, cdt)
        mean = (indeg @ A + k * Bp.sum(0)) / edges
    else:
        mean = running_mean.to(cdt)
    shift = A.mean(0)
    P = torch.addcmul(-sign * shift, A, sign)              # sign * (A - shift)
    c = torch.addcmul(sign * (shift - mean), Bp, sign)     # sign * (Bp + shift - mean): sign*(y - mean) = P_j + c_i
    rows_t = rows.t().contiguous()
    m, slot, S, ssq = _edge_pass(P, c, rows_t, track_argmax, batch_stats)
    if batch_stats:
        invstd = torch.rsqrt(ssq / edges + eps)
        var_unbiased = ssq / max(edges - 1, 1)
    else:
        invstd = torch.rsqrt(running_var.to(cdt) + eps)
        mean = var_unbiased = None
    out = F.leaky_relu(torch.addcmul(beta, m, gamma.abs() * invstd), slope)
    saved = None
    if track_argmax:
        slot = slot.to(torch.uint8 if k <= 256 else torch.int32)
        saved = (P, c, m, slot, S, rows, rows_t, indeg, invstd, sign, gamma)
    return out.to(out_dtype), mean, var_unbiased, saved


class _EdgeConvBN(torch.autograd.Function):
    """Autograd for `_edge_conv_bn_forward` that keeps per-point tensors only (see the module docstring)."""

    @staticmethod
    def forward(ctx, A, Bp, gamma, beta, rows, running_mean, running_var, eps, slope):
        with torch.autocast(device_type=A.device.type, enabled=False):
            out, mean, var, saved = _edge_conv_bn_forward(A, Bp, gamma, beta, rows, running_mean, running_var,
                                                          eps, slope, track_argmax=True)
        P, c, m, slot, S, rows, rows_t, indeg, invstd, sign, gamma_c = saved
        ctx.batch_stats, ctx.slope = running_mean is None, slope
        ctx.dtypes = (A.dtype, Bp.dtype, gamma.dtype, beta.dtype)
        tensors = (P, c, m, slot, rows, rows_t, invstd, sign, gamma_c, out)
        ctx.save_for_backward(*tensors, *((S, indeg) if ctx.batch_stats else ()))
        if mean is None:  # eval mode: no batch statistics to report
            mean, var = A.new_empty(0), A.new_empty(0)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, _grad_mean, _grad_var):
        P, c, m, slot, rows, rows_t, invstd, sign, gamma, out, *stats = ctx.saved_tensors
        with torch.autocast(device_type=P.device.type, enabled=False):
            R, k = rows.shape
            edges = R * k
            d = grad_out.to(P.dtype)
            d = torch.where(out > 0, d, d * ctx.slope)          # through LeakyReLU
            grad_beta = d.sum(0)
            grad_gamma = (d * m).sum(0) * invstd * sign
            # In the sign-flipped space the selected edge value is m + mean and gets h = d*|gamma|*invstd. The
            # gradients below are sign * (their flipped-space value): sign is folded into h, a and b.
            h = d * (gamma * invstd)
            if ctx.batch_stats:
                S, indeg = stats
                # through the batch mean and variance every edge e=(i,j) gets a + b * (y_e - mean)
                a = -h.sum(0) / edges
                b = -(h * m).sum(0) * (invstd * invstd / edges)
                grad_c = torch.addcmul(h + k * a, S, b)
                grad_P = indeg.unsqueeze(1) * torch.addcmul(a, P, b)
                bc = c * b
                for t in range(k):                                # + b * sum over the edges i->j of c_i
                    _add_rows(grad_P, rows_t[t], bc)
            else:
                grad_c, grad_P = h, torch.zeros_like(P)
            selected = torch.gather(rows, 1, slot.long().clamp_(0, k - 1))  # (R, C) neighbour row per channel
            _add_selected(grad_P, selected, h)
            dA, dB, dg, db = ctx.dtypes
        return grad_P.to(dA), grad_c.to(dB), grad_gamma.to(dg), grad_beta.to(db), None, None, None, None, None


def _deterministic_cuda(t: torch.Tensor) -> bool:
    return t.is_cuda and torch.are_deterministic_algorithms_enabled()


def _add_rows(target: torch.Tensor, index: torch.Tensor, source: torch.Tensor) -> None:
    """target[index[e]] += source[e] row by row (index_add_; its sort-based deterministic twin where asked)."""
    if _deterministic_cuda(target):
        target.index_put_((index,), source, accumulate=True)
    else:
        target.index_add_(0, index, source)


def _in_degree(rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """How often each of the R rows appears in `rows` (R, k), as floats. Not torch.bincount: on CUDA it reads
    the largest index on the host to size its output, a sync in every EdgeConv."""
    flat = rows.reshape(-1)
    counts = torch.zeros(rows.shape[0], dtype=dtype, device=rows.device)
    _add_rows(counts, flat, torch.ones((), dtype=dtype, device=rows.device).expand(flat.shape[0]))
    return counts


def _add_selected(target: torch.Tensor, index: torch.Tensor, source: torch.Tensor) -> None:
    """target[index[i, c], c] += source[i, c]."""
    if _deterministic_cuda(target):
        flat = index * target.shape[1] + torch.arange(target.shape[1], device=index.device)
        target.view(-1).index_put_((flat.view(-1),), source.reshape(-1), accumulate=True)
    else:
        target.scatter_add_(0, index, source)


def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var_unbiased: torch.Tensor) -> None:
    """What nn.BatchNorm2d does to its buffers in a training step, given the batch statistics."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        bn.running_mean.mul_(1 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)
        bn.running_var.mul_(1 - factor).add_(var_unbiased.to(bn.running_var.dtype), alpha=factor)


class EdgeConv(nn.Module):
    """EdgeConv: (B, N, C) features and a (B, N, k) kNN graph -> (B, N, C') by max over each neighbourhood.

    One layer (`mid_channels=None`): Conv2d(2C, C') -> BN2d -> LeakyReLU(0.2) on [x_j - x_i, x_i], fused so that
    no edge tensor is kept (module docstring). Two layers (`mid_channels=M`): Conv2d(2C, M) -> BN -> LReLU ->
    Conv2d(M, C') -> BN -> LReLU, as in the segmentation DGCNNs; the first-layer edge activations are built,
    and with `recompute` (default) rebuilt in backward instead of being kept (activation checkpointing).
    Keys: `conv.weight` (M or C', 2C, 1, 1), `bn.*`, and for two layers `conv2.weight` (C', M, 1, 1), `bn2.*`.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None,
                 negative_slope: float = NEGATIVE_SLOPE, recompute: bool = True):
        super().__init__()
        first = mid_channels or out_channels
        self.in_channels, self.out_channels, self.negative_slope = in_channels, out_channels, negative_slope
        self.recompute = recompute
        self.conv = nn.Conv2d(2 * in_channels, first, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(first)
        self.conv2 = self.bn2 = None
        if mid_channels is not None:
            self.conv2 = nn.Conv2d(mid_channels, out_channels, kernel_size=1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        batch, points, channels = x.shape
        if channels != self.in_channels or idx.shape[:2] != (batch, points):
            raise ValueError(f"EdgeConv: expected x (B, N, {self.in_channels}) and idx (B, N, k), "
                             f"got x {tuple(x.shape)} and idx {tuple(idx.shape)}")
        rows = _global_rows(idx)
        w = self.conv.weight.flatten(1)
        w_nb = w[:, :channels]
        proj = F.linear(x.reshape(batch * points, channels), torch.cat((w_nb, w[:, channels:] - w_nb)))
        A, Bp = proj.split(w.shape[0], dim=1)  # neighbour and centre projections, (B*N, C') each
        if self.conv2 is not None or type(self.bn) is not nn.BatchNorm2d:  # noqa: E721 (SyncBatchNorm too)
            return self._materialised(A, Bp, rows).view(batch, points, -1)
        return self._fused(A, Bp, rows).view(batch, points, -1)

    def _fused(self, A, Bp, rows):
        bn = self.bn
        batch_stats = bn.training or bn.running_mean is None
        running = (None, None) if batch_stats else (bn.running_mean, bn.running_var)
        args = (A, Bp, bn.weight, bn.bias, rows, *running, bn.eps, self.negative_slope)
        if torch.is_grad_enabled() and (A.requires_grad or bn.weight.requires_grad or bn.bias.requires_grad):
            out, mean, var = _EdgeConvBN.apply(*args)
        else:
            with torch.autocast(device_type=A.device.type, enabled=False):
                out, mean, var, _ = _edge_conv_bn_forward(*args, track_argmax=False)
        if batch_stats and bn.training and bn.track_running_stats:
            _update_running_stats(bn, mean, var)
        return out

    def _materialised(self, A, Bp, rows):
        """Two convs per edge (or a SyncBatchNorm): the first layer's edge activations must exist. With
        `recompute` they exist only transiently: autograd keeps the block's inputs (A, Bp, rows) and rebuilds
        the block in backward (activation checkpointing); the running statistics update once, here."""
        bns = [bn for bn in (self.bn, self.bn2) if bn is not None]
        if not all(type(bn) is nn.BatchNorm2d for bn in bns):  # noqa: E721 - SyncBatchNorm: let it sync
            R, k = rows.shape
            y = _bn2d_act(self.bn, A[rows.reshape(-1)].view(R, k, -1) + Bp.unsqueeze(1), self.negative_slope)
            if self.conv2 is not None:
                y = _bn2d_act(self.bn2, F.linear(y, self.conv2.weight.flatten(1)), self.negative_slope)
            return y.max(dim=1).values
        if self.recompute and torch.is_grad_enabled():
            out, stats = checkpoint(self._edge_mlp, A, Bp, rows, use_reentrant=False)
        else:
            out, stats = self._edge_mlp(A, Bp, rows)
        for bn, batch_stats in zip(bns, stats):
            if batch_stats is not None and bn.training and bn.track_running_stats:
                _update_running_stats(bn, *batch_stats)
        return out

    def _edge_mlp(self, A, Bp, rows):
        """Edge values A_j + Bp_i -> BN -> LReLU [-> conv2 -> BN -> LReLU] -> max over the neighbours.
        Also returns, per BN, its batch (mean, unbiased var) or None where it used running statistics."""
        R, k = rows.shape
        y = A.index_select(0, rows.reshape(-1)).view(R, k, -1).add_(Bp.unsqueeze(1)).view(R * k, -1)
        y, stats = _batch_norm_rows(self.bn, y)
        y = F.leaky_relu(y, self.negative_slope, inplace=True)  # BN's backward needs its input, not its output
        stats = (stats,)
        if self.conv2 is not None:
            y, stats2 = _batch_norm_rows(self.bn2, F.linear(y, self.conv2.weight.flatten(1)))
            y = F.leaky_relu(y, self.negative_slope, inplace=True)
            stats += (stats2,)
        return y.view(R, k, -1).max(dim=1).values, stats


def _batch_norm_rows(bn: nn.BatchNorm2d, y: torch.Tensor):
    """`bn` on (rows, C) values, leaving its buffers alone: batch statistics in training mode, running ones in
    eval mode. Returns (output, (batch mean, unbiased batch var) or None). The batch statistics come from
    F.batch_norm itself, updating fresh buffers with momentum 1."""
    if not (bn.training or bn.running_mean is None):
        return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps), None
    mean, var = torch.zeros_like(bn.weight, requires_grad=False), torch.ones_like(bn.weight, requires_grad=False)
    return F.batch_norm(y, mean, var, bn.weight, bn.bias, True, 1.0, bn.eps), (mean, var)


def _bn2d_act(bn: nn.Module, y: torch.Tensor, slope: float) -> torch.Tensor:
    """A BatchNorm2d-like module (SyncBatchNorm) over channels-last edge values (..., C), then LeakyReLU.

    The module sees the values as a (1, C, rows, 1) tensor: the same per-channel statistics as over the
    textbook (B, C, N, k) edge tensor, and channels-last strides, so no copy is made.
    """
    shape = y.shape
    y = bn(y.reshape(-1, shape[-1]).t().unsqueeze(0).unsqueeze(-1))
    return F.leaky_relu(y.squeeze(-1).squeeze(0).t().reshape(shape), slope)


# ----------------------------------------------------------------------------------------------- models
class DGCNN(nn.Module):
    """DGCNN encoder: (B, N, in_channels) -> (B, 2*emb_dims) = [max-pool, avg-pool] of the embedding.

    Four EdgeConvs 64, 64, 128, 256, each on its own kNN graph; their concatenation (512) -> Conv1d emb_dims
    (BN, LeakyReLU 0.2). This 2048-d vector is the representation of the linear-SVM protocol.
    """

    def __init__(self, in_channels: int = 3, *, k: PositiveInt = 20, emb_dims: PositiveInt = 1024):
        super().__init__()
        self.k, self.in_channels, self.emb_dims = k, in_channels, emb_dims
        self.edge1 = EdgeConv(in_channels, 64)
        self.edge2 = EdgeConv(64, 64)
        self.edge3 = EdgeConv(64, 128)
        self.edge4 = EdgeConv(128, 256)
        self.embed = PointConv(512, emb_dims)
        self.out_dim, self.point_dim = 2 * emb_dims, 512

    @property
    def shared_weight(self) -> nn.Parameter:
        """The last layer every output depends on (GradNorm measures the losses' gradients there)."""
        return self.embed.conv.weight

    def features(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, C) -> global feature (B, 2*emb_dims) and per-point features (B, N, 512): the four EdgeConvs'."""
        check_points(points, self.in_channels, "DGCNN", self.k)
        x, features = points, []
        for edge in (self.edge1, self.edge2, self.edge3, self.edge4):
            x = edge(x, knn(x, self.k))
            features.append(x)
        local = torch.cat(features, dim=-1)
        x = self.embed(local)
        # amax: 4x faster than max(dim=1).values over channels-last (B, N, C), which also finds indices
        return torch.cat((x.amax(dim=1), x.mean(dim=1)), dim=-1), local

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.features(points)[0]


class TransformNet(nn.Module):
    """The 3x3 spatial transform of the part-segmentation DGCNN: points (B, N, 3) and their graph -> (B, 3, 3).

    EdgeConv 6 -> 64 -> 128 (two convs), Conv1d 128 -> 1024 max-pooled, Linear 512, 256 (BN, LReLU),
    Linear 256 -> 9 initialised to the identity transform.
    """

    def __init__(self):
        super().__init__()
        self.edge = EdgeConv(3, 128, mid_channels=64)
        self.embed = PointConv(128, 1024)
        self.fc1 = LinearBN(1024, 512)
        self.fc2 = LinearBN(512, 256)
        self.transform = nn.Linear(256, 9)
        nn.init.zeros_(self.transform.weight)
        with torch.no_grad():
            self.transform.bias.copy_(torch.eye(3).flatten())

    def forward(self, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.edge(points, idx)).max(dim=1).values
        return self.transform(self.fc2(self.fc1(x))).view(-1, 3, 3)


class DGCNNPartSegEncoder(nn.Module):
    """The part-segmentation DGCNN's backbone: (B, N, 3) -> (B, emb_dims) max-pooled global feature; `features`
    also gives the per-point features (B, N, 192).

    This is the pretraining backbone `point_backbone.name: dgcnn_partseg_encoder` (head 1024 -> 1024 -> 256), and
    the backbone of `DGCNNPartSeg`, so a pretrained encoder loads there by name.
    """

    def __init__(self, *, k: PositiveInt = 40, emb_dims: PositiveInt = 1024):
        super().__init__()
        self.k, self.emb_dims, self.in_channels = k, emb_dims, 3
        self.transform_net = TransformNet()
        self.edge1 = EdgeConv(3, 64, mid_channels=64)
        self.edge2 = EdgeConv(64, 64, mid_channels=64)
        self.edge3 = EdgeConv(64, 64)
        self.embed = PointConv(192, emb_dims)
        self.out_dim, self.point_dim = emb_dims, 192

    @property
    def shared_weight(self) -> nn.Parameter:
        return self.embed.conv.weight

    def features(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3) -> global feature (B, emb_dims) and per-point features (B, N, 192)."""
        check_points(points, 3, type(self).__name__, self.k)
        x = torch.bmm(points, self.transform_net(points, knn(points, self.k)).to(points.dtype))
        x1 = self.edge1(x, knn(x, self.k))
        x2 = self.edge2(x1, knn(x1, self.k))
        x3 = self.edge3(x2, knn(x2, self.k))
        local = torch.cat((x1, x2, x3), dim=-1)
        return self.embed(local).max(dim=1).values, local

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.features(points)[0]


class DGCNNSemSegEncoder(nn.Module):
    """The semantic-segmentation DGCNN's backbone: (B, N, in_channels) -> (B, emb_dims); `features` also gives the
    per-point features (B, N, 192).

    The first graph is built on the last three channels (6:9 = room-normalised xyz for S3DIS's 9 channels)
    while its edge features use all channels. EdgeConvs 64/64 (two convs each) and 64; Conv1d 192 -> emb_dims,
    max-pooled.
    """

    def __init__(self, in_channels: int = 9, *, k: PositiveInt = 20, emb_dims: PositiveInt = 1024):
        super().__init__()
        if in_channels < 3:
            raise ValueError(f"DGCNNSemSegEncoder: in_channels must be >= 3 (the graph uses the last three), "
                             f"got {in_channels}")
        self.k, self.in_channels, self.emb_dims = k, in_channels, emb_dims
        self.edge1 = EdgeConv(in_channels, 64, mid_channels=64)
        self.edge2 = EdgeConv(64, 64, mid_channels=64)
        self.edge3 = EdgeConv(64, 64)
        self.embed = PointConv(192, emb_dims)
        self.out_dim, self.point_dim = emb_dims, 192

    @property
    def shared_weight(self) -> nn.Parameter:
        return self.embed.conv.weight

    def features(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_points(points, self.in_channels, type(self).__name__, self.k)
        x1 = self.edge1(points, knn(points[..., -3:], self.k))
        x2 = self.edge2(x1, knn(x1, self.k))
        x3 = self.edge3(x2, knn(x2, self.k))
        local = torch.cat((x1, x2, x3), dim=-1)
        return self.embed(local).max(dim=1).values, local

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.features(points)[0]


class DGCNNPartSeg(PartSegmenter):
    """DGCNN's part segmentation (Wang et al., 2019): `DGCNNPartSegEncoder` + `PartSegHead` (category one-hot
    (16) -> 64; per point [global emb_dims, category 64, local 192] = 1280 -> 256 -> 256 -> 128 -> num_parts,
    dropout after the first two). forward(points (B, N, 3), category (B,)) -> logits (B, N, num_parts)."""

    def __init__(self, *, num_parts: PositiveInt = 50, num_categories: PositiveInt = 16, k: PositiveInt = 40,
                 emb_dims: PositiveInt = 1024, dropout: Fraction = 0.5):
        backbone = DGCNNPartSegEncoder(k=k, emb_dims=emb_dims)
        super().__init__(backbone, PartSegHead(backbone.out_dim, backbone.point_dim, num_parts, num_categories,
                                               dropout=dropout))
        self.k = k


class DGCNNSemSeg(SemSegmenter):
    """DGCNN's semantic segmentation (S3DIS): `DGCNNSemSegEncoder` + `SemSegHead` (per point [global emb_dims,
    local 192] = 1216 -> 512 -> 256 -> num_classes, dropout before the classifier).
    forward(points (B, N, in_channels)) -> logits (B, N, num_classes)."""

    def __init__(self, in_channels: int = 9, *, num_classes: PositiveInt = 13, k: PositiveInt = 20,
                 emb_dims: PositiveInt = 1024, dropout: Fraction = 0.5):
        backbone = DGCNNSemSegEncoder(in_channels, k=k, emb_dims=emb_dims)
        super().__init__(backbone, SemSegHead(backbone.out_dim, backbone.point_dim, num_classes, dropout=dropout))
        self.k, self.in_channels = k, in_channels
