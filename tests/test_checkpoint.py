"""Checkpoint files and pretrained-encoder interop with CrossPoint / AdaCrossNet layouts.

The CrossPoint-layout modules below are small re-implementations of the structure their released
checkpoints come from (docs/protocol.md section 2): every block an nn.Sequential(Conv, BN, LeakyReLU) whose BN is
also an attribute bn<n>, so each BN appears under two keys; the head `inv_head`; the part-seg transform net
whose attribute bn3 is re-bound to the 512-d BN of linear1 after conv3 captured the 1024-d one. They produce
the key layout with random weights and double as oracles: same weights, same features.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.build import build_model
from models.dgcnn import DGCNN, DGCNNPartSeg, DGCNNPartSegEncoder, DGCNNSemSeg
from models.layouts import load_model_state
from models.pointnet import PointNet
from tests.test_edgeconv import oracle_graph_feature, oracle_knn, randomise_bn
from tasks.encoders import load_pretrained_encoder
from utils.checkpoint import atomic_save, load_checkpoint_file
from utils.errors import CheckpointError


# ------------------------------------------------------------------------- CrossPoint-layout modules
def seq(conv: nn.Module, bn: nn.Module) -> nn.Sequential:
    return nn.Sequential(conv, bn, nn.LeakyReLU(0.2))


def edge_max(x, k, *blocks, idx=None):
    """x (B, C, N) -> the textbook edge blocks applied in turn, then max over k."""
    y = oracle_graph_feature(x, oracle_knn(x, k) if idx is None else idx)
    for block in blocks:
        y = block(y)
    return y.max(dim=-1)[0]


class CPDGCNN(nn.Module):
    """Layout of CrossPoint's DGCNN (classification backbone), optionally with its supervised classifier."""

    def __init__(self, k=6, emb_dims=32, classes=None):
        super().__init__()
        self.k = k
        self.bn1, self.bn2, self.bn3, self.bn4 = (nn.BatchNorm2d(c) for c in (64, 64, 128, 256))
        self.bn5 = nn.BatchNorm1d(emb_dims)
        self.conv1 = seq(nn.Conv2d(6, 64, 1, bias=False), self.bn1)
        self.conv2 = seq(nn.Conv2d(128, 64, 1, bias=False), self.bn2)
        self.conv3 = seq(nn.Conv2d(128, 128, 1, bias=False), self.bn3)
        self.conv4 = seq(nn.Conv2d(256, 256, 1, bias=False), self.bn4)
        self.conv5 = seq(nn.Conv1d(512, emb_dims, 1, bias=False), self.bn5)
        if classes:
            self.linear1, self.bn6 = nn.Linear(2 * emb_dims, 512, bias=False), nn.BatchNorm1d(512)
            self.linear2, self.bn7 = nn.Linear(512, 256), nn.BatchNorm1d(256)
            self.linear3 = nn.Linear(256, classes)
        self.inv_head = nn.Sequential(nn.Linear(2 * emb_dims, emb_dims), nn.BatchNorm1d(emb_dims), nn.ReLU(),
                                      nn.Linear(emb_dims, 256))

    def forward(self, points):  # (B, N, 3) -> (B, 2*emb_dims)
        x1 = edge_max(points.transpose(1, 2), self.k, self.conv1)
        x2 = edge_max(x1, self.k, self.conv2)
        x3 = edge_max(x2, self.k, self.conv3)
        x4 = edge_max(x3, self.k, self.conv4)
        x = self.conv5(torch.cat((x1, x2, x3, x4), dim=1))
        return torch.cat((x.max(-1)[0], x.mean(-1)), dim=1)


class CPTransformNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(64), nn.BatchNorm2d(128), nn.BatchNorm1d(1024)
        self.conv1 = seq(nn.Conv2d(6, 64, 1, bias=False), self.bn1)
        self.conv2 = seq(nn.Conv2d(64, 128, 1, bias=False), self.bn2)
        self.conv3 = seq(nn.Conv1d(128, 1024, 1, bias=False), self.bn3)
        self.linear1 = nn.Linear(1024, 512, bias=False)
        self.bn3 = nn.BatchNorm1d(512)  # re-bound: conv3 keeps the 1024-d BN, bn3 is now linear1's
        self.linear2, self.bn4 = nn.Linear(512, 256, bias=False), nn.BatchNorm1d(256)
        self.transform = nn.Linear(256, 9)

    def forward(self, edges):  # (B, 6, N, k) -> (B, 3, 3)
        x = self.conv3(self.conv2(self.conv1(edges)).max(dim=-1)[0]).max(dim=-1)[0]
        x = F.leaky_relu(self.bn3(self.linear1(x)), 0.2)
        x = F.leaky_relu(self.bn4(self.linear2(x)), 0.2)
        return self.transform(x).view(-1, 3, 3)


class CPPartSeg(nn.Module):
    """Layout of CrossPoint's DGCNN_partseg; `pretrain=True` has no segmentation layers (bn7..bn10 still)."""

    def __init__(self, k=6, emb_dims=32, parts=50, pretrain=False):
        super().__init__()
        self.k, self.pretrain = k, pretrain
        self.transform_net = CPTransformNet()
        self.bn1, self.bn2, self.bn3, self.bn4, self.bn5 = (nn.BatchNorm2d(64) for _ in range(5))
        self.bn6, self.bn7 = nn.BatchNorm1d(emb_dims), nn.BatchNorm1d(64)
        self.bn8, self.bn9, self.bn10 = nn.BatchNorm1d(256), nn.BatchNorm1d(256), nn.BatchNorm1d(128)
        self.conv1 = seq(nn.Conv2d(6, 64, 1, bias=False), self.bn1)
        self.conv2 = seq(nn.Conv2d(64, 64, 1, bias=False), self.bn2)
        self.conv3 = seq(nn.Conv2d(128, 64, 1, bias=False), self.bn3)
        self.conv4 = seq(nn.Conv2d(64, 64, 1, bias=False), self.bn4)
        self.conv5 = seq(nn.Conv2d(128, 64, 1, bias=False), self.bn5)
        self.conv6 = seq(nn.Conv1d(192, emb_dims, 1, bias=False), self.bn6)
        self.inv_head = nn.Sequential(nn.Linear(emb_dims, emb_dims), nn.BatchNorm1d(emb_dims), nn.ReLU(),
                                      nn.Linear(emb_dims, 256))
        if not pretrain:
            self.conv7 = seq(nn.Conv1d(16, 64, 1, bias=False), self.bn7)
            self.conv8 = seq(nn.Conv1d(emb_dims + 64 + 192, 256, 1, bias=False), self.bn8)
            self.conv9 = seq(nn.Conv1d(256, 256, 1, bias=False), self.bn9)
            self.conv10 = seq(nn.Conv1d(256, 128, 1, bias=False), self.bn10)
            self.conv11 = nn.Conv1d(128, parts, 1, bias=False)

    def features(self, points):
        x = points.transpose(1, 2)
        t = self.transform_net(oracle_graph_feature(x, oracle_knn(x, self.k)))
        x = torch.bmm(points, t).transpose(1, 2)
        x1 = edge_max(x, self.k, self.conv1, self.conv2)
        x2 = edge_max(x1, self.k, self.conv3, self.conv4)
        x3 = edge_max(x2, self.k, self.conv5)
        return self.conv6(torch.cat((x1, x2, x3), 1)).max(-1)[0], (x1, x2, x3)

    def forward(self, points, category):  # -> (B, N, parts)
        glob, local = self.features(points)
        label = self.conv7(F.one_hot(category, 16).to(glob.dtype).unsqueeze(-1))
        x = torch.cat((glob.unsqueeze(-1), label), 1).repeat(1, 1, points.shape[1])
        x = self.conv10(self.conv9(self.conv8(torch.cat((x, *local), 1))))
        return self.conv11(x).transpose(1, 2)


class CPSemSeg(nn.Module):
    """Layout of the DGCNN_semseg of AdaCrossNet's code with the 9-channel edge input (Conv2d(18, 64))."""

    def __init__(self, k=6, emb_dims=32):
        super().__init__()
        self.k = k
        self.bn1, self.bn2, self.bn3, self.bn4, self.bn5 = (nn.BatchNorm2d(64) for _ in range(5))
        self.bn6, self.bn7, self.bn8 = nn.BatchNorm1d(emb_dims), nn.BatchNorm1d(512), nn.BatchNorm1d(256)
        self.conv1 = seq(nn.Conv2d(18, 64, 1, bias=False), self.bn1)
        self.conv2 = seq(nn.Conv2d(64, 64, 1, bias=False), self.bn2)
        self.conv3 = seq(nn.Conv2d(128, 64, 1, bias=False), self.bn3)
        self.conv4 = seq(nn.Conv2d(64, 64, 1, bias=False), self.bn4)
        self.conv5 = seq(nn.Conv2d(128, 64, 1, bias=False), self.bn5)
        self.conv6 = seq(nn.Conv1d(192, emb_dims, 1, bias=False), self.bn6)
        self.conv7 = seq(nn.Conv1d(emb_dims + 192, 512, 1, bias=False), self.bn7)
        self.conv8 = seq(nn.Conv1d(512, 256, 1, bias=False), self.bn8)
        self.conv9 = nn.Conv1d(256, 13, 1, bias=False)

    def forward(self, points):  # (B, N, 9) -> (B, N, 13)
        x = points.transpose(1, 2)
        x1 = edge_max(x, self.k, self.conv1, self.conv2, idx=oracle_knn(x[:, 6:9], self.k))
        x2 = edge_max(x1, self.k, self.conv3, self.conv4)
        x3 = edge_max(x2, self.k, self.conv5)
        local = torch.cat((x1, x2, x3), 1)
        glob = self.conv6(local).max(-1, keepdim=True)[0].repeat(1, 1, points.shape[1])
        return self.conv9(self.conv8(self.conv7(torch.cat((glob, local), 1)))).transpose(1, 2)


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.normal_(p, std=0.2) if p.dim() > 1 else None
    randomise_bn(module, torch.Generator().manual_seed(seed))
    return module.eval()


def close(a, b, tol=1e-5):
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


def cloud(batch=2, points=24, channels=3, seed=1):
    return torch.rand(batch, points, channels, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------- CrossPoint checkpoints
@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "DataParallel"])
def test_crosspoint_cls_checkpoint_loads_into_dgcnn(tmp_path, wrapped):
    theirs = randomised(CPDGCNN(classes=40))
    state = theirs.state_dict()
    assert "bn1.weight" in state and "conv1.1.weight" in state and "inv_head.3.weight" in state
    path = tmp_path / "dgcnn_cls_best.pth"
    torch.save({f"module.{k}": v for k, v in state.items()} if wrapped else state, path)
    ours = DGCNN(k=6, emb_dims=32)
    report = load_pretrained_encoder(ours, path, log=None)
    assert report.layout == "crosspoint-cls"
    assert report.missing == [] and report.mismatched == []
    assert {k.split(".")[0] for k in report.unexpected} == {"point_head", "linear1", "bn6", "linear2", "bn7",
                                                            "linear3"}
    points = cloud()
    with torch.no_grad():
        assert close(ours.eval()(points), theirs(points))


def test_crosspoint_partseg_checkpoint_loads_into_partseg(tmp_path):
    theirs = randomised(CPPartSeg())
    state = theirs.state_dict()
    assert state["transform_net.bn3.weight"].shape == (512,) and state["transform_net.conv3.1.weight"].shape == (1024,)
    path = tmp_path / "partseg.t7"
    torch.save(state, path)
    ours = DGCNNPartSeg(num_parts=50, k=6, emb_dims=32)
    report = load_model_state(ours, load_checkpoint_file(path), str(path), log=None)  # the whole model
    assert report.layout == "crosspoint-partseg"
    assert report.missing == [] and report.mismatched == []
    assert {k.split(".")[0] for k in report.unexpected} == {"point_head"}
    points, category = cloud(points=20), torch.tensor([3, 15])
    with torch.no_grad():
        assert close(ours.eval()(points, category), theirs(points, category))
    # fine-tuning starts from the backbone only: the head keeps its initial values
    fresh = DGCNNPartSeg(num_parts=50, k=6, emb_dims=32)
    head = {k: v.clone() for k, v in fresh.head.state_dict().items()}
    report = load_pretrained_encoder(fresh, path, log=None)
    assert report.model == "DGCNNPartSegEncoder" and report.missing == [] and report.unexpected == []
    assert report.left_out > 0 and all(torch.equal(v, fresh.head.state_dict()[k]) for k, v in head.items())


def test_crosspoint_partseg_pretrained_backbone(tmp_path):
    """dgcnn_partseg_best.pth: the backbone (pretrain=True), which still holds the unused bn7..bn10."""
    theirs = randomised(CPPartSeg(pretrain=True))
    encoder = DGCNNPartSegEncoder(k=6, emb_dims=32)
    report = load_pretrained_encoder(encoder, theirs.state_dict(), log=None)
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    assert report.left_out == sum(k.startswith(("inv_head.", "bn7", "bn8", "bn9", "bn10")) for k in theirs.state_dict())
    points = cloud(points=20)
    with torch.no_grad():
        assert close(encoder.eval()(points), theirs.features(points)[0])
    full = DGCNNPartSeg(k=6, emb_dims=32)
    report = load_pretrained_encoder(full, theirs.state_dict(), log=None)
    assert report.missing == [] and torch.equal(full.backbone.embed.conv.weight, encoder.embed.conv.weight)


def test_crosspoint_semseg_checkpoint_loads_into_semseg():
    theirs = randomised(CPSemSeg())
    ours = DGCNNSemSeg(k=6, emb_dims=32)
    report = load_model_state(ours, theirs.state_dict(), log=None)
    assert report.layout == "crosspoint-semseg" and report.missing == [] and report.unexpected == []
    points = cloud(points=20, channels=9)
    with torch.no_grad():
        assert close(ours.eval()(points), theirs(points))


# -------------------------------------------------------------------------------- our checkpoints
SMALL = dict(name="adacrossnet", point_backbone={"name": "dgcnn", "k": 6, "emb_dims": 32}, proj_dim=16,
             image_encoder={"name": "resnet18"}, gray_branch=False)


def test_own_training_checkpoint_round_trips(tmp_path):
    model = build_model(SMALL)
    randomise_bn(model, torch.Generator().manual_seed(0))
    # engine/trainer.py saves {"model": <ContrastivePretraining>.state_dict(), ...}: keys under "model."
    checkpoint = {"model": {f"model.{k}": v for k, v in model.state_dict().items()}, "epoch": 3, "step": 10,
                  "optimizer": {"state": {}, "param_groups": []}}
    path = tmp_path / "best.pt"
    atomic_save(checkpoint, path)
    assert load_checkpoint_file(path)["epoch"] == 3
    encoder = DGCNN(k=6, emb_dims=32)
    lines = []
    report = load_pretrained_encoder(encoder, path, log=lines.append)
    assert report.layout == "adacrossnet" and report.missing == [] and report.unexpected == []
    assert report.left_out > 0 and lines and "loaded" in lines[0]
    points = cloud()
    with torch.no_grad():
        assert torch.equal(encoder.eval()(points), model.point_encoder.eval()(points))
    # the downstream form: a bare state_dict of the encoder, and an AdaCrossNet as the target
    other = build_model(SMALL)
    assert load_pretrained_encoder(other, encoder.state_dict(), log=None).missing == []
    assert torch.equal(other.point_encoder.state_dict()["edge1.conv.weight"], encoder.edge1.conv.weight)


def test_partseg_backbone_checkpoint_loads_into_partseg_by_name():
    model = build_model(dict(SMALL, point_backbone={"name": "dgcnn_partseg_encoder", "k": 6, "emb_dims": 32}))
    seg = DGCNNPartSeg(k=6, emb_dims=32)
    report = load_pretrained_encoder(seg, {"model": model.state_dict()}, log=None)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert torch.equal(seg.backbone.edge3.conv.weight, model.point_encoder.edge3.conv.weight)


@pytest.mark.parametrize("target,loads,mismatched", [
    (lambda: DGCNNPartSeg(k=6, emb_dims=32), {"edge1", "edge2"}, {"edge3.conv.weight", "embed.conv.weight"}),
    (lambda: DGCNNSemSeg(k=6, emb_dims=32), {"edge2"}, {"edge1.conv.weight", "edge3.conv.weight"}),
], ids=["partseg", "semseg"])
def test_classification_encoder_into_segmentation_reports_what_loaded(target, loads, mismatched):
    source = DGCNN(k=6, emb_dims=32)
    randomise_bn(source, torch.Generator().manual_seed(0))
    model = target()
    report = load_pretrained_encoder(model, source.state_dict(), log=None)
    assert {k.split(".")[0] for k in report.loaded} == loads
    assert mismatched <= {key for key, _, _ in report.mismatched}
    assert "edge4.conv.weight" in report.unexpected
    assert {"edge3.conv.weight", "embed.conv.weight"} <= set(report.missing)
    assert torch.equal(model.backbone.edge2.conv.weight, source.edge2.conv.weight)
    assert torch.equal(model.backbone.edge2.bn.running_var, source.edge2.bn.running_var)
    assert "shape mismatch" in report.summary() and "kept initial values" in report.summary()
    for name in loads:  # a layer loads whole or not at all: edge1 of semseg kept its own BN too
        assert torch.equal(getattr(model.backbone, name).bn.weight, getattr(source, name).bn.weight)


def test_checkpoint_that_fits_nothing_is_an_error(tmp_path):
    path = tmp_path / "pointnet.pt"
    torch.save(PointNet(emb_dims=32).state_dict(), path)
    with pytest.raises(CheckpointError, match="nothing in it fits DGCNN") as error:
        load_pretrained_encoder(DGCNN(k=6, emb_dims=32), path, log=None)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match=r"edge1.conv.weight is \(64, 12, 1, 1\) there, \(64, 6, 1, 1\) here"):
        load_pretrained_encoder(DGCNN(), {"edge1.conv.weight": torch.zeros(64, 12, 1, 1)}, log=None)


# ----------------------------------------------------------------------------------------- files
def test_wrong_files_are_checkpoint_errors(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"a": torch.ones(3)}, good)
    data = good.read_bytes()
    cases = {
        "missing.pt": None,
        "empty.pt": b"",
        "truncated.pt": data[: len(data) // 2],
        "text.pt": b"hello, I am not a checkpoint\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(CheckpointError) as error:
            load_checkpoint_file(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value), name
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint_file(tmp_path)
    listed = tmp_path / "list.pt"
    torch.save([torch.ones(1)], listed)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint_file(listed)
    with pytest.raises(CheckpointError, match="truncated"):
        load_pretrained_encoder(DGCNN(), tmp_path / "truncated.pt", log=None)


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_objects_are_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(1)}, "payload": _Payload(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused") as error:
        load_checkpoint_file(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


def test_atomic_save_never_leaves_a_partial_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"step": torch.tensor(1)}, path)
    with pytest.raises(Exception):
        atomic_save({"step": torch.tensor(2), "bad": lambda: None}, path)  # cannot be pickled half-way
    assert load_checkpoint_file(path)["step"].item() == 1
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]
    atomic_save({"step": torch.tensor(3)}, tmp_path / "new" / "ckpt.pt")
    assert load_checkpoint_file(tmp_path / "new" / "ckpt.pt")["step"].item() == 3


def test_a_wrapper_prefix_is_stripped():
    source = DGCNN(k=6, emb_dims=32)
    target = DGCNN(k=6, emb_dims=32)
    report = load_pretrained_encoder(target, {f"backbone.{k}": v for k, v in source.state_dict().items()}, log=None)
    assert report.missing == [] and torch.equal(target.embed.conv.weight, source.embed.conv.weight)
