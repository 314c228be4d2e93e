"""The fused EdgeConv and DGCNN against the textbook form, written here in plain torch as the oracle.

The oracle builds the (B, 2C, N, k) edge tensor [x_j - x_i, x_i], runs Conv2d -> BatchNorm2d -> LeakyReLU on
it and takes the max over k; its modules carry the same attribute names as ours, so one state_dict fits both.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.dgcnn import DGCNN, EdgeConv, knn


# ------------------------------------------------------------------------------------------------ oracle
def oracle_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, C, N) -> (B, N, k), the textbook pairwise-distance form."""
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    xx = torch.sum(x**2, dim=1, keepdim=True)
    return (-xx - inner - xx.transpose(2, 1)).topk(k=k, dim=-1)[1]


def oracle_graph_feature(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, C, N), idx (B, N, k) -> (B, 2C, N, k) edge features [x_j - x_i, x_i]."""
    batch, channels, points = x.shape
    k = idx.shape[-1]
    rows = x.transpose(2, 1).reshape(batch * points, channels)
    flat = (idx + torch.arange(batch).view(-1, 1, 1) * points).reshape(-1)
    neighbours = rows[flat].view(batch, points, k, channels)
    centre = x.transpose(2, 1).unsqueeze(2).expand(-1, -1, k, -1)
    return torch.cat((neighbours - centre, centre), dim=3).permute(0, 3, 1, 2)


class OracleEdgeConv(nn.Module):
    def __init__(self, c_in, c_out, mid=None):
        super().__init__()
        self.conv = nn.Conv2d(2 * c_in, mid or c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(mid or c_out)
        if mid is not None:
            self.conv2 = nn.Conv2d(mid, c_out, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
        self.mid = mid

    def forward(self, x, idx):  # x (B, C, N)
        y = F.leaky_relu(self.bn(self.conv(oracle_graph_feature(x, idx))), 0.2)
        if self.mid is not None:
            y = F.leaky_relu(self.bn2(self.conv2(y)), 0.2)
        return y.max(dim=-1)[0]


class OracleConv1d(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x):
        return F.leaky_relu(self.bn(self.conv(x)), 0.2)


class OracleDGCNN(nn.Module):
    def __init__(self, k, emb_dims):
        super().__init__()
        self.k = k
        self.edge1, self.edge2 = OracleEdgeConv(3, 64), OracleEdgeConv(64, 64)
        self.edge3, self.edge4 = OracleEdgeConv(64, 128), OracleEdgeConv(128, 256)
        self.embed = OracleConv1d(512, emb_dims)

    def forward(self, points):  # (B, N, 3)
        x, features = points.transpose(1, 2), []
        for edge in (self.edge1, self.edge2, self.edge3, self.edge4):
            x = edge(x, oracle_knn(x, self.k))
            features.append(x)
        x = self.embed(torch.cat(features, dim=1))
        return torch.cat((x.max(dim=-1)[0], x.mean(dim=-1)), dim=1)


# ----------------------------------------------------------------------------------------------- helpers
def randomise_bn(module: nn.Module, generator: torch.Generator, negative: bool = False) -> None:
    """Non-trivial BN affine parameters and running statistics; every other channel negative if asked."""
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                n = bn.num_features
                bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                if negative:
                    bn.weight[::2] *= -1
                bn.bias.copy_(torch.rand(n, generator=generator) - 0.5)
                bn.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def pair(ours_cls, oracle_cls, args, dtype, negative=False, seed=0):
    torch.manual_seed(seed)
    oracle = oracle_cls(*args).to(dtype)
    randomise_bn(oracle, torch.Generator().manual_seed(seed), negative)
    ours = ours_cls(*args).to(dtype)
    ours.load_state_dict(oracle.state_dict())  # the same keys and shapes: state_dicts map 1:1
    return ours, oracle


def assert_close(actual, expected, tol, what=""):
    """max |a - e| <= tol * max(1, max |e|): relative to the tensor's scale."""
    scale = max(1.0, expected.abs().max().item())
    err = (actual - expected).abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:g} x scale {scale:.3g}"


def compare_step(ours, oracle, run_ours, run_oracle, inputs, tol, grad_groups=None):
    """Forward, backward of a random projection of the output, and the BN buffers after the step."""
    x1 = inputs.clone().requires_grad_()
    x2 = inputs.clone().requires_grad_()
    out1, out2 = run_ours(ours, x1), run_oracle(oracle, x2)
    assert out1.shape == out2.shape
    assert_close(out1, out2, tol, "output")
    weight = torch.randn(out1.shape, generator=torch.Generator().manual_seed(1), dtype=out1.dtype).to(out1.device)
    (out1 * weight).sum().backward()
    (out2 * weight).sum().backward()
    g1, g2 = x1.grad, x2.grad
    if grad_groups is not None:  # ties between identical points: compare the gradient per group of copies
        g1 = torch.zeros_like(g1).index_add_(1, grad_groups, g1)
        g2 = torch.zeros_like(g2).index_add_(1, grad_groups, g2)
    assert_close(g1, g2, tol, "input gradient")
    params2 = dict(oracle.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None, name
        assert_close(p.grad, params2[name].grad, tol, f"gradient of {name}")
    buffers2 = dict(oracle.named_buffers())
    for name, b in ours.named_buffers():  # running statistics after the step, num_batches_tracked
        assert_close(b.double(), buffers2[name].double(), tol, name)


def edge_runner(idx):
    return (lambda m, x: m(x, idx)), (lambda m, x: m(x.transpose(1, 2), idx).transpose(1, 2))


# --------------------------------------------------------------------------------------------------- kNN
def test_knn_finds_the_nearest_points_itself_included():
    x = torch.randn(3, 50, 7, generator=torch.Generator().manual_seed(0))
    idx = knn(x, 6)
    assert idx.shape == (3, 50, 6) and idx.dtype == torch.long
    dist = torch.cdist(x, x)
    expected = dist.topk(6, dim=-1, largest=False).values
    assert torch.allclose(dist.gather(-1, idx).sort(-1).values, expected, atol=1e-5)
    assert (idx == torch.arange(50).view(1, -1, 1)).any(-1).all()  # every point is its own neighbour


def test_knn_runs_in_fp32_under_autocast():
    x = torch.randn(2, 40, 16, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = knn(x, 5)
    assert torch.equal(inside, knn(x, 5))
    assert torch.equal(knn(x.double(), 5), knn(x, 5))


# ---------------------------------------------------------------------------------------------- EdgeConv
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("negative", [False, True], ids=["gamma+", "gamma+-"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["fp64", "fp32"])
def test_edgeconv_equals_textbook(train, negative, dtype, tol):
    ours, oracle = pair(EdgeConv, OracleEdgeConv, (5, 12), dtype, negative)
    ours.train(train), oracle.train(train)
    x = torch.randn(3, 20, 5, dtype=dtype, generator=torch.Generator().manual_seed(2))
    compare_step(ours, oracle, *edge_runner(knn(x, 6)), x, tol)


def test_edgeconv_with_two_convs_equals_textbook():
    ours, oracle = pair(EdgeConv, OracleEdgeConv, (4, 10, 6), torch.float64, negative=True)
    x = torch.randn(2, 16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    compare_step(ours, oracle, *edge_runner(knn(x, 5)), x, 1e-10)


def test_two_conv_edgeconv_rebuilds_its_edges_in_backward():
    """With recompute (default) only per-point tensors are kept; gradients equal those without recompute."""
    torch.manual_seed(0)
    batch, points, k, mid = 2, 64, 16, 24
    lean, full = EdgeConv(6, 24, mid_channels=mid), EdgeConv(6, 24, mid_channels=mid, recompute=False)
    full.load_state_dict(lean.state_dict())
    x = torch.randn(batch, points, 6)
    idx = knn(x, k)
    grads = []
    for edge in (lean, full):
        sizes = []

        def pack(tensor):
            sizes.append(tensor.numel())
            return tensor

        xi = x.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = edge(xi, idx)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([xi.grad] + [p.grad for p in edge.parameters()])
        edges = batch * points * k * mid
        assert (max(sizes) < edges / 4) if edge is lean else (max(sizes) >= edges)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)
    for name, buffer in full.named_buffers():
        assert torch.equal(getattr(lean, name.split(".")[0]).get_buffer(name.split(".")[1]), buffer), name


def test_edgeconv_with_k_equal_to_n():
    ours, oracle = pair(EdgeConv, OracleEdgeConv, (3, 8), torch.float64, negative=True)
    x = torch.randn(2, 9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    compare_step(ours, oracle, *edge_runner(knn(x, 9)), x, 1e-10)


def test_edgeconv_running_stats_follow_batchnorm_with_cumulative_average():
    ours, oracle = pair(EdgeConv, OracleEdgeConv, (3, 8), torch.float64)
    ours.bn.momentum = oracle.bn.momentum = None
    for step in range(3):
        x = torch.randn(2, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(10 + step))
        idx = knn(x, 4)
        ours(x, idx), oracle(x.transpose(1, 2), idx)
    for name, buffer in oracle.bn.named_buffers():
        assert torch.allclose(getattr(ours.bn, name).double(), buffer.double(), atol=1e-12), name


def test_edgeconv_without_grad_matches_autograd_path():
    torch.manual_seed(0)
    edge = EdgeConv(6, 16)
    randomise_bn(edge, torch.Generator().manual_seed(0), negative=True)
    x = torch.randn(2, 30, 6)
    idx = knn(x, 7)
    for train in (True, False):
        edge.train(train)
        with torch.no_grad():
            plain = edge(x, idx)
        assert torch.equal(plain, edge(x, idx))


def test_edgeconv_keeps_no_edge_sized_tensor_for_backward():
    """What autograd saves is per point ((B*N, C') at most), never per edge ((B*N*k, C'))."""
    batch, points, k, c_out = 2, 64, 16, 32
    edge = EdgeConv(8, c_out)
    x = torch.randn(batch, points, 8, requires_grad=True)
    idx = knn(x, k)
    sizes = []

    def pack(tensor):
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = edge(x, idx)
    assert max(sizes) < batch * points * k * c_out / 4
    out.sum().backward()


# ------------------------------------------------------------------------------------------------- DGCNN
def dgcnn_pair(dtype, k=6, emb_dims=32, negative=False):
    return pair(lambda k_, e: DGCNN(k=k_, emb_dims=e), OracleDGCNN, (k, emb_dims), dtype, negative)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_dgcnn_equals_textbook_fp64(train):
    ours, oracle = dgcnn_pair(torch.float64, negative=True)
    ours.train(train), oracle.train(train)
    points = torch.rand(3, 24, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    compare_step(ours, oracle, lambda m, x: m(x), lambda m, x: m(x), points, 1e-9)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_dgcnn_equals_textbook_fp32(train):
    ours, oracle = dgcnn_pair(torch.float32)
    ours.train(train), oracle.train(train)
    points = torch.rand(2, 32, 3, generator=torch.Generator().manual_seed(6)) * 2 - 1
    compare_step(ours, oracle, lambda m, x: m(x), lambda m, x: m(x), points, 1e-5)


def test_dgcnn_with_k_equal_to_n():
    ours, oracle = dgcnn_pair(torch.float64, k=10)
    points = torch.randn(2, 10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    compare_step(ours, oracle, lambda m, x: m(x), lambda m, x: m(x), points, 1e-9)


def test_dgcnn_with_duplicated_points():
    """Copies of a point tie in every kNN and max: outputs and parameter gradients must not depend on which
    copy is picked, and the input gradient summed over the copies of each point must agree."""
    ours, oracle = dgcnn_pair(torch.float64, negative=True)
    base = torch.rand(2, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    groups = torch.tensor([i % 12 for i in range(30)])  # 30 points, 12 distinct positions
    compare_step(ours, oracle, lambda m, x: m(x), lambda m, x: m(x), base[:, groups], 1e-9, grad_groups=groups)


@pytest.mark.parametrize("mid", [None, 24], ids=["fused", "two-conv"])
def test_edgeconv_under_cpu_autocast_bf16(mid):
    """Projections run in bf16, statistics and outputs in fp32 returned as bf16; gradients reach fp32 params."""
    torch.manual_seed(0)
    edge = EdgeConv(16, 32, mid_channels=mid)
    x = torch.randn(2, 40, 16)
    idx = knn(x, 8)
    reference = edge(x, idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = edge(x, idx)
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), reference, 0.05, "bf16 output")
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in edge.parameters())


def test_dgcnn_under_cpu_autocast_bf16():
    torch.manual_seed(0)
    model = DGCNN(k=8, emb_dims=64)
    points = torch.rand(2, 40, 3) * 2 - 1
    reference = model(points)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(points)
    assert out.dtype == torch.bfloat16
    # bf16 features change some kNN choices in the deeper layers: close, not equal
    assert F.cosine_similarity(out.float().flatten(), reference.flatten(), dim=0) > 0.99
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
               for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_dgcnn_on_cuda_with_autocast(amp):
    ours, oracle = dgcnn_pair(torch.float32, k=10, emb_dims=64)
    ours, oracle = ours.cuda(), oracle.cuda()
    points = torch.rand(4, 128, 3, device="cuda") * 2 - 1
    fp32 = oracle(points)
    with torch.autocast("cuda", dtype=amp):
        out = ours(points)
    assert out.dtype == amp
    assert F.cosine_similarity(out.float().flatten(), fp32.flatten(), dim=0) > 0.99
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in ours.parameters())
    x = torch.rand(4, 128, 3, device="cuda")
    ours32, oracle32 = dgcnn_pair(torch.float32, k=10, emb_dims=64)
    compare_step(ours32.cuda(), oracle32.cuda(), lambda m, p: m(p), lambda m, p: m(p), x, 1e-4)


def test_deterministic_scatter_path_equals_the_default(monkeypatch):
    """Under torch.use_deterministic_algorithms on CUDA the backward scatters with index_put_(accumulate=True);
    forced on here (CPU) it must give the same gradients as index_add_/scatter_add_."""
    import models.dgcnn as dgcnn

    monkeypatch.setattr(dgcnn, "_deterministic_cuda", lambda tensor: True)
    ours, oracle = pair(EdgeConv, OracleEdgeConv, (5, 12), torch.float64, negative=True)
    x = torch.randn(3, 20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    compare_step(ours, oracle, *edge_runner(knn(x, 6)), x, 1e-10)
