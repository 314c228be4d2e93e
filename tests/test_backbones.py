"""A backbone is one module plus one registry line: PointNet, with its per-point features, goes through all
four tasks (pretraining, fine-tuned classification, part and semantic segmentation) on synthetic data, and a
backbone that cannot serve a task is refused with one line before anything runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import train
from downstream.classification import main_finetune
from downstream.segmentation import main_partseg, main_semseg
from models import build
from models.build import build_model
from tests.test_downstream import metrics_of, one_thread  # noqa: F401 (fixture)
from tests.test_train import tiny_args
from utils.errors import ConfigError

POINTNET = ["model.backbone.name=pointnet", "model.backbone.emb_dims=64"]
SHORT = ["device=cpu", "data.num_points=128", "optim.batch_size=8", "optim.epochs=1", "train.num_workers=0",
         "train.max_steps_per_epoch=2"]


def test_pointnet_pretrains_fine_tunes_and_segments(synthetic_root, tmp_path):
    pretrain = tmp_path / "pretrain"
    args = tiny_args(synthetic_root, pretrain, "model.point_backbone.name=pointnet", "optim.epochs=1",
                     "train.max_steps_per_epoch=2")
    train.main([arg for arg in args if not arg.startswith("model.point_backbone.k=")])  # PointNet has no k
    checkpoint = str(pretrain / "best.pt")
    common = ["--checkpoint", checkpoint, "--data-root", str(synthetic_root), *SHORT]

    main_finetune.main([*common, *POINTNET, "--config", "configs/finetune_pointnet.yaml", "--out",
                        str(tmp_path / "cls")])
    report = metrics_of(tmp_path / "cls")["load_report"]
    assert report["model"] == "PointNet" and report["loaded_tensors"] == report["model_tensors"]

    main_partseg.main([*common, "model.name=part_segmenter", *POINTNET, "--out", str(tmp_path / "partseg")])
    metrics = metrics_of(tmp_path / "partseg")
    assert metrics["load_report"]["loaded_tensors"] == metrics["load_report"]["model_tensors"]
    assert 0 <= metrics["test"]["instance_miou"] <= 1

    main_semseg.main([*common, "model.name=sem_segmenter", *POINTNET, "--out", str(tmp_path / "semseg")])
    metrics = metrics_of(tmp_path / "semseg")
    report = metrics["load_report"]  # the first layer takes 9 channels there, 3 in pretraining: it stays initial
    assert {key.split(".")[1] for key in report["missing"]} == {"0"} and len(report["mismatched"]) == 1
    assert 0 <= metrics["test"]["miou"] <= 1


def test_the_segmentation_heads_take_their_sizes_from_the_backbone():
    for backbone in ({"name": "pointnet", "emb_dims": 32}, {"name": "dgcnn", "k": 4, "emb_dims": 16},
                     {"name": "dgcnn_partseg_encoder", "k": 4, "emb_dims": 16}):
        model = build_model({"name": "part_segmenter", "backbone": backbone, "num_parts": 7, "num_categories": 3})
        assert model(torch.randn(2, 20, 3), torch.tensor([0, 2])).shape == (2, 20, 7)
        assert model.head.seg1.conv.in_channels == model.backbone.out_dim + 64 + model.backbone.point_dim
    semseg = build_model({"name": "sem_segmenter", "backbone": {"name": "dgcnn", "k": 4, "emb_dims": 16}}, 9)
    assert semseg(torch.randn(2, 20, 9)).shape == (2, 20, 13)


class GlobalOnly(nn.Module):
    """A backbone that gives a global feature and no per-point features."""

    def __init__(self, in_channels: int = 3, *, width: int = 8):
        super().__init__()
        self.linear, self.out_dim = nn.Linear(in_channels, width), width

    def forward(self, points):
        return self.linear(points).amax(1)


def test_a_backbone_that_cannot_serve_a_task_is_one_line(monkeypatch):
    with pytest.raises(ConfigError, match="backbone dgcnn_partseg_encoder takes xyz only .* semantic segmentation "
                                          "feeds 9") as error:
        build_model({"name": "sem_segmenter", "backbone": {"name": "dgcnn_partseg_encoder"}}, 9)
    assert "\n" not in str(error.value)
    monkeypatch.setitem(build.BACKBONES, "global_only", GlobalOnly)
    with pytest.raises(ConfigError, match="backbone global_only gives no per-point features; part segmentation"):
        build_model({"name": "part_segmenter", "backbone": {"name": "global_only"}})
    assert build_model({"name": "classifier", "backbone": {"name": "global_only"}, "num_classes": 4})(
        torch.randn(2, 5, 3)).shape == (2, 4)  # classification needs the global feature only
