"""The cross-modal term: point embeddings against image embeddings of the same objects."""

import torch

from losses.ntxent import nt_xent

CROSS_MODAL_MODES = ("mean", "stacked")


def cross_modal_loss(
    z_points1: torch.Tensor,
    z_points2: torch.Tensor,
    z_image: torch.Tensor,
    z_gray: torch.Tensor | None = None,
    *,
    mode: str = "stacked",
    temperature: float = 0.2,
    exclude_same_object: bool = False,
    gather: bool = False,
) -> torch.Tensor:
    """NT-Xent between the two point views and the image(s) of B objects; every input is (B, D).

    mode="mean" (CrossPoint): NTXent(mean(z1, z2), z_rgb), the mean of the two projected point
        embeddings against the RGB embedding. Each object appears once per side; z_gray is not used.
    mode="stacked" (CrossNet / AdaCrossNet): NTXent([z1; z2], [z_rgb; z_gray]): z1_i is paired with
        rgb_i and z2_i with gray_i. z_gray is required; there is no silent fallback to [z_rgb; z_rgb],
        which would make the two copies of rgb_i negatives of each other's positives.

    exclude_same_object (stacked only; nothing to exclude in mean mode): object i appears twice on
    each side of the stacked form, so plain NT-Xent makes z2_i and gray_i negatives of the anchor z1_i
    (and likewise for the other three rows of object i). That is a defect: it pushes apart the two
    views of one object, which the intra-modal loss pulls together, and it pushes z1_i away from the
    grayscale rendering of the very object it is aligned with in RGB. With exclude_same_object=True
    those rows are simply left out of each other's denominators.
    """
    if mode == "mean":
        # averaged in fp32 (nt_xent's precision): half-precision embeddings under autocast would round the mean
        dtype = torch.promote_types(z_points1.dtype, torch.float32)
        return nt_xent((z_points1.to(dtype) + z_points2.to(dtype)) / 2, z_image, temperature, gather=gather)
    if mode != "stacked":
        raise ValueError(f"cross_modal_loss: mode {mode!r} is not one of {CROSS_MODAL_MODES}")
    if z_gray is None:
        raise ValueError("cross_modal_loss: mode 'stacked' needs z_gray (the grayscale image branch)")
    points = torch.cat([z_points1, z_points2])
    images = torch.cat([z_image, z_gray])
    same_object = None
    if exclude_same_object:
        same_object = torch.arange(z_points1.shape[0], device=points.device).repeat(2)
    return nt_xent(points, images, temperature, gather=gather, same_object=same_object)
