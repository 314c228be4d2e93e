"""PointNet (Qi et al., 2017) as a small pretraining backbone: a shared per-point MLP and a max-pool.

No input or feature transform nets. (B, N, in_channels) -> (B, emb_dims). Keys: `layers.{0..4}.conv.weight`
(Conv1d shapes (out, in, 1)) and `layers.{0..4}.bn.*`.
"""

from __future__ import annotations

import torch
from torch import nn

from models.common import PointConv, check_points
from utils.config import PositiveInt


class PointNet(nn.Module):
    """Shared MLP in_channels -> 64 -> 64 -> 64 -> 128 -> emb_dims (Conv1d, BN, ReLU), max-pooled over points."""

    def __init__(self, in_channels: int = 3, *, emb_dims: PositiveInt = 1024):
        super().__init__()
        widths = [in_channels, 64, 64, 64, 128, emb_dims]
        self.in_channels = in_channels
        self.layers = nn.Sequential(*(PointConv(a, b, negative_slope=0.0) for a, b in zip(widths, widths[1:])))
        self.out_dim = emb_dims

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        check_points(points, self.in_channels, "PointNet")
        return self.layers(points).max(dim=1).values
