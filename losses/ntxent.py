"""NT-Xent (normalised temperature-scaled cross-entropy), the SimCLR contrastive loss."""

import torch
import torch.nn.functional as F

from utils.distributed import gather_with_grad, is_distributed, rank


def nt_xent(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: float,
    *,
    gather: bool = False,
    same_object: torch.Tensor | None = None,
) -> torch.Tensor:
    """SimCLR's NT-Xent between paired rows of `a` and `b`, both (B, D).

    Both sides are L2-normalised. There are 2B anchors, the rows of `a` and of `b`. The positive of
    anchor a_i is b_i and that of b_i is a_i; every other row of both sides is a negative (2B - 2 of
    them), and an anchor is never compared with itself. The loss is the cross-entropy of the positive
    over similarity / temperature, averaged over the 2B anchors. Symmetric in (a, b).

    gather: the anchors stay this rank's 2B rows while the keys (positives and negatives) are every
        rank's rows, gathered with gradient. Each rank returns the mean over its own anchors, so the
        mean over ranks equals the loss of the concatenated batch, and with one process the value is
        exactly the non-gathered one.
    same_object: optional (B,) integer ids; row i of `a` and row i of `b` both have id same_object[i].
        Rows sharing an anchor's id, other than the anchor itself and its positive, are left out of its
        denominator: they are not negatives (nor extra positives). Ids are compared only within the
        batch of one rank, so per-batch ids such as arange(B) are fine with gather=True.
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"nt_xent: a and b must both be (B, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    # fp32 (fp64 for fp64 input) whatever the autocast state: exp(sim / 0.1) overflows half precision, and
    # bf16's 8-bit mantissa would round similarities 1/T apart by more than their differences
    dtype = torch.promote_types(a.dtype, torch.float32)
    with torch.autocast(device_type=a.device.type, enabled=False):
        return _nt_xent(a.to(dtype), b.to(dtype), temperature, gather, same_object)


def _nt_xent(a, b, temperature, gather, same_object):
    n = a.shape[0]
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    anchors = torch.cat([a, b])  # (2B, D): this rank's rows

    if gather and is_distributed():
        keys_a, keys_b, offset = gather_with_grad(a), gather_with_grad(b), rank() * n
    else:
        keys_a, keys_b, offset = a, b, 0
    keys = torch.cat([keys_a, keys_b])  # (2WB, D): every rank's rows, side a first
    world_rows = keys_a.shape[0]  # W * B
    logits = (anchors @ keys.T) / temperature

    # Index-based masks (solo-learn style). Every row carries (side, global pair index); a key is the
    # anchor itself when both match and the anchor's positive when only the pair index matches. Built
    # with index arithmetic only: boolean-mask indexing would read the mask on the host (a CUDA sync).
    device = logits.device
    rows = torch.arange(2 * n, device=device)
    anchor_pair, anchor_side = offset + rows % n, rows // n
    columns = torch.arange(2 * world_rows, device=device)
    key_pair, key_side = columns % world_rows, columns // world_rows
    same_pair = anchor_pair[:, None] == key_pair[None, :]
    same_side = anchor_side[:, None] == key_side[None, :]
    self_mask = same_pair & same_side
    drop = self_mask
    if same_object is not None:
        ids = torch.as_tensor(same_object, device=device).reshape(-1)
        if ids.shape[0] != n:
            raise ValueError(f"nt_xent: same_object has {ids.shape[0]} ids for {n} rows")
        local_ids = ids.repeat(2)
        # Keys from other ranks never share an object with this rank's anchors (ids are per batch).
        key_is_local = (key_pair >= offset) & (key_pair < offset + n)
        key_ids = torch.where(key_is_local, ids[(key_pair - offset).clamp(0, n - 1)], -1)
        same_obj = (local_ids[:, None] == key_ids[None, :]) & key_is_local[None, :]
        drop = drop | (same_obj & ~(same_pair & ~same_side))

    positive_column = (1 - anchor_side) * world_rows + anchor_pair  # exactly one positive per anchor
    positive = logits.gather(1, positive_column[:, None]).squeeze(1)
    denominator = torch.logsumexp(logits.masked_fill(drop, float("-inf")), dim=1)
    return (denominator - positive).mean()
