"""The model registries (plain dicts from config names to constructors) and `build_model(cfg)`.

A part's config keys are its constructor's keyword-only parameters (see utils/config.py). Adding a backbone
is one class plus one line in BACKBONES.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Mapping

from torch import nn

from models.adacrossnet import AdaCrossNet
from models.classifier import ClassificationHead, PointClassifier
from models.common import image_projection_head, point_projection_head
from models.dgcnn import DGCNN, DGCNNPartSeg, DGCNNPartSegEncoder, DGCNNSemSeg
from models.image_encoder import ImageEncoder
from models.pointnet import PointNet
from utils.config import Fraction, Part, PositiveInt, Range, build_part

# Point encoders: (B, N, 3) -> (B, out_dim), the representation the linear SVM and the tools use.
BACKBONES = {
    "dgcnn": DGCNN,
    "pointnet": PointNet,
    "dgcnn_partseg_encoder": DGCNNPartSegEncoder,
}

IMAGE_ENCODERS = {
    "resnet50": partial(ImageEncoder, "resnet50"),
    "resnet18": partial(ImageEncoder, "resnet18"),
}

SEGMENTATION_MODELS = {
    "dgcnn_partseg": DGCNNPartSeg,
    "dgcnn_semseg": DGCNNSemSeg,
}


def adacrossnet(*, point_backbone: Annotated[Mapping, Part(BACKBONES)] = {"name": "dgcnn"},  # noqa: B006
                image_encoder: Annotated[Mapping, Part(IMAGE_ENCODERS)] = {"name": "resnet50"},  # noqa: B006
                gray_branch: bool = True, proj_dim: PositiveInt = 256,
                image_hidden: PositiveInt = 512) -> AdaCrossNet:
    """The pretraining model: point encoder + head (out_dim -> emb_dims -> proj_dim, CrossPoint's), an RGB
    image encoder + head (-> image_hidden -> proj_dim) and, with `gray_branch`, a second one on grayscale."""
    points = build_part(BACKBONES, point_backbone)
    hidden = point_backbone.get("emb_dims", points.out_dim)

    def image_branch(in_channels: int):
        encoder = build_part(IMAGE_ENCODERS, image_encoder, in_channels)
        return encoder, image_projection_head(encoder.out_dim, image_hidden, proj_dim)

    gray = image_branch(1) if gray_branch else (None, None)
    return AdaCrossNet(points, point_projection_head(points.out_dim, hidden, proj_dim), *image_branch(3), *gray)


def classifier(*, backbone: Annotated[Mapping, Part(BACKBONES)] = {"name": "dgcnn"},  # noqa: B006
               num_classes: PositiveInt = 40, class_names: list[str] | None = None,
               hidden: Annotated[list[int], Range(ge=1)] = [512, 256],  # noqa: B006
               dropout: Fraction = 0.5) -> PointClassifier:
    """A backbone's global feature -> DGCNN's classification head (hidden widths, dropout) -> num_classes logits.
    `class_names`, when given, must number num_classes."""
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names: {len(class_names)} names for num_classes={num_classes}")
    points = build_part(BACKBONES, backbone)
    return PointClassifier(points, ClassificationHead(points.out_dim, num_classes, tuple(hidden), dropout),
                           class_names)


MODELS = {"adacrossnet": adacrossnet, "classifier": classifier, **BACKBONES, **SEGMENTATION_MODELS}


def build_model(cfg: Mapping, *args) -> nn.Module:
    """The model a `{name: ..., keys}` section names (the pretraining model: name adacrossnet); `args` go to its
    constructor before the keys (DGCNNSemSeg's input channels)."""
    return build_part(MODELS, cfg, *args, where="model")
