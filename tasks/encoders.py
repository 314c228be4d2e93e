"""Pretrained point encoders into our models: read the file safely, map its layout, load layer by layer, report."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from torch import nn

from models.layouts import LoadReport, load_encoder_state
from utils import distributed
from utils.checkpoint import load_checkpoint_file
from utils.errors import CheckpointError


def load_pretrained_encoder(module: nn.Module, source: str | os.PathLike | Mapping[str, Any], *,
                            log: Callable[[str], None] | None = print) -> LoadReport:
    """`models.layouts.load_encoder_state` from a checkpoint file (read with weights_only=True) or a dict."""
    if isinstance(source, (str, os.PathLike)):
        return load_encoder_state(module, load_checkpoint_file(source), str(source), log=log)
    if isinstance(source, Mapping):
        return load_encoder_state(module, source, log=log)
    raise CheckpointError(f"expected a checkpoint path or a state_dict, got {type(source).__name__}")


def load_encoder_weights(model: nn.Module, path: str | os.PathLike, *, require_all: bool = False) -> LoadReport:
    """Load a pretrained point encoder into `model` and print the report (rank 0). With `require_all` every
    tensor of `model` must be loaded (frozen-feature evaluation: a layer left at its random initial value would
    silently change what is measured); otherwise a CheckpointError."""
    report = load_pretrained_encoder(model, path, log=None)
    if distributed.is_main_process():
        print(report.summary())
    missing = [k for k in report.missing if not k.endswith("num_batches_tracked")]
    if require_all and missing:
        mismatch = f"; e.g. {report.mismatched[0][0]} is {report.mismatched[0][1]} there, " \
                   f"{report.mismatched[0][2]} here" if report.mismatched else ""
        layers = sorted({k.split(".")[0] for k in missing})
        raise CheckpointError(f"{path}: does not fit the {report.model} encoder: {len(missing)} tensors "
                              f"(layers {', '.join(layers)}) would keep their random values{mismatch}; check "
                              f"model.name and model.emb_dims")
    return report


def report_dict(report: LoadReport) -> dict:
    """A LoadReport as JSON for metrics.json."""
    def count(keys):
        return sum(not k.endswith("num_batches_tracked") for k in keys)

    return {"source": report.source, "layout": report.layout, "model": report.model,
            "loaded_tensors": count(report.loaded), "model_tensors": count(report.loaded) + count(report.missing),
            "loaded": report.loaded, "missing": report.missing, "unexpected": report.unexpected,
            "mismatched": [{"key": k, "checkpoint": list(a), "model": list(b)} for k, a, b in report.mismatched],
            "left_out": report.left_out}
