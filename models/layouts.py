"""The ancestors' checkpoint layouts, next to the models they describe, and layer-wise loading into our models.

`convert_state_dict` maps a loaded checkpoint of any supported layout into our key space:
  * our training checkpoints (`{"model": state_dict, ...}` as engine/trainer.py writes them): pretraining's
    `point_encoder.*` and heads, a task model's `backbone.*` and `head.*` (models/classifier.py,
    models/segmenter.py), bare backbones;
  * CrossPoint / CrossNet / AdaCrossNet released state_dicts: the DGCNN classification encoder
    (`dgcnn_cls_best.pth`: `conv1.0.weight`, `conv1.1.*` plus the duplicate `bn1.*`, ... `conv5`,
    `inv_head.{0,1,3}`, possibly the supervised `linear*/bn6/bn7`) into a bare DGCNN, `DGCNN_partseg`
    (`dgcnn_partseg_best.pth`, with `transform_net.*`) and AdaCrossNet's `DGCNN_semseg` into `backbone.*` and
    `head.*`, optionally wrapped in `module.` (DataParallel).
`encoder_tensors` takes the point encoder's part of such a state. `load_encoder_state` loads it into a model's
backbone (what fine-tuning and frozen features start from), `load_model_state` a whole model: a layer (a conv
with its BatchNorm) loads when every one of its tensors finds a tensor of the same name and shape; nothing
loads silently. The returned `LoadReport` lists what loaded, what kept its initial value, what the checkpoint
holds that this model has no place for, and the shape mismatches. `model_section_from_tensors` tells the
architecture of a checkpoint without a config.

The block names on the right of the tables below are attributes of models/dgcnn.py, models/segmenter.py and
models/common.py: renaming a layer there means updating its row here (tests/test_checkpoint.py loads every
layout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from utils.errors import CheckpointError

# CrossPoint numbers its blocks conv1..convN, each nn.Sequential(Conv, BN, LeakyReLU) with the BN also held
# as bnN. Where each of their convs lives in our models (its BN follows: edge1.conv -> edge1.bn, ...):
_CROSSPOINT_CLS = {1: "edge1.conv", 2: "edge2.conv", 3: "edge3.conv", 4: "edge4.conv", 5: "embed.conv"}
_CROSSPOINT_PARTSEG = {1: "backbone.edge1.conv", 2: "backbone.edge1.conv2", 3: "backbone.edge2.conv",
                       4: "backbone.edge2.conv2", 5: "backbone.edge3.conv", 6: "backbone.embed.conv",
                       7: "head.category.conv", 8: "head.seg1.conv", 9: "head.seg2.conv", 10: "head.seg3.conv",
                       11: "head.classifier"}
_CROSSPOINT_SEMSEG = {1: "backbone.edge1.conv", 2: "backbone.edge1.conv2", 3: "backbone.edge2.conv",
                      4: "backbone.edge2.conv2", 5: "backbone.edge3.conv", 6: "backbone.embed.conv",
                      7: "head.seg1.conv", 8: "head.seg2.conv", 9: "head.classifier"}
# Their Transform_Net: conv1, conv2 on edges, conv3 (BN 1024), then linear1 with the BN *re-bound* to bn3
# (512, replacing the 1024 one as an attribute only), linear2 with bn4, transform.
_CROSSPOINT_TRANSFORM = {1: "backbone.transform_net.edge.conv", 2: "backbone.transform_net.edge.conv2",
                         3: "backbone.transform_net.embed.conv"}
_TRANSFORM_RENAMES = {"linear1.": "fc1.linear.", "bn3.": "fc1.bn.", "linear2.": "fc2.linear.", "bn4.": "fc2.bn.",
                      "transform.": "transform."}
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "model_state", "net")


def _bn_of(conv_target: str) -> str:
    head, _, last = conv_target.rpartition(".")
    return f"{head}.{last.replace('conv', 'bn')}" if head else last.replace("conv", "bn")


def _convert_crosspoint(state: Mapping[str, torch.Tensor], table: Mapping[int, str], prefix: str = "",
                        out: dict | None = None) -> dict:
    """Rename CrossPoint keys under `prefix` (conv<n>.{0,1}.*, conv<n>.weight, bn<n>.* aliases, inv_head.*)."""
    out = {} if out is None else out
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if prefix == "" and rest.startswith("transform_net."):
            continue
        conv = re.fullmatch(r"conv(\d+)\.(0|1)\.(.+)", rest)
        plain = re.fullmatch(r"conv(\d+)\.(weight|bias)", rest)
        bn = re.fullmatch(r"bn(\d+)\.(.+)", rest)
        if conv and int(conv.group(1)) in table:
            target = table[int(conv.group(1))]
            out[f"{target}.{conv.group(3)}" if conv.group(2) == "0" else f"{_bn_of(target)}.{conv.group(3)}"] = value
        elif plain and int(plain.group(1)) in table:
            out[f"{table[int(plain.group(1))]}.{plain.group(2)}"] = value
        elif bn and f"{prefix}conv{bn.group(1)}.1.{bn.group(2)}" in state and not (
                prefix == "transform_net." and bn.group(1) in ("3", "4")):
            alias = state[f"{prefix}conv{bn.group(1)}.1.{bn.group(2)}"]
            if not (alias.shape == value.shape and torch.equal(alias, value)):
                out[key] = value  # not the alias it should be: keep it visible as unexpected
        elif prefix == "transform_net." and any(rest.startswith(old) for old in _TRANSFORM_RENAMES):
            old = next(old for old in _TRANSFORM_RENAMES if rest.startswith(old))
            out[f"backbone.transform_net.{_TRANSFORM_RENAMES[old]}{rest[len(old):]}"] = value
        elif rest.startswith("inv_head."):
            out[f"point_head.{rest[len('inv_head.'):]}"] = value
        else:
            out[key] = value  # e.g. their supervised classifier linear1/bn6/...: reported as unexpected
    return out


def convert_state_dict(obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """A loaded checkpoint of any supported layout -> (its tensors in our key space, the layout's name).

    Layouts: "ours" (keys as our models name them: bare backbones, `backbone.*` / `head.*` task models, possibly
    under a task wrapper's `model.`), "adacrossnet" (our pretraining model: `point_encoder.*` and heads),
    "crosspoint-cls" (-> a bare DGCNN), "crosspoint-partseg", "crosspoint-semseg" (-> `backbone.*`, `head.*`).
    """
    for wrapper in _WRAPPER_KEYS:
        inner = obj.get(wrapper) if isinstance(obj, Mapping) else None
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    state = {}
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, torch.Tensor):
            while key.startswith(("module.", "_orig_mod.")):
                key = key.split(".", 1)[1]
            state[key.replace("._orig_mod.", ".")] = value
    if any("point_encoder." in k for k in state):
        return state, "adacrossnet"
    if not any(re.fullmatch(r"(transform_net\.)?conv\d+\.0\.weight", k) for k in state):
        return state, "ours"
    if any(k.startswith("transform_net.") for k in state):
        out = _convert_crosspoint(state, _CROSSPOINT_TRANSFORM, prefix="transform_net.")
        return _convert_crosspoint(state, _CROSSPOINT_PARTSEG, out=out), "crosspoint-partseg"
    if "conv6.0.weight" in state:
        return _convert_crosspoint(state, _CROSSPOINT_SEMSEG), "crosspoint-semseg"
    return _convert_crosspoint(state, _CROSSPOINT_CLS), "crosspoint-cls"


def encoder_tensors(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """The point encoder's tensors of a converted state, under the encoder's own names, and how many tensors
    were left out (heads, image encoders, the objective): those under `point_encoder.` (pretraining) or
    `backbone.` (a task model), or the whole state when it names neither (a bare encoder)."""
    for marker in ("point_encoder.", "backbone."):
        found = {k.split(marker, 1)[1]: v for k, v in state.items() if k.startswith(marker) or f".{marker}" in k}
        if found:
            return found, len(state) - len(found)
    return dict(state), 0


# ------------------------------------------------------------------------------------------- loading


def _layer(key: str) -> str:
    """The layer a key belongs to; a conv or linear and its BatchNorm form one layer:
    edge1.conv.weight, edge1.bn.* -> "edge1"; edge1.conv2.weight, edge1.bn2.* -> "edge1.conv2";
    point_head.1.weight -> "point_head.1"."""
    parent = key.rpartition(".")[0]
    head, _, last = parent.rpartition(".")
    found = re.fullmatch(r"(?:conv|bn|linear)(\d*)", last)
    if not found or not head:
        return parent or key
    return f"{head}.conv{found.group(1)}" if found.group(1) else head


def _layer_names(keys) -> str:
    names = sorted({_layer(k) for k in keys})
    return ", ".join(names) if names else "-"


@dataclass
class LoadReport:
    """What `load_pretrained_encoder` did. Keys are in our key space (after conversion)."""

    model: str
    source: str
    layout: str
    loaded: list[str] = field(default_factory=list)       # model keys that received a checkpoint tensor
    missing: list[str] = field(default_factory=list)      # model keys left as they were
    unexpected: list[str] = field(default_factory=list)   # checkpoint keys this model has no place for
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint, model shape)
    left_out: int = 0                                     # tensors outside the point encoder (heads, images)

    def summary(self) -> str:
        def count(keys):
            return sum(not k.endswith("num_batches_tracked") for k in keys)

        lines = [f"loaded {count(self.loaded)}/{count(self.loaded) + count(self.missing)} tensors of {self.model} "
                 f"from {self.source} ({self.layout} layout)"]
        if self.left_out:
            lines.append(f"  left out: {self.left_out} tensors outside the point encoder (heads, image encoders, ...)")
        lines.append(f"  loaded layers: {_layer_names(self.loaded)}")
        shown = {}
        for key, theirs, ours in self.mismatched:
            shown.setdefault(_layer(key), []).append(f"{key} checkpoint {theirs} vs model {ours}")
        for layer, details in shown.items():
            more = f" (+{len(details) - 1} more)" if len(details) > 1 else ""
            lines.append(f"  shape mismatch, layer {layer} not loaded: {details[0]}{more}")
        if self.missing:
            lines.append(f"  kept initial values: {_layer_names(self.missing)}")
        if self.unexpected:
            lines.append(f"  in the checkpoint, not in this model: {_layer_names(self.unexpected)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def backbone_of(module: nn.Module) -> nn.Module:
    """The point encoder of a model: an AdaCrossNet's `point_encoder`, a task model's `backbone`, or the module
    itself (a bare backbone)."""
    for name in ("point_encoder", "backbone"):
        if isinstance(getattr(module, name, None), nn.Module):
            return getattr(module, name)
    return module


def load_encoder_state(module: nn.Module, obj: Mapping[str, Any], name: str = "<state_dict>", *,
                       log: Callable[[str], None] | None = print) -> LoadReport:
    """Load a pretrained point encoder (a loaded checkpoint dict or a state_dict; `name` says where it came
    from) into `module`'s backbone (`backbone_of`): what fine-tuning and frozen features start from. A task
    model's head keeps its initial values; the checkpoint's own heads are left out.

    A layer loads only as a whole: every tensor of a conv and its BatchNorm must exist in the checkpoint under
    the same name with the same shape. Returns the LoadReport (also passed to `log` unless log is None).
    Raises CheckpointError when nothing in it fits the backbone.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: expected a checkpoint dict or a state_dict, got {type(obj).__name__}")
    state, layout = convert_state_dict(obj)
    encoder, left_out = encoder_tensors(state)
    return _load_layers(backbone_of(module), encoder, name, layout, left_out, log)


def load_model_state(module: nn.Module, obj: Mapping[str, Any], name: str = "<state_dict>", *,
                     log: Callable[[str], None] | None = print) -> LoadReport:
    """Load a whole model (backbone and head; any supported layout) into `module`, layer by layer as
    load_encoder_state does: the tools' segmentation and classification models, CrossPoint's full releases."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: expected a checkpoint dict or a state_dict, got {type(obj).__name__}")
    state, layout = convert_state_dict(obj)
    return _load_layers(module, state, name, layout, 0, log)


def _load_layers(target_module: nn.Module, state: dict, name: str, layout: str, left_out: int,
                 log: Callable[[str], None] | None) -> LoadReport:
    if not state:
        raise CheckpointError(f"{name}: holds no tensors")
    target = target_module.state_dict()
    prefixes = {key.split(".", 1)[0] for key in state}
    if not set(state) & set(target) and len(prefixes) == 1 and all("." in key for key in state):
        state = {key.split(".", 1)[1]: value for key, value in state.items()}  # e.g. a task wrapper's "model."
    report = LoadReport(type(target_module).__name__, name, layout, left_out=left_out)

    by_layer: dict[str, list[str]] = {}
    for key in state:
        by_layer.setdefault(_layer(key), []).append(key)
    update = {}
    for keys in by_layer.values():
        present = [k for k in keys if k in target]
        report.unexpected += [k for k in keys if k not in target]
        wrong = [(k, tuple(state[k].shape), tuple(target[k].shape)) for k in present
                 if state[k].shape != target[k].shape]
        report.mismatched += wrong
        if present and not wrong and len(present) == len(keys):
            update.update({k: state[k] for k in present})
    if not update:
        example = (f"e.g. {report.mismatched[0][0]} is {report.mismatched[0][1]} there, {report.mismatched[0][2]} here"
                   if report.mismatched else f"e.g. it has {next(iter(state))}, the model has {next(iter(target))}")
        raise CheckpointError(f"{name}: nothing in it fits {report.model} ({layout} layout, {len(state)} tensors; "
                              f"{example})")
    report.loaded = [k for k in target if k in update]
    report.missing = [k for k in target if k not in update and not k.endswith("num_batches_tracked")]
    merged = dict(target)
    merged.update({k: v.to(dtype=target[k].dtype) for k, v in update.items()})
    target_module.load_state_dict(merged, strict=True)
    if log is not None:
        log(report.summary())
    return report


# ------------------------------------------------------------------------------------------- inference
def model_section_from_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The `models.build.build_model` section of the point model that a converted state (convert_state_dict)
    holds, for checkpoints without a config (CrossPoint / AdaCrossNet releases, bare encoders): the
    architecture from which tensors exist, the widths from their shapes. k is not in the tensors: the model's
    default is left in place. CheckpointError when no point model is recognised."""
    encoder, _ = encoder_tensors(state)
    head = {k.split("head.", 1)[1]: v for k, v in state.items() if k.startswith("head.") or ".head." in k}

    def shape(tensors: Mapping[str, torch.Tensor], key: str, dim: int) -> int | None:
        return int(tensors[key].shape[dim]) if key in tensors and tensors[key].dim() > dim else None

    emb_dims = shape(encoder, "embed.conv.weight", 0)
    pointnet = sorted((key for key in encoder if re.fullmatch(r"layers\.\d+\.conv\.weight", key)),
                      key=lambda key: int(key.split(".")[1]))
    if "classifier.weight" in head and "category.conv.weight" in head:
        return {"name": "dgcnn_partseg", "num_parts": shape(head, "classifier.weight", 0),
                "num_categories": shape(head, "category.conv.weight", 1), "emb_dims": emb_dims}
    if "classifier.weight" in head:
        return {"name": "dgcnn_semseg", "num_classes": shape(head, "classifier.weight", 0), "emb_dims": emb_dims,
                "in_channels": (shape(encoder, "edge1.conv.weight", 1) or 18) // 2}
    if "transform_net.embed.conv.weight" in encoder:
        return {"name": "dgcnn_partseg_encoder", "emb_dims": emb_dims}
    if "edge4.conv.weight" in encoder:
        return {"name": "dgcnn", "emb_dims": emb_dims}
    if "edge3.conv.weight" in encoder and "edge1.conv2.weight" in encoder:
        return {"name": "dgcnn_semseg_encoder", "emb_dims": emb_dims,
                "in_channels": shape(encoder, "edge1.conv.weight", 1) // 2}
    if pointnet:
        return {"name": "pointnet", "emb_dims": shape(encoder, pointnet[-1], 0)}
    raise CheckpointError(f"no point model recognised in it ({len(state)} tensors, e.g. {next(iter(state), 'none')})")
