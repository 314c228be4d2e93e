"""A backbone with a classification head: fine-tuned (or supervised) shape classification.

The head is DGCNN's classifier (Wang et al., 2019): Linear(no bias) -> BN -> LeakyReLU 0.2 -> Dropout for each
hidden width (512, 256), then Linear to the classes. It is sized from the backbone's `out_dim` (DGCNN 2048,
PointNet 1024), so any backbone that gives a global feature can be fine-tuned. Keys: `backbone.*` (the
backbone's own, as pretraining saves them under `point_encoder.*`) and `head.*`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from models.common import LinearBN


class ClassificationHead(nn.Sequential):
    """(B, in_dim) -> (B, num_classes) logits."""

    def __init__(self, in_dim: int, num_classes: int, hidden: Sequence[int] = (512, 256), dropout: float = 0.5):
        widths = [in_dim, *hidden]
        layers = []
        for a, b in zip(widths, widths[1:]):
            layers += [LinearBN(a, b), nn.Dropout(dropout)]
        super().__init__(*layers, nn.Linear(widths[-1], num_classes))


class PointClassifier(nn.Module):
    """forward(points (B, N, C)) -> logits (B, num_classes); `class_names` are the classes in the logits' order
    (kept so that a fine-tuned checkpoint labels files by itself)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, class_names: Sequence[str] | None = None):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.class_names = list(class_names) if class_names else None

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(points))
