"""Segmentation as backbone + head: any backbone whose `features(points)` gives a global feature (B, G) and
per-point features (B, N, P) (its `out_dim` and `point_dim`) segments with these heads.

The heads are DGCNN's (Wang et al., 2019), sized from the backbone: each point's input is [global feature,
(category embedding,) its own features]. The global part of the first layer is the same for every point of a
cloud, so it is computed once per cloud and added, instead of being repeated N times and multiplied. Logits
are channels-last like every other tensor at a model boundary. Keys: `backbone.*`, `head.*`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.common import PointConv


def _first_layer(layer: PointConv, per_cloud: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """`layer` applied to [per_cloud repeated over the points, local], without building that tensor."""
    w = layer.conv.weight.flatten(1)
    g = per_cloud.shape[-1]
    return layer.norm_act(F.linear(local, w[:, g:]) + F.linear(per_cloud, w[:, :g]).unsqueeze(1))


class PartSegHead(nn.Module):
    """(global (B, G), local (B, N, P), category (B,)) -> (B, N, num_parts): category one-hot -> 64; per point
    [G, 64, P] -> 256 -> 256 -> 128 -> num_parts, dropout after the first two."""

    def __init__(self, global_dim: int, point_dim: int, num_parts: int, num_categories: int, dropout: float = 0.5):
        super().__init__()
        self.num_parts, self.num_categories = num_parts, num_categories
        self.category = PointConv(num_categories, 64)
        self.seg1 = PointConv(global_dim + 64 + point_dim, 256)
        self.dropout1 = nn.Dropout(dropout)
        self.seg2 = PointConv(256, 256)
        self.dropout2 = nn.Dropout(dropout)
        self.seg3 = PointConv(256, 128)
        self.classifier = nn.Conv1d(128, num_parts, kernel_size=1, bias=False)

    def forward(self, glob: torch.Tensor, local: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        cat = self.category(F.one_hot(category.long(), self.num_categories).to(glob.dtype))
        x = _first_layer(self.seg1, torch.cat((glob, cat), dim=-1), local)
        x = self.seg3(self.dropout2(self.seg2(self.dropout1(x))))
        return F.linear(x, self.classifier.weight.flatten(1))


class SemSegHead(nn.Module):
    """(global (B, G), local (B, N, P)) -> (B, N, num_classes): per point [G, P] -> 512 -> 256 -> num_classes,
    dropout before the classifier."""

    def __init__(self, global_dim: int, point_dim: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        self.seg1 = PointConv(global_dim + point_dim, 512)
        self.seg2 = PointConv(512, 256)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv1d(256, num_classes, kernel_size=1, bias=False)

    def forward(self, glob: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.seg2(_first_layer(self.seg1, glob, local)))
        return F.linear(x, self.classifier.weight.flatten(1))


class PartSegmenter(nn.Module):
    """forward(points (B, N, C), category (B,) int64) -> part logits (B, N, num_parts)."""

    def __init__(self, backbone: nn.Module, head: PartSegHead):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.num_parts, self.num_categories = head.num_parts, head.num_categories

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        batch = points.shape[0] if isinstance(points, torch.Tensor) else -1
        who = type(self).__name__
        if (not isinstance(category, torch.Tensor) or category.shape != (batch,)
                or category.is_floating_point() or category.is_complex()):
            got = (f"{tuple(category.shape)} {category.dtype}" if isinstance(category, torch.Tensor)
                   else type(category).__name__)
            raise ValueError(f"{who}: expected category of shape (B,) = ({batch},) int64, got {got}")
        if category.numel() and (int(category.min()) < 0 or int(category.max()) >= self.num_categories):
            raise ValueError(f"{who}: category ids must lie in [0, {self.num_categories}), "
                             f"got [{int(category.min())}, {int(category.max())}]")
        return self.head(*self.backbone.features(points), category)


class SemSegmenter(nn.Module):
    """forward(points (B, N, C)) -> class logits (B, N, num_classes)."""

    def __init__(self, backbone: nn.Module, head: SemSegHead):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.num_classes, self.in_channels = head.num_classes, backbone.in_channels

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(*self.backbone.features(points))
