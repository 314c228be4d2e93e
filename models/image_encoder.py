"""The image branch: a torchvision ResNet trained from scratch (never downloads weights), fc removed.

`ImageEncoder("resnet50")` gives 2048-d features (the published setting), `"resnet18"` 512-d (CPU demos).
`in_channels=1` replaces the first convolution for the grayscale branch of CrossNet/AdaCrossNet. Keys sit
under `resnet.` as in CrossPoint's image model, so its `img_model_best.pth` maps by name.

`channels_last=True` stores the convolution weights and runs the images in NHWC memory layout: the layout
that cuDNN's tensor-core convolutions use natively under bf16/fp16 autocast, so no NCHW<->NHWC transposes are
inserted around every convolution. The function, the parameters and the state_dict are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18, resnet50

ARCHS = {"resnet50": (resnet50, 2048), "resnet18": (resnet18, 512)}


class ImageEncoder(nn.Module):
    """Images (B, in_channels, H, W) float -> (B, out_dim) globally pooled ResNet features."""

    def __init__(self, arch: str = "resnet50", in_channels: int = 3, *, channels_last: bool = False):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"ImageEncoder: unknown arch '{arch}' (choose from {', '.join(sorted(ARCHS))})")
        build, self.out_dim = ARCHS[arch]
        self.arch, self.in_channels = arch, in_channels
        self.resnet = build(weights=None)
        self.resnet.fc = nn.Identity()
        if in_channels != 3:
            self.resnet.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.resnet.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != self.in_channels:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"ImageEncoder: expected images of shape (B, {self.in_channels}, H, W), got {got}")
        if not images.is_floating_point():
            raise ValueError(f"ImageEncoder: expected floating-point images, got dtype {images.dtype}")
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.resnet(images)
