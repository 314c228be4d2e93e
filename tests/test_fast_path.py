"""Pieces of the GPU fast path that can be checked on the CPU: channels_last ResNets, sync-free in-degrees,
the CUDA settings helper."""

from __future__ import annotations

import pytest
import torch

from models.dgcnn import _in_degree
from models.image_encoder import ImageEncoder
from utils.fast_cuda import enable_fast_cuda


@pytest.mark.parametrize("in_channels", [3, 1])
def test_channels_last_image_encoder_computes_the_same_function(in_channels):
    """In fp64 (where summation order does not show) outputs and gradients agree to rounding, in training and
    eval mode; in fp32 the outputs agree to fp32 rounding."""
    torch.manual_seed(0)
    plain = ImageEncoder("resnet18", in_channels=in_channels).double()
    fast = ImageEncoder("resnet18", in_channels=in_channels, channels_last=True).double()
    fast.load_state_dict(plain.state_dict())
    assert fast.resnet.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(fast.state_dict()) == list(plain.state_dict())
    images = torch.randn(4, in_channels, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out_plain, out_fast = plain(images), fast(images)  # training mode: batch statistics
    assert torch.allclose(out_fast, out_plain, rtol=0, atol=1e-10)
    out_plain.square().mean().backward()
    out_fast.square().mean().backward()
    grads = dict(plain.named_parameters())
    for name, p in fast.named_parameters():
        assert torch.allclose(p.grad, grads[name].grad, rtol=0, atol=1e-10), name
    plain.eval(), fast.eval()
    assert torch.allclose(fast(images), plain(images), rtol=0, atol=1e-10)
    plain.float(), fast.float()
    assert torch.allclose(fast(images.float()), plain(images.float()), rtol=1e-4, atol=1e-5)


def test_in_degree_counts_like_bincount():
    rows = torch.randint(0, 50, (50, 7), generator=torch.Generator().manual_seed(2))
    expected = torch.bincount(rows.reshape(-1), minlength=50).double()
    assert torch.equal(_in_degree(rows, torch.float64), expected)


def test_enable_fast_cuda_leaves_other_devices_alone():
    before = torch.backends.cudnn.benchmark
    assert enable_fast_cuda("cpu") == {}
    assert torch.backends.cudnn.benchmark == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_enable_fast_cuda_turns_on_cudnn_autotuning():
    before = torch.backends.cudnn.benchmark
    try:
        assert enable_fast_cuda("cuda") == {"cudnn.benchmark": True}
        assert torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.benchmark = before
