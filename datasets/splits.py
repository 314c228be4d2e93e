"""Deterministic validation splits carved from a training set, for checkpoint selection.

The held-out part is chosen by a keyed hash (splitmix64) of each sample's index (or group name), not by a
numpy Generator stream, so it depends only on ``split_seed`` and the order of the official training files:
it is the same on every machine, numpy version, training seed and worker count. ``SPLIT_SEED`` is fixed and
independent of the training seed on purpose; changing it gives a different (equally valid) split.

Split names used by every downstream dataset:
  "train"    official training set minus the validation part
  "val"      the validation part (never overlaps "train")
  "trainval" the full official training set (for the final fit)
  "test"     the official test set (report once)
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLIT_SEED = 20240607
SPLITS = ("train", "val", "trainval", "test")

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x & _M64


def hash_keys(n: int, split_seed: int = SPLIT_SEED) -> np.ndarray:
    """A pseudo-random but fixed uint64 key per index 0..n-1 (sorting by it gives a fixed shuffle)."""
    seed_key = _splitmix64(np.array([split_seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return _splitmix64(np.arange(n, dtype=np.uint64) ^ seed_key)


def _quotas(counts: np.ndarray, fraction: float, keep_one_per_stratum: bool = True) -> np.ndarray:
    """Per-stratum validation counts: largest-remainder rounding of fraction*count so that the total is
    round(fraction*N) (at least 1 when N >= 2, never all N). With ``keep_one_per_stratum`` every stratum
    (class) keeps at least one training sample."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0 or fraction <= 0:
        return np.zeros_like(counts)
    target = int(round(fraction * total))
    if total >= 2:
        target = min(max(target, 1), total - 1)
    exact = fraction * counts
    quota = np.floor(exact).astype(np.int64)
    cap = np.maximum(counts - 1, 0) if keep_one_per_stratum else counts.copy()
    quota = np.minimum(quota, cap)
    remainder = exact - np.floor(exact)
    order = np.lexsort((np.arange(len(counts)), -remainder))  # largest remainder first, ties by stratum
    missing = target - int(quota.sum())
    while missing > 0:
        progressed = False
        for s in order:
            if missing == 0:
                break
            if quota[s] < cap[s]:
                quota[s] += 1
                missing -= 1
                progressed = True
        if not progressed:
            break
    return quota


def stratified_val_mask(labels, fraction: float = 0.1, split_seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask (True = validation) over ``labels``; per label, the samples with the smallest keyed
    hash go to validation, about ``fraction`` of each class and round(fraction * N) in total."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    mask = np.zeros(n, dtype=bool)
    if n == 0 or fraction == 0.0:
        return mask
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = _quotas(counts, fraction)
    keys = hash_keys(n, split_seed)
    order = np.lexsort((keys, inverse))  # grouped by class, each group in hash order
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for c in range(len(classes)):
        if quota[c]:
            mask[order[starts[c]:starts[c] + quota[c]]] = True
    return mask


def _name_key(name: str, split_seed: int) -> int:
    digest = hashlib.blake2b(f"{split_seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def grouped_val_mask(groups, strata=None, fraction: float = 0.1, split_seed: int = SPLIT_SEED) -> np.ndarray:
    """Validation mask that keeps whole groups together (e.g. all blocks of one S3DIS room), choosing about
    ``fraction`` of the groups within each stratum (e.g. each area) by a keyed hash of the group name."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    groups = [str(g) for g in groups]
    strata = [0] * len(groups) if strata is None else list(strata)
    first_stratum: dict[str, object] = {}
    for g, s in zip(groups, strata):
        first_stratum.setdefault(g, s)
    names = sorted(first_stratum)
    stratum_ids = sorted(set(first_stratum.values()), key=str)
    stratum_of = np.array([stratum_ids.index(first_stratum[g]) for g in names], dtype=np.int64)
    counts = np.bincount(stratum_of, minlength=len(stratum_ids))
    quota = _quotas(counts, fraction, keep_one_per_stratum=False)
    val_groups = set()
    for s in range(len(stratum_ids)):
        members = [g for g, t in zip(names, stratum_of) if t == s]
        members.sort(key=lambda g: _name_key(g, split_seed))
        val_groups.update(members[: quota[s]])
    return np.array([g in val_groups for g in groups], dtype=bool)


def split_indices(split: str, val_mask: np.ndarray) -> np.ndarray:
    """Indices into the official training set for split "train" / "val" / "trainval"."""
    if split == "trainval":
        return np.arange(len(val_mask))
    if split == "val":
        return np.flatnonzero(val_mask)
    if split == "train":
        return np.flatnonzero(~val_mask)
    raise ValueError(f"split must be 'train', 'val' or 'trainval' here, got {split!r}")


def stratified_selector(split: str, val_fraction: float, split_seed: int = SPLIT_SEED, label_key: str = "label"):
    """A ``select(sizes, shape_labels)`` callable for ``H5Table`` over the official training files."""

    def select(sizes, shape_labels):
        labels = shape_labels[label_key]
        mask = stratified_val_mask(labels, val_fraction, split_seed) if split != "trainval" \
            else np.zeros(len(labels), dtype=bool)
        return split_indices(split, mask)

    return select
