"""AdaCrossNet: a point encoder and one or two image encoders, each with a projection head.

The two augmented point views pass the point encoder as one batch of 2B (BatchNorm statistics over both
views, as in CrossPoint). `point_encoder` is the backbone that downstream tasks and the linear-SVM monitor
use: (B, N, 3) -> (B, F). The losses live in `losses/`; this module only produces the embeddings.
"""

from __future__ import annotations

import torch
from torch import nn


class AdaCrossNet(nn.Module):
    """forward(points1, points2 (B, N, 3), image (B, 3, H, W)[, gray (B, 1, H, W)]) ->
    {"z_points1", "z_points2", "z_image"[, "z_gray"]}, each (B, proj_dim).

    `gray` is required when the model has a grayscale branch and refused when it has none.
    """

    def __init__(self, point_encoder: nn.Module, point_head: nn.Module, image_encoder: nn.Module,
                 image_head: nn.Module, gray_encoder: nn.Module | None = None, gray_head: nn.Module | None = None):
        super().__init__()
        if (gray_encoder is None) != (gray_head is None):
            raise ValueError("AdaCrossNet: give both gray_encoder and gray_head, or neither")
        self.point_encoder, self.point_head = point_encoder, point_head
        self.image_encoder, self.image_head = image_encoder, image_head
        self.gray_encoder, self.gray_head = gray_encoder, gray_head

    def forward(self, points1: torch.Tensor, points2: torch.Tensor, image: torch.Tensor,
                gray: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (points1, points2)]
        if shapes[0] != shapes[1]:
            raise ValueError(f"AdaCrossNet: the two point views must have the same shape (B, N, C), got {shapes[0]} "
                             f"and {shapes[1]}")
        if self.gray_encoder is not None and gray is None:
            raise ValueError("AdaCrossNet: this model has a grayscale branch; forward needs gray (B, 1, H, W)")
        if self.gray_encoder is None and gray is not None:
            raise ValueError("AdaCrossNet: got gray images but the model has no grayscale branch "
                             "(build it with model.gray_branch=true)")
        batch = points1.shape[0]
        z = self.point_head(self.point_encoder(torch.cat((points1, points2), dim=0)))
        out = {"z_points1": z[:batch], "z_points2": z[batch:], "z_image": self.image_head(self.image_encoder(image))}
        if self.gray_encoder is not None:
            out["z_gray"] = self.gray_head(self.gray_encoder(gray))
        return out
