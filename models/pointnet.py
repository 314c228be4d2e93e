"""PointNet (Qi et al., 2017) as a small backbone: a shared per-point MLP and a max-pool.

No input or feature transform nets. (B, N, in_channels) -> (B, emb_dims); `features` also gives per-point
features for segmentation, the outputs of the first four layers (64 + 64 + 64 + 128 = 320 channels), as
PointNet's segmentation network concatenates its local features. Keys: `layers.{0..4}.conv.weight` (Conv1d
shapes (out, in, 1)) and `layers.{0..4}.bn.*`.
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
        self.in_channels, self.emb_dims = in_channels, emb_dims
        self.layers = nn.Sequential(*(PointConv(a, b, negative_slope=0.0) for a, b in zip(widths, widths[1:])))
        self.out_dim, self.point_dim = emb_dims, sum(widths[1:-1])

    @property
    def shared_weight(self) -> nn.Parameter:
        """The last layer every output depends on (GradNorm measures the losses' gradients there)."""
        return self.layers[-1].conv.weight

    def features(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, C) -> global feature (B, emb_dims) and per-point features (B, N, 320)."""
        check_points(points, self.in_channels, "PointNet")
        x, local = points, []
        for layer in self.layers[:-1]:
            x = layer(x)
            local.append(x)
        return self.layers[-1](x).max(dim=1).values, torch.cat(local, dim=-1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        check_points(points, self.in_channels, "PointNet")
        return self.layers(points).max(dim=1).values
