"""The textbook DGCNN (Wang et al. 2019) written the straightforward way, for the encoder benchmark only.

It materialises every edge tensor (B, 2C, N, k), runs Conv2d -> BatchNorm2d -> LeakyReLU on it and takes the
max over k afterwards, so autograd keeps several (B, C', N, k) activations per layer for backward. This is
the baseline that `models.dgcnn.DGCNN` is measured against in `bench/encoder.py`. Not used by any model.
"""

from __future__ import annotations

import torch
from torch import nn


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, C, N) -> indices (B, N, k) of the k nearest points (itself included), by -squared distance."""
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    xx = torch.sum(x**2, dim=1, keepdim=True)
    neg_dist = -xx - inner - xx.transpose(2, 1)
    return neg_dist.topk(k=k, dim=-1)[1]


def graph_feature(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, C, N) -> edge features [x_j - x_i, x_i] of shape (B, 2C, N, k)."""
    batch, channels, points = x.shape
    idx = knn(x, k) + torch.arange(batch, device=x.device).view(-1, 1, 1) * points
    rows = x.transpose(2, 1).contiguous().view(batch * points, channels)
    neighbours = rows[idx.view(-1)].view(batch, points, k, channels)
    centre = rows.view(batch, points, 1, channels).expand(-1, -1, k, -1)
    return torch.cat((neighbours - centre, centre), dim=3).permute(0, 3, 1, 2).contiguous()


def _block(conv: nn.Module, bn: nn.Module) -> nn.Sequential:
    return nn.Sequential(conv, bn, nn.LeakyReLU(negative_slope=0.2))


class TextbookDGCNN(nn.Module):
    """(B, N, 3) -> (B, 2*emb_dims), the same function and parameter shapes as models.dgcnn.DGCNN."""

    def __init__(self, k: int = 20, emb_dims: int = 1024):
        super().__init__()
        self.k = k
        widths = [(3, 64), (64, 64), (64, 128), (128, 256)]
        self.edge_convs = nn.ModuleList(
            _block(nn.Conv2d(2 * c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)) for c_in, c_out in widths)
        self.conv5 = _block(nn.Conv1d(512, emb_dims, 1, bias=False), nn.BatchNorm1d(emb_dims))
        self.out_dim = 2 * emb_dims

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        x = points.transpose(1, 2)
        features = []
        for block in self.edge_convs:
            x = block(graph_feature(x, self.k)).max(dim=-1)[0]
            features.append(x)
        x = self.conv5(torch.cat(features, dim=1))
        return torch.cat((x.max(dim=-1)[0], x.mean(dim=-1)), dim=1)
