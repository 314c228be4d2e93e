"""build_model(cfg): the `model` section of a config -> nn.Module, through one plain dict of builders.

Keys of `cfg`: name, point_backbone, k, emb_dims, proj_dim, image_arch, gray_branch, num_classes,
num_categories, dropout (configs/pretrain.yaml documents them).
"""

from __future__ import annotations

from typing import Mapping

from torch import nn

from models.adacrossnet import AdaCrossNet
from models.common import image_projection_head, point_projection_head
from models.dgcnn import DGCNN, DGCNNPartSeg, DGCNNPartSegEncoder, DGCNNSemSeg
from models.image_encoder import ARCHS, ImageEncoder
from models.pointnet import PointNet
from utils.errors import ConfigError

BACKBONES = {
    "dgcnn": lambda c: DGCNN(k=c["k"], emb_dims=c["emb_dims"]),
    "pointnet": lambda c: PointNet(emb_dims=c["emb_dims"]),
    "dgcnn_partseg": lambda c: DGCNNPartSegEncoder(k=c["k"], emb_dims=c["emb_dims"]),
}


def _choice(cfg: Mapping, key: str, choices) -> str:
    if cfg[key] not in choices:
        raise ConfigError(f"model.{key}: unknown value '{cfg[key]}' (choose from {', '.join(sorted(choices))})")
    return cfg[key]


def _image_branch(cfg: Mapping, in_channels: int) -> tuple[nn.Module, nn.Module]:
    encoder = ImageEncoder(_choice(cfg, "image_arch", ARCHS), in_channels=in_channels)
    return encoder, image_projection_head(encoder.out_dim, 512, cfg["proj_dim"])


def _adacrossnet(cfg: Mapping) -> AdaCrossNet:
    points = BACKBONES[_choice(cfg, "point_backbone", BACKBONES)](cfg)
    gray = _image_branch(cfg, 1) if cfg["gray_branch"] else (None, None)
    return AdaCrossNet(points, point_projection_head(points.out_dim, cfg["emb_dims"], cfg["proj_dim"]),
                       *_image_branch(cfg, 3), *gray)


MODELS = {
    "adacrossnet": _adacrossnet,
    **BACKBONES,
    "dgcnn_partseg": lambda c: DGCNNPartSeg(num_parts=c["num_classes"], num_categories=c["num_categories"],
                                            k=c["k"], emb_dims=c["emb_dims"], dropout=c["dropout"]),
    "dgcnn_semseg": lambda c: DGCNNSemSeg(num_classes=c["num_classes"], k=c["k"], emb_dims=c["emb_dims"],
                                          dropout=c["dropout"]),
}


def build_model(cfg: Mapping) -> nn.Module:
    """The model named by cfg["name"]; ConfigError for an unknown name or a missing key."""
    try:
        return MODELS[_choice(cfg, "name", MODELS)](cfg)
    except KeyError as error:
        raise ConfigError(f"model.{error.args[0]}: missing from the model config") from None
