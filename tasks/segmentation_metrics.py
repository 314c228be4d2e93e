"""Segmentation metrics: ShapeNetPart instance / class mIoU and S3DIS overall accuracy / mIoU (docs/protocol.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from datasets.shapenet_part import CATEGORY_NAMES

def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _part_mask(part_ranges) -> np.ndarray:
    """(num_categories, num_parts) bool: which part ids belong to which category.

    `part_ranges` maps each category 0..C-1 to its part ids: a mapping `{category: ids}` or a sequence indexed
    by category, where `ids` is any iterable of ints (typically a `range`, as ShapeNetPart's `PART_RANGES`).
    """
    if isinstance(part_ranges, Mapping):
        if sorted(part_ranges) != list(range(len(part_ranges))):
            raise ValueError(f"part_ranges: keys must be the categories 0..{len(part_ranges) - 1}")
        entries = [part_ranges[c] for c in range(len(part_ranges))]
    else:
        entries = list(part_ranges)
    ids = [np.asarray(list(e), dtype=np.int64) for e in entries]
    if not ids or any(len(i) == 0 or i.min() < 0 for i in ids):
        raise ValueError("part_ranges: every category needs at least one non-negative part id")
    num_parts = int(max(i.max() for i in ids)) + 1
    mask = np.zeros((len(ids), num_parts), dtype=bool)
    for c, i in enumerate(ids):
        mask[c, i] = True
    return mask


def restrict_to_category(logits, category, part_ranges):
    """Argmax of part logits `(S, N, P)` over the parts of each shape's category only -> `(S, N)` int64.

    `category (S,)` indexes `part_ranges` (category -> its part ids, e.g. ShapeNetPart's `PART_RANGES`). Works on numpy arrays (returns numpy) and on torch tensors (returns an int64
    tensor on the same device).
    """
    mask = _part_mask(part_ranges)
    if isinstance(logits, torch.Tensor):
        m = torch.as_tensor(mask, device=logits.device)[torch.as_tensor(category, device=logits.device).long()]
        if logits.shape[-1] != m.shape[-1] or logits.ndim != 3:
            raise ValueError(f"restrict_to_category: logits must be (S, N, {m.shape[-1]}), got {tuple(logits.shape)}")
        return logits.masked_fill(~m[:, None, :], float("-inf")).argmax(-1)
    logits = np.asarray(logits)
    category = np.asarray(category).reshape(-1).astype(np.int64)
    if logits.ndim != 3 or logits.shape[-1] != mask.shape[1] or len(category) != len(logits):
        raise ValueError(f"restrict_to_category: logits must be (S, N, {mask.shape[1]}) with S = len(category), "
                         f"got {logits.shape} and {category.shape}")
    masked = np.where(mask[category][:, None, :], logits, -np.inf)
    return masked.argmax(-1).astype(np.int64)


def part_seg_ious(pred, seg, category, part_ranges) -> np.ndarray:
    """Per-shape mean IoU over the parts of the shape's category -> `(S,)` float64.

    `pred`, `seg` `(S, N)` part ids, `category (S,)`, `part_ranges` category -> part ids (see
    `restrict_to_category`). A part whose union is empty (absent from both prediction
    and ground truth) has IoU 1, as in the standard ShapeNetPart evaluation. Predictions are not restricted
    here: a point predicted as another category's part simply counts as wrong (use `restrict_to_category`
    first to follow the protocol).
    """
    pred, seg = _numpy(pred).astype(np.int64), _numpy(seg).astype(np.int64)
    category = _numpy(category).reshape(-1).astype(np.int64)
    mask = _part_mask(part_ranges)
    num_cat, num_parts = mask.shape
    if pred.shape != seg.shape or pred.ndim != 2 or len(category) != len(seg):
        raise ValueError(f"part_seg_ious: pred and seg must be (S, N) and category (S,); "
                         f"got {pred.shape}, {seg.shape}, {category.shape}")
    for name, a, hi in (("pred", pred, num_parts), ("seg", seg, num_parts), ("category", category, num_cat)):
        if a.size and (a.min() < 0 or a.max() >= hi):
            raise ValueError(f"part_seg_ious: {name} values must lie in [0, {hi}), got [{a.min()}, {a.max()}]")
    S = len(seg)
    offset = (np.arange(S) * num_parts)[:, None]
    length = S * num_parts
    inter = np.bincount((offset + seg)[pred == seg], minlength=length).reshape(S, num_parts)
    n_pred = np.bincount((offset + pred).ravel(), minlength=length).reshape(S, num_parts)
    n_seg = np.bincount((offset + seg).ravel(), minlength=length).reshape(S, num_parts)
    union = n_pred + n_seg - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    own = mask[category]
    return (iou * own).sum(1) / own.sum(1)


def part_seg_miou(pred, seg, category, part_ranges, category_names: Sequence[str] | None = None) -> dict:
    """ShapeNetPart metrics.

    Returns `dict(instance_miou, class_miou, per_category={name: miou}, missing_categories=[names])`:
    instance mIoU = mean of `part_seg_ious` over all shapes; class mIoU = mean over categories of the mean shape
    IoU within the category. Categories with no test shape are left out of both `per_category` and the class
    mean, and listed in `missing_categories`.
    """
    category = _numpy(category).reshape(-1).astype(np.int64)
    ious = part_seg_ious(pred, seg, category, part_ranges)
    num_cat = len(part_ranges)
    if category_names is None:
        category_names = CATEGORY_NAMES if num_cat == len(CATEGORY_NAMES) else \
            [str(c) for c in range(num_cat)]
    if len(category_names) != num_cat:
        raise ValueError(f"part_seg_miou: {len(category_names)} category names for {num_cat} categories")
    per_category, missing = {}, []
    for c, name in enumerate(category_names):
        sel = category == c
        if sel.any():
            per_category[name] = float(ious[sel].mean())
        else:
            missing.append(name)
    if not per_category:
        raise ValueError("part_seg_miou: no shapes")
    return dict(instance_miou=float(ious.mean()), class_miou=float(np.mean(list(per_category.values()))),
                per_category=per_category, missing_categories=missing)


class SemSegMeter:
    """Semantic-segmentation metrics from a confusion matrix accumulated over all points of all blocks.

    `update(pred, target)` takes label arrays of any matching shape (numpy or torch); rows of `confusion` are
    ground truth, columns predictions. Points whose target equals `ignore_index` (if set) are skipped.
    `compute()` follows the standard S3DIS practice: per-class intersection and union are summed over all
    blocks before dividing (not averaged per block). A class that never appears in the ground truth nor in the
    predictions has an undefined IoU: it is reported as NaN in `per_class_iou` and left out of `miou`
    (likewise its accuracy is NaN and left out of `mean_class_acc` when it is absent from the ground truth).
    For distributed evaluation, sum `confusion` across processes (e.g. all_reduce) before `compute()`.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        if num_classes < 1:
            raise ValueError(f"SemSegMeter: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target) -> None:
        pred = _numpy(pred).astype(np.int64).ravel()
        target = _numpy(target).astype(np.int64).ravel()
        if pred.shape != target.shape:
            raise ValueError(f"SemSegMeter.update: pred and target sizes differ ({pred.size} vs {target.size})")
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        k = self.num_classes
        for name, a in (("pred", pred), ("target", target)):
            if a.size and (a.min() < 0 or a.max() >= k):
                raise ValueError(f"SemSegMeter.update: {name} values must lie in [0, {k}), got [{a.min()}, {a.max()}]")
        self.confusion += np.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def compute(self) -> dict:
        conf = self.confusion.astype(np.float64)
        total = conf.sum()
        if total == 0:
            raise ValueError("SemSegMeter.compute: no points accumulated")
        tp = np.diag(conf)
        gt = conf.sum(1)
        union = gt + conf.sum(0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(gt > 0, tp / gt, np.nan)
            iou = np.where(union > 0, tp / union, np.nan)
        return dict(overall_acc=float(tp.sum() / total), mean_class_acc=float(np.nanmean(acc)),
                    miou=float(np.nanmean(iou)), per_class_iou=[float(v) for v in iou])


