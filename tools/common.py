"""What the tools share: the checkpoint -> model function and the features file.

`load_model` is the only code in tools/ that reads a checkpoint's model: it takes the section from the
checkpoint's config (or, without one, from `models.layouts.model_section_from_tensors`) and builds it through
`models.build.build_model`. Everything else asks it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from torch import nn

from models.build import build_model
from models.layouts import convert_state_dict, load_model_state, model_section_from_tensors
from tasks.encoders import load_pretrained_encoder
from utils.checkpoint import load_checkpoint_file
from utils.errors import CheckpointError, ConfigError, DataError
from utils.files import atomic_write, describe_os_error

ENCODERS = ("dgcnn", "pointnet", "dgcnn_partseg_encoder")
SEGMENTERS = ("dgcnn_partseg", "dgcnn_semseg", "part_segmenter", "sem_segmenter")
PART_SEGMENTERS = ("dgcnn_partseg", "part_segmenter")
TASKS = {"embed": ENCODERS, "segment": SEGMENTERS, "classify": ("classifier",)}
DEFAULT_K = {"dgcnn": 20, "dgcnn_partseg_encoder": 40, "dgcnn_partseg": 40, "dgcnn_semseg": 20,
             "dgcnn_semseg_encoder": 20}


@dataclass(frozen=True)
class ModelInfo:
    """What `load_model` built. `outputs`: the feature width (encoders) or the number of classes (segmenters,
    classifiers)."""

    architecture: str          # one of ENCODERS, SEGMENTERS or "classifier"
    k: int | None              # neighbours of the kNN graphs (None: PointNet)
    emb_dims: int
    outputs: int
    in_channels: int           # 3, or 9 for the S3DIS model (xyz, rgb/255, room-normalised xyz)
    num_categories: int | None  # part segmentation: the category one-hot's width
    num_points: int | None     # points per cloud in the run that wrote the checkpoint, when it says
    layout: str                # the tensors' naming (utils.checkpoint.convert_state_dict)
    described_by: str          # "config" (the checkpoint's own) or "tensor shapes"
    class_names: tuple[str, ...] | None = None  # a classifier's classes, in the order of its outputs

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _section_from_config(model_cfg: Mapping, task: str) -> dict:
    """The build_model section of what `task` needs, from a checkpoint's own `config.model`."""
    name = model_cfg["name"]
    if name == "adacrossnet":  # pretraining: only its point encoder, whatever the backbone
        part = model_cfg.get("point_backbone")
        if not isinstance(part, Mapping):  # written before backbones were sections: name, k at model level
            old = model_cfg.get("point_backbone", "dgcnn")
            part = {"name": {"dgcnn_partseg": "dgcnn_partseg_encoder"}.get(old, old),
                    **{key: model_cfg[key] for key in ("k", "emb_dims") if key in model_cfg}}
        return dict(part)
    if name in ("classifier", "part_segmenter") and task == "embed":
        return dict(model_cfg["backbone"])
    if name == "dgcnn_partseg" and task == "embed":
        return {"name": "dgcnn_partseg_encoder", **{key: model_cfg[key] for key in ("k", "emb_dims") if key in model_cfg}}
    return dict(model_cfg)


def load_model(checkpoint: str | os.PathLike, task: str, *, k: int | None = None,
               emb_dims: int | None = None) -> tuple[nn.Module, ModelInfo]:
    """The model a checkpoint holds, built through `models.build.build_model` and loaded, in eval mode without
    gradients.

    `task` "embed" returns a point encoder (B, N, 3) -> (B, F); "segment" a part- or semantic-segmentation
    model; "classify" a fine-tuned classifier (B, N, 3) -> logits. The model comes from the checkpoint's own
    `config.model` (train.py's pretraining, the downstream fine-tuning runs) or, for state_dicts without a
    config (CrossPoint / AdaCrossNet releases, bare encoders), from its tensors
    (`models.layouts.model_section_from_tensors`), k from `k` or the model's default (DGCNN 20, part-seg 40,
    sem-seg 20). `k` and `emb_dims` override the checkpoint. Every tensor of the returned model must come from
    the checkpoint, else CheckpointError naming the file and what does not fit.
    """
    path = Path(checkpoint)
    raw = load_checkpoint_file(path)
    config = raw.get("config") if isinstance(raw.get("config"), Mapping) else {}
    model_cfg = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    state, layout = convert_state_dict(raw)
    if "name" in model_cfg:
        described_by, section = "config", _section_from_config(model_cfg, task)
    else:
        described_by = "tensor shapes"
        if state and all(key.startswith("model.") for key in state):  # a downstream run's task wrapper
            state = {key[len("model."):]: value for key, value in state.items()}
        try:
            section = model_section_from_tensors(state)
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error} ({layout} layout)") from None
        if section["name"] == "dgcnn_partseg" and task == "embed":
            section = {"name": "dgcnn_partseg_encoder", "emb_dims": section["emb_dims"]}
    architecture = section["name"]
    if architecture not in TASKS[task]:
        raise CheckpointError(f"{path}: holds a {architecture} model; " + {
            "embed": "a semantic-segmentation model gives no per-cloud feature: embed with a pretrained encoder",
            "segment": "that is not a segmentation model: fine-tune it first (python -m "
                       "downstream.segmentation.main_partseg or main_semseg) and segment with that run's best.pt",
            "classify": "that is not a fine-tuned classifier: fine-tune one (python -m "
                        "downstream.classification.main_finetune), or label with a reference set (--reference)",
        }[task])
    backbone = section["backbone"] if isinstance(section.get("backbone"), Mapping) else section
    if backbone.get("name") != "pointnet":
        backbone["k"] = k or backbone.get("k") or DEFAULT_K[backbone["name"]]
    if emb_dims:
        backbone["emb_dims"] = emb_dims
    in_channels = section.pop("in_channels", 9 if architecture in ("dgcnn_semseg", "sem_segmenter") else 3)
    if not backbone.get("emb_dims") and described_by == "tensor shapes":
        raise CheckpointError(f"{path}: cannot tell the size of its {architecture} model from its tensors")
    try:
        model = build_model(section, *((in_channels,) if architecture in ("dgcnn_semseg", "sem_segmenter") else ()))
    except ConfigError as error:
        raise CheckpointError(f"{path}: its model config does not build ({error})") from None
    loader = load_pretrained_encoder if task == "embed" else load_model_state
    try:
        report = loader(model, raw, log=None)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {str(error).removeprefix('<state_dict>: ')}") from None
    if report.missing:
        layers = sorted({key.rsplit(".", 2)[0] for key in report.missing})
        mismatch = (f"; e.g. {report.mismatched[0][0]} is {report.mismatched[0][1]} there, {report.mismatched[0][2]} "
                    f"here" if report.mismatched else "")
        raise CheckpointError(f"{path}: does not fit {architecture} (k={backbone.get('k')}, emb_dims="
                              f"{backbone.get('emb_dims')}): {', '.join(layers)} would keep random weights{mismatch}")
    model.eval().requires_grad_(False)
    net = getattr(model, "backbone", model)
    outputs = {"embed": lambda: model.out_dim, "segment": lambda: section.get("num_parts", section.get("num_classes")),
               "classify": lambda: section["num_classes"]}[task]()
    num_points = config.get("data", {}).get("num_points") if isinstance(config.get("data"), Mapping) else None
    names = tuple(model.class_names) if architecture == "classifier" and model.class_names else None
    return model, ModelInfo(architecture, getattr(net, "k", None), getattr(net, "emb_dims", backbone.get("emb_dims")),
                            outputs, in_channels, section.get("num_categories") if architecture in PART_SEGMENTERS
                            else None, num_points, layout, described_by, names)


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
