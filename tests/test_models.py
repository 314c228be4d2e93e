"""Model shapes, input checks, build_model, AdaCrossNet, and the segmentation DGCNNs against their oracles."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.adacrossnet import AdaCrossNet
from models.build import MODELS, build_model
from models.common import image_projection_head, point_projection_head
from models.dgcnn import DGCNN, DGCNNPartSeg, DGCNNPartSegEncoder, DGCNNSemSeg
from models.image_encoder import ImageEncoder
from models.pointnet import PointNet
from tests.test_checkpoint import CPPartSeg, CPSemSeg
from tests.test_edgeconv import assert_close, randomise_bn
from models.layouts import convert_state_dict
from utils.errors import ConfigError

CFG = dict(name="adacrossnet", point_backbone={"name": "dgcnn", "k": 8, "emb_dims": 64}, proj_dim=16,
           image_encoder={"name": "resnet18"}, gray_branch=True)


def cloud(batch=2, points=32, channels=3, seed=0):
    return torch.rand(batch, points, channels, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------------------ shapes
def test_point_models_shapes():
    dgcnn = DGCNN(k=8, emb_dims=64)
    assert dgcnn(cloud()).shape == (2, 128) and dgcnn.out_dim == 128
    pointnet = PointNet(emb_dims=64)
    assert pointnet(cloud()).shape == (2, 64) and pointnet.out_dim == 64
    encoder = DGCNNPartSegEncoder(k=8, emb_dims=64)
    assert encoder(cloud()).shape == (2, 64) and encoder.out_dim == 64
    partseg = DGCNNPartSeg(num_parts=50, k=8, emb_dims=64)
    assert partseg(cloud(), torch.tensor([0, 15])).shape == (2, 32, 50)
    assert partseg.backbone(cloud()).shape == (2, 64)
    semseg = DGCNNSemSeg(num_classes=13, k=8, emb_dims=64)
    assert semseg(cloud(channels=9)).shape == (2, 32, 13)
    for backbone, point_dim in ((dgcnn, 512), (pointnet, 320), (encoder, 192), (semseg.backbone, 192)):
        channels = backbone.in_channels
        glob, local = backbone.features(cloud(channels=channels))
        assert glob.shape == (2, backbone.out_dim) and local.shape == (2, 32, point_dim) == (2, 32, backbone.point_dim)
        assert torch.equal(glob, backbone(cloud(channels=channels)))


def test_image_encoders_and_heads():
    rgb, gray = ImageEncoder("resnet18"), ImageEncoder("resnet18", in_channels=1)
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 512) and rgb.out_dim == 512
    assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 512)
    assert ImageEncoder("resnet50").out_dim == 2048
    assert not any(isinstance(m, nn.Linear) for m in rgb.modules())  # fc removed
    head = image_projection_head(2048)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].bias is None and head[3].bias is None and head[3].out_features == 256
    point_head = point_projection_head(2048, 1024, 256)
    assert point_head[0].in_features == 2048 and point_head[3].out_features == 256 and point_head[0].bias is not None


def test_image_encoder_never_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    ImageEncoder("resnet50"), ImageEncoder("resnet18", in_channels=1)


# ------------------------------------------------------------------------------------------ AdaCrossNet
def test_adacrossnet_forward_returns_the_embeddings():
    model = build_model(CFG)
    views = cloud(seed=1), cloud(seed=2)
    out = model(*views, torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32))
    assert sorted(out) == ["z_gray", "z_image", "z_points1", "z_points2"]
    assert all(z.shape == (2, 16) for z in out.values())
    # both views passed the point encoder as one batch of 2B
    calls = []
    model.point_encoder.register_forward_hook(lambda m, args, result: calls.append(args[0].shape))
    model(*views, torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32))
    assert calls == [(4, 32, 3)]
    assert model.point_encoder(views[0]).shape == (2, 128)


def test_adacrossnet_gray_branch_must_match_its_input():
    with_gray, without = build_model(CFG), build_model(dict(CFG, gray_branch=False))
    points, image, gray = cloud(), torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    assert sorted(without(points, points, image)) == ["z_image", "z_points1", "z_points2"]
    with pytest.raises(ValueError, match="needs gray"):
        with_gray(points, points, image)
    with pytest.raises(ValueError, match="no grayscale branch"):
        without(points, points, image, gray)
    with pytest.raises(ValueError, match="same shape"):
        without(points, cloud(points=16), image)
    with pytest.raises(ValueError, match="both gray_encoder and gray_head"):
        AdaCrossNet(DGCNN(), nn.Identity(), ImageEncoder("resnet18"), nn.Identity(), gray_encoder=nn.Identity())


# ------------------------------------------------------------------------------------------ build_model
@pytest.mark.parametrize("cfg,cls", [(CFG, AdaCrossNet), ({"name": "dgcnn", "k": 8}, DGCNN),
                                     ({"name": "pointnet"}, PointNet), ({"name": "dgcnn_partseg"}, DGCNNPartSeg),
                                     ({"name": "dgcnn_semseg", "num_classes": 13}, DGCNNSemSeg)])
def test_build_model_names(cfg, cls):
    assert type(build_model(cfg)) is cls


def test_build_model_backbones_and_heads():
    model = build_model(dict(CFG, point_backbone={"name": "dgcnn_partseg_encoder", "k": 8, "emb_dims": 64},
                             gray_branch=False))
    assert type(model.point_encoder) is DGCNNPartSegEncoder and model.gray_encoder is None
    assert (model.point_head[0].in_features, model.point_head[0].out_features) == (64, 64)
    assert model.image_head[0].in_features == 512
    model = build_model(dict(CFG, point_backbone={"name": "pointnet"}))
    assert type(model.point_encoder) is PointNet and model.gray_encoder.in_channels == 1
    assert build_model({"name": "dgcnn_partseg", "k": 40}).k == 40


def test_build_model_errors_name_the_key():
    with pytest.raises(ConfigError, match="'model.name' unknown value 'dgcnn2'") as error:
        build_model(dict(CFG, name="dgcnn2"))
    assert all(name in str(error.value) for name in MODELS)
    with pytest.raises(ConfigError, match="model.point_backbone.name"):
        build_model(dict(CFG, point_backbone={"name": "pointnet2"}))
    with pytest.raises(ConfigError, match="model.image_encoder.name"):
        build_model(dict(CFG, image_encoder={"name": "vit"}))
    with pytest.raises(ConfigError, match="model.point_backbone.k' must be >= 1"):
        build_model(dict(CFG, point_backbone={"name": "dgcnn", "k": 0}))


# ------------------------------------------------------------------------------------------ input checks
@pytest.mark.parametrize("model,points,message", [
    (lambda: DGCNN(k=8), torch.rand(2, 32, 4), r"\(B, N, 3\), got \(2, 32, 4\)"),
    (lambda: DGCNN(k=8), torch.rand(32, 3), r"got \(32, 3\); a single cloud needs a batch dimension"),
    (lambda: DGCNN(k=8), torch.rand(2, 3, 32), r"got \(2, 3, 32\); points are channels-last"),
    (lambda: DGCNN(k=8), torch.rand(2, 5, 3), r"k=8 .* at least 8 points per cloud, got N=5"),
    (lambda: DGCNN(k=8), torch.randint(0, 5, (2, 32, 3)), r"floating-point points, got dtype torch.int64"),
    (lambda: PointNet(), torch.rand(2, 32, 6), r"PointNet: expected points of shape \(B, N, 3\)"),
    (lambda: DGCNNSemSeg(k=8), torch.rand(2, 32, 3), r"DGCNNSemSegEncoder: expected points of shape \(B, N, 9\)"),
    (lambda: DGCNNPartSegEncoder(k=40), torch.rand(2, 32, 3), r"k=40 .* got N=32"),
])
def test_bad_points_are_value_errors(model, points, message):
    with pytest.raises(ValueError, match=message):
        model()(points)


@pytest.mark.parametrize("category,message", [
    (torch.tensor([0.0, 1.0]), "category of shape"),
    (torch.tensor([[0], [1]]), "category of shape"),
    (torch.tensor([0, 16]), r"\[0, 16\), got \[0, 16\]"),
])
def test_bad_categories_are_value_errors(category, message):
    with pytest.raises(ValueError, match=message):
        DGCNNPartSeg(k=8, emb_dims=32)(cloud(), category)


def test_bad_images_are_value_errors():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\), got \(2, 3, 32, 32\)"):
        ImageEncoder("resnet18", in_channels=1)(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="unknown arch"):
        ImageEncoder("resnet7")


# ------------------------------------------------------------------- segmentation DGCNNs vs their oracles
def grads_in_our_names(module: nn.Module) -> dict[str, torch.Tensor]:
    """The oracle's gradients under our key names (the checkpoint converter does the renaming)."""
    state = {k: v.grad for k, v in module.state_dict(keep_vars=True).items() if isinstance(v, nn.Parameter)}
    return convert_state_dict(state)[0]


@pytest.mark.parametrize("kind", ["partseg", "semseg"])
def test_segmentation_models_equal_textbook_in_training(kind):
    """Training mode (batch statistics), fp64: outputs, input and parameter gradients, running statistics."""
    torch.manual_seed(0)
    if kind == "partseg":
        oracle, ours = CPPartSeg(k=6, emb_dims=32), DGCNNPartSeg(k=6, emb_dims=32, dropout=0.0)
        points, extra = cloud(points=20).double(), (torch.tensor([2, 9]),)
    else:
        oracle, ours = CPSemSeg(k=6, emb_dims=32), DGCNNSemSeg(k=6, emb_dims=32, dropout=0.0)
        points, extra = cloud(points=20, channels=9).double(), ()
    oracle.double()
    randomise_bn(oracle, torch.Generator().manual_seed(0), negative=True)
    ours.double().load_state_dict(convert_state_dict(oracle.state_dict())[0], strict=False)
    assert not set(ours.state_dict()) - set(convert_state_dict(oracle.state_dict())[0])
    x1, x2 = points.clone().requires_grad_(), points.clone().requires_grad_()
    out1, out2 = ours(x1, *extra), oracle(x2, *extra)
    assert_close(out1, out2, 1e-9, "logits")
    weight = torch.randn(out1.shape, dtype=out1.dtype, generator=torch.Generator().manual_seed(1))
    (out1 * weight).sum().backward()
    (out2 * weight).sum().backward()
    assert_close(x1.grad, x2.grad, 1e-9, "input gradient")
    theirs = grads_in_our_names(oracle)
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs[name], 1e-9, f"gradient of {name}")
    buffers = convert_state_dict(oracle.state_dict())[0]
    for name, b in ours.named_buffers():
        assert_close(b.double(), buffers[name].double(), 1e-9, name)


def test_sync_batchnorm_falls_back_to_the_materialised_edge_path():
    torch.manual_seed(0)
    model = DGCNN(k=8, emb_dims=32)
    randomise_bn(model, torch.Generator().manual_seed(0), negative=True)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(DGCNN(k=8, emb_dims=32))
    synced.load_state_dict(model.state_dict())
    points = cloud()
    with torch.no_grad():
        assert_close(synced.eval()(points), model.eval()(points), 1e-5, "SyncBatchNorm eval")
