"""Pieces shared by the point models: input checks, channels-last conv/linear blocks, projection heads.

Features are channels-last `(B, N, C)` inside the point models too, so a 1x1 convolution is a matmul over the
last dimension. The parameters keep the shapes of the textbook modules (`nn.Conv1d` weight `(out, in, 1)`,
`nn.Linear` weight `(out, in)`, `nn.BatchNorm1d`), so state_dicts map 1:1 onto the published checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEGATIVE_SLOPE = 0.2  # LeakyReLU slope of every DGCNN block


def check_points(points: torch.Tensor, channels: int, who: str, k: int | None = None) -> None:
    """Raise ValueError, naming expected and received, unless `points` is a float (B, N, channels) tensor
    with at least `k` points per cloud."""
    if not isinstance(points, torch.Tensor):
        raise ValueError(f"{who}: expected points as a torch.Tensor (B, N, {channels}), got {type(points).__name__}")
    shape = tuple(points.shape)
    if points.dim() != 3 or shape[-1] != channels:
        hint = ""
        if points.dim() == 3 and shape[1] == channels:
            hint = "; points are channels-last (B, N, C): transpose a (B, C, N) tensor with .transpose(1, 2)"
        elif points.dim() == 2 and shape[-1] == channels:
            hint = "; a single cloud needs a batch dimension: points.unsqueeze(0)"
        raise ValueError(f"{who}: expected points of shape (B, N, {channels}), got {shape}{hint}")
    if not points.is_floating_point():
        raise ValueError(f"{who}: expected floating-point points, got dtype {points.dtype} (call .float())")
    if k is not None and shape[1] < k:
        raise ValueError(f"{who}: k={k} nearest neighbours need at least {k} points per cloud, got N={shape[1]}")


def batch_norm_act(bn: nn.Module, y: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """`bn` over the last dimension of channels-last `y` (any leading dims), then LeakyReLU (ReLU at slope 0).

    The statistics are taken over every leading position, exactly as `bn` would over a channels-first tensor;
    a BatchNorm1d (or SyncBatchNorm) module is called on a 2-D view, so running statistics update as usual.
    """
    shape = y.shape
    y = bn(y.reshape(-1, shape[-1]))  # a fresh tensor (BN's backward needs its input, not its output): in place
    return activate_(y, negative_slope).view(shape)


def activate_(y: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """LeakyReLU (ReLU at slope 0) in place: `y` must be a fresh tensor no backward reads."""
    return F.relu(y, inplace=True) if negative_slope == 0 else F.leaky_relu(y, negative_slope, inplace=True)


class PointConv(nn.Module):
    """Conv1d(kernel 1, no bias) -> BatchNorm1d -> LeakyReLU, applied to the last dim of (..., in) features.

    Parameters: `conv.weight` (out, in, 1) and `bn.*`, as in `nn.Sequential(nn.Conv1d, nn.BatchNorm1d, ...)`.
    """

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = NEGATIVE_SLOPE):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm1d(out_channels)
        self.negative_slope = negative_slope

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.conv.weight.flatten(1))

    def norm_act(self, y: torch.Tensor) -> torch.Tensor:
        return batch_norm_act(self.bn, y, self.negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        if bn.training or bn.running_mean is None or type(bn) is not nn.BatchNorm1d:  # noqa: E721
            return self.norm_act(self.project(x))
        # Running statistics: BN is a per-channel affine map, folded into the weight and a bias, so the output
        # is written once by the matmul instead of being read and rewritten by BN (an eighth of the DGCNN
        # forward's time on a CPU for the 1024-channel embedding).
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        return activate_(F.linear(x, self.conv.weight.flatten(1) * scale.unsqueeze(1), shift), self.negative_slope)


class LinearBN(nn.Module):
    """Linear(no bias) -> BatchNorm1d -> LeakyReLU on (B, in) vectors; `linear.weight` (out, in), `bn.*`."""

    def __init__(self, in_features: int, out_features: int, negative_slope: float = NEGATIVE_SLOPE):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_norm_act(self.bn, self.linear(x), self.negative_slope)


def point_projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """CrossPoint's point head: Linear(in, hidden), BN, ReLU, Linear(hidden, out). Keys `0.*`, `1.*`, `3.*`
    (the layout of CrossPoint's `inv_head`). DGCNN: 2048 -> 1024 -> 256; part-seg backbone: 1024 -> 1024 -> 256."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


def image_projection_head(in_dim: int, hidden_dim: int = 512, out_dim: int = 256) -> nn.Sequential:
    """CrossPoint's image head: Linear(in, 512, no bias), BN, ReLU, Linear(512, out, no bias); keys `0`, `1`, `3`."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                         nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim, bias=False))
