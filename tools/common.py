"""What the tools share: the checkpoint -> model function and the features file.

`load_model` is the only code in tools/ that knows how checkpoints are laid out (which config keys name the
architecture, which tensors betray it when there is no config). Everything else asks it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from torch import nn

from models.dgcnn import DGCNN, DGCNNPartSeg, DGCNNPartSegEncoder, DGCNNSemSeg
from models.pointnet import PointNet
from models.layouts import convert_state_dict
from tasks.encoders import load_pretrained_encoder
from utils.checkpoint import load_checkpoint_file
from utils.errors import CheckpointError, ConfigError, DataError
from utils.files import atomic_write, describe_os_error

ENCODERS = ("dgcnn", "pointnet", "dgcnn_partseg_encoder")
SEGMENTERS = ("dgcnn_partseg", "dgcnn_semseg")


@dataclass(frozen=True)
class ModelInfo:
    """What `load_model` built. `outputs`: the feature width (encoders) or the number of classes (segmenters)."""

    architecture: str          # one of ENCODERS or SEGMENTERS
    k: int | None              # neighbours of the kNN graphs (None: PointNet)
    emb_dims: int
    outputs: int
    in_channels: int           # 3, or 9 for the S3DIS model (xyz, rgb/255, room-normalised xyz)
    num_categories: int | None  # part segmentation: the category one-hot's width
    num_points: int | None     # points per cloud in the run that wrote the checkpoint, when it says
    layout: str                # the tensors' naming (utils.checkpoint.convert_state_dict)
    described_by: str          # "config" (the checkpoint's own) or "tensor shapes"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def load_model(checkpoint: str | os.PathLike, task: str, *, k: int | None = None,
               emb_dims: int | None = None) -> tuple[nn.Module, ModelInfo]:
    """The model a checkpoint holds, built and loaded, in eval mode without gradients.

    `task` "embed" returns a point encoder (B, N, 3) -> (B, F); "segment" a part- or semantic-segmentation
    model. Understood: train.py checkpoints (`config.model`: name adacrossnet, point_backbone {name, k,
    emb_dims}; `model`: the AdaCrossNet state), downstream fine-tuning checkpoints (`config.model`: name
    dgcnn_partseg with num_parts / num_categories or dgcnn_semseg with num_classes, and k, emb_dims;
    `config.data.num_points`; `model`: the PointSegmentation state, keys `model.*`), and
    state_dicts without a config (CrossPoint / AdaCrossNet releases, bare encoders): the architecture then
    follows from which tensors exist and their shapes, k from `k` or the model's default (DGCNN 20,
    part-seg 40, sem-seg 20). `k` and `emb_dims` override the checkpoint. Every tensor of the returned model
    must come from the checkpoint, else CheckpointError naming the file and what does not fit.
    """
    path = Path(checkpoint)
    raw = load_checkpoint_file(path)
    state, layout, _ = convert_state_dict(raw)
    if state and all(key.startswith("model.") for key in state):  # a downstream run's PointSegmentation
        state = {key[len("model."):]: value for key, value in state.items()}
    config = raw.get("config") if isinstance(raw.get("config"), Mapping) else {}
    model_cfg = config.get("model") if isinstance(config.get("model"), Mapping) else {}

    def shape(key: str, dim: int) -> int | None:
        return int(state[key].shape[dim]) if key in state and state[key].dim() > dim else None

    if "name" in model_cfg:
        described_by = "config"
        name = model_cfg["name"]
        architecture = name
        part = model_cfg
        if name == "adacrossnet":  # pretraining: only its point encoder, whatever the backbone
            part = model_cfg.get("point_backbone")
            if not isinstance(part, Mapping):  # written before backbones were sections: name, k at model level
                part = {**model_cfg, "name": {"dgcnn_partseg": "dgcnn_partseg_encoder"}.get(part, part)}
            architecture = part.get("name")
        k = k or part.get("k")
        emb_dims = emb_dims or part.get("emb_dims")
        classes = part.get("num_parts", part.get("num_classes"))
        categories = part.get("num_categories")
    else:
        described_by = "tensor shapes"
        pointnet = sorted((key for key in state if key.startswith("layers.") and key.endswith(".conv.weight")),
                          key=lambda key: int(key.split(".")[1]))
        if "classifier.weight" in state:
            architecture = "dgcnn_partseg" if "category.conv.weight" in state else "dgcnn_semseg"
        elif "transform_net.embed.conv.weight" in state:
            architecture = "dgcnn_partseg_encoder"
        elif "edge4.conv.weight" in state:
            architecture = "dgcnn"
        elif pointnet:
            architecture = "pointnet"
        else:
            raise CheckpointError(f"{path}: no point model recognised in it ({layout} layout, {len(state)} tensors, "
                                  f"e.g. {next(iter(state), 'none')})")
        emb_dims = emb_dims or shape(pointnet[-1] if architecture == "pointnet" else "embed.conv.weight", 0)
        classes, categories = shape("classifier.weight", 0), shape("category.conv.weight", 1)
    if architecture == "dgcnn_partseg" and task == "embed":
        architecture = "dgcnn_partseg_encoder"
    wanted = ENCODERS if task == "embed" else SEGMENTERS
    if architecture not in wanted:
        raise CheckpointError(
            f"{path}: holds a {architecture} model; " + (
                "a semantic-segmentation model gives no per-cloud feature: embed with a pretrained encoder"
                if task == "embed" else
                "that is an encoder without a segmentation head: fine-tune it first (python -m "
                "downstream.segmentation.main_partseg or main_semseg) and segment with that run's best.pt"))
    k = k or (40 if architecture.startswith("dgcnn_partseg") else 20)
    in_channels = (shape("edge1.conv.weight", 1) or 18) // 2 if architecture == "dgcnn_semseg" else 3
    build: dict[str, Callable[[], nn.Module]] = {
        "dgcnn": lambda: DGCNN(k=k, emb_dims=emb_dims),
        "pointnet": lambda: PointNet(emb_dims=emb_dims),
        "dgcnn_partseg_encoder": lambda: DGCNNPartSegEncoder(k=k, emb_dims=emb_dims),
        "dgcnn_partseg": lambda: DGCNNPartSeg(num_parts=classes, num_categories=categories, k=k, emb_dims=emb_dims),
        "dgcnn_semseg": lambda: DGCNNSemSeg(num_classes=classes, k=k, emb_dims=emb_dims, in_channels=in_channels),
    }
    if not emb_dims or (task == "segment" and not classes) or (architecture == "dgcnn_partseg" and not categories):
        raise CheckpointError(f"{path}: cannot tell the size of its {architecture} model (emb_dims {emb_dims}, "
                              f"classes {classes}, categories {categories})")
    model = build[architecture]()
    try:
        report = load_pretrained_encoder(model, raw, log=None)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {str(error).removeprefix('<state_dict>: ')}") from None
    if report.missing:
        layers = sorted({key.rsplit(".", 2)[0] for key in report.missing})
        mismatch = (f"; e.g. {report.mismatched[0][0]} is {report.mismatched[0][1]} there, {report.mismatched[0][2]} "
                    f"here" if report.mismatched else "")
        raise CheckpointError(f"{path}: does not fit {architecture} (k={k}, emb_dims={emb_dims}): "
                              f"{', '.join(layers)} would keep random weights{mismatch}")
    model.eval().requires_grad_(False)
    outputs = model.out_dim if task == "embed" else classes
    num_points = config.get("data", {}).get("num_points") if isinstance(config.get("data"), Mapping) else None
    return model, ModelInfo(architecture, None if architecture == "pointnet" else k, emb_dims, outputs,
                            in_channels, categories if architecture == "dgcnn_partseg" else None, num_points,
                            layout, described_by)


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256, or a CheckpointError naming it when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({describe_os_error(error)})") from None
    return digest.hexdigest()


def check_device(flag: str, text: str) -> str:
    """`text` if it names a device the tools run on (cpu, cuda, cuda:N), else a ConfigError naming `flag`."""
    if text == "cpu" or re.fullmatch(r"cuda(:\d+)?", text):
        return text
    raise ConfigError(f"{flag} {text}: expected cpu, cuda or cuda:N")


def check_positive(args, flags: Iterable[str]) -> None:
    """ConfigError unless each of the options `flags` (attribute names) is >= 1 where given (None: not given)."""
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')}: must be >= 1, got {value}")


# ------------------------------------------------------------------------------------------ features file
FEATURE_KEYS = ("features", "paths", "checkpoint", "checkpoint_sha256", "model", "preprocessing")


def save_features(path: str | os.PathLike, arrays: Mapping[str, np.ndarray | str | list]) -> None:
    """np.savez of plain arrays only (strings as unicode arrays), so that np.load needs no pickle."""
    plain = {key: np.asarray(value) for key, value in arrays.items()}
    for key, value in plain.items():
        if value.dtype.kind not in "fiuUb":
            raise TypeError(f"save_features: '{key}' is {value.dtype}, not a plain array")
    # a file object, so np.savez does not append .npz to the name
    atomic_write(path, lambda stream: np.savez(stream, **plain))


def load_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A features file written by tools.embed, checked; DataError naming the file and the cause."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a features file written by tools.embed ({error})") from None
    missing = [key for key in FEATURE_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path}: not a features file written by tools.embed (no {', '.join(missing)})")
    features, paths = arrays["features"], arrays["paths"]
    if features.ndim != 2 or len(features) != len(paths) or features.dtype.kind != "f":
        raise DataError(f"{path}: features {features.shape} {features.dtype} do not match {len(paths)} paths")
    if "labels" in arrays and ("class_names" not in arrays or len(arrays["labels"]) != len(paths)):
        raise DataError(f"{path}: labels without class_names, or not one per path")
    return arrays


def same_encoder(a: Mapping, a_name: str, b: Mapping, b_name: str) -> None:
    """DataError unless two features files come from the same checkpoint and preprocessing (else their
    features are not comparable)."""
    for key in ("checkpoint_sha256", "preprocessing"):
        if str(a[key]) != str(b[key]):
            what = "checkpoint" if key == "checkpoint_sha256" else "preprocessing"
            raise DataError(f"{b_name}: features from another {what} than {a_name} ({b[key]} vs {a[key]}); "
                            "embed both with the same checkpoint and settings")
