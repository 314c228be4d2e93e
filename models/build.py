"""The model registries (plain dicts from config names to constructors) and `build_model(cfg)`.

A part's config keys are its constructor's keyword-only parameters (see utils/config.py). Adding a backbone
is one class plus one line in BACKBONES.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Annotated, Mapping

from torch import nn

from models.adacrossnet import AdaCrossNet
from models.classifier import ClassificationHead, PointClassifier
from models.common import image_projection_head, point_projection_head
from models.dgcnn import DGCNN, DGCNNPartSeg, DGCNNPartSegEncoder, DGCNNSemSeg, DGCNNSemSegEncoder
from models.image_encoder import ImageEncoder
from models.pointnet import PointNet
from models.segmenter import PartSegHead, PartSegmenter, SemSegHead, SemSegmenter
from utils.config import Fraction, Part, PositiveInt, Range, build_part

# Point backbones: forward (B, N, C) -> (B, out_dim), the representation the pretraining head, the linear SVM,
# the classification head and the tools use; features(points) -> (global (B, out_dim), per-point (B, N,
# point_dim)) for the segmentation heads; shared_weight, the last layer every output depends on (GradNorm).
# A backbone whose first positional parameter is in_channels takes other inputs than xyz (S3DIS's 9 channels).
BACKBONES = {
    "dgcnn": DGCNN,
    "pointnet": PointNet,
    "dgcnn_partseg_encoder": DGCNNPartSegEncoder,
    "dgcnn_semseg_encoder": DGCNNSemSegEncoder,
}

IMAGE_ENCODERS = {
    "resnet50": partial(ImageEncoder, "resnet50"),
    "resnet18": partial(ImageEncoder, "resnet18"),
}


def _backbone(section: Mapping, task: str, in_channels: int = 3):
    """The backbone of `section`, or a ValueError saying why it cannot serve `task` (build_part makes it one
    line naming the model section)."""
    cls = BACKBONES.get(section.get("name")) if isinstance(section, Mapping) else None
    takes_channels = cls is not None and "in_channels" in inspect.signature(cls).parameters
    if cls is not None and in_channels != 3 and not takes_channels:
        raise ValueError(f"backbone {section['name']} takes xyz only (3 channels); {task} feeds {in_channels}")
    backbone = build_part(BACKBONES, section, *((in_channels,) if takes_channels else ()))
    if task != "classification" and (getattr(backbone, "point_dim", None) is None
                                     or not callable(getattr(backbone, "features", None))):
        raise ValueError(f"backbone {section['name']} gives no per-point features; {task} needs them "
                         "(features() and point_dim)")
    return backbone


def part_segmenter(*, backbone: Annotated[Mapping, Part(BACKBONES)] = {"name": "dgcnn_partseg_encoder"},  # noqa: B006
                   num_parts: PositiveInt = 50, num_categories: PositiveInt = 16,
                   dropout: Fraction = 0.5) -> PartSegmenter:
    """Any backbone with per-point features + DGCNN's part-segmentation head."""
    points = _backbone(backbone, "part segmentation")
    return PartSegmenter(points, PartSegHead(points.out_dim, points.point_dim, num_parts, num_categories, dropout))


def sem_segmenter(in_channels: int = 9, *,
                  backbone: Annotated[Mapping, Part(BACKBONES)] = {"name": "dgcnn_semseg_encoder"},  # noqa: B006
                  num_classes: PositiveInt = 13, dropout: Fraction = 0.5) -> SemSegmenter:
    """Any backbone with per-point features that takes `in_channels` inputs + DGCNN's semantic-segmentation
    head."""
    points = _backbone(backbone, "semantic segmentation", in_channels)
    return SemSegmenter(points, SemSegHead(points.out_dim, points.point_dim, num_classes, dropout))


# The published DGCNN segmentation models (flat keys k, emb_dims), and the same heads on any backbone.
SEGMENTATION_MODELS = {
    "dgcnn_partseg": DGCNNPartSeg,
    "dgcnn_semseg": DGCNNSemSeg,
    "part_segmenter": part_segmenter,
    "sem_segmenter": sem_segmenter,
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
    points = _backbone(backbone, "classification")
    return PointClassifier(points, ClassificationHead(points.out_dim, num_classes, tuple(hidden), dropout),
                           class_names)


MODELS = {"adacrossnet": adacrossnet, "classifier": classifier, **BACKBONES, **SEGMENTATION_MODELS}


def build_model(cfg: Mapping, *args) -> nn.Module:
    """The model a `{name: ..., keys}` section names (the pretraining model: name adacrossnet); `args` go to its
    constructor before the keys (DGCNNSemSeg's input channels)."""
    return build_part(MODELS, cfg, *args, where="model")
