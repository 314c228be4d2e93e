"""The pretraining objective: intra-modal NT-Xent + cross-modal NT-Xent, combined by a weighter."""

from collections.abc import Mapping
from typing import Annotated

import torch
from torch import nn

from losses.crossmodal import CROSS_MODAL_MODES, cross_modal_loss
from losses.ntxent import nt_xent
from losses.weighting import StaticWeighter, Weighter, build_weighter
from utils.config import OneOf, PositiveFloat


class PretrainObjective(nn.Module):
    """loss_im = NTXent(z1, z2); loss_cm = cross_modal_loss(...); loss = weighter({"im", "cm"}).

    The keyword-only parameters are the `loss` config section: the NT-Xent temperature of both terms
    (CrossPoint used 0.1), the cross-modal pairing ("stacked": CrossNet/AdaCrossNet, needs z_gray; "mean":
    CrossPoint), whether the other rows of an anchor's object are excluded from its negatives, and whether
    negatives come from every process under torchrun (`distributed` says whether there are several).
    """

    names = ("im", "cm")

    def __init__(self, weighter: Weighter | None = None, distributed: bool = False, *,
                 temperature: PositiveFloat = 0.2,
                 cross_modal: Annotated[str, OneOf(*CROSS_MODAL_MODES)] = "stacked",
                 exclude_same_object: bool = False, gather_negatives: bool = True):
        super().__init__()
        self.temperature, self.cross_modal = temperature, cross_modal
        self.exclude_same_object, self.gather = exclude_same_object, gather_negatives and distributed
        self.weighter = weighter if weighter is not None else StaticWeighter(self.names)
        if tuple(self.weighter.names) != self.names:
            raise ValueError(f"objective: the weighter must weigh {self.names}, not {self.weighter.names}")

    def forward(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """outputs: z_points1, z_points2, z_image (B, D) and, for cross_modal="stacked", z_gray."""
        z_gray = outputs.get("z_gray")  # cross_modal_loss refuses "stacked" without it
        z1, z2 = outputs["z_points1"], outputs["z_points2"]
        loss_im = nt_xent(z1, z2, self.temperature, gather=self.gather)
        loss_cm = cross_modal_loss(
            z1,
            z2,
            outputs["z_image"],
            z_gray,
            mode=self.cross_modal,
            temperature=self.temperature,
            exclude_same_object=self.exclude_same_object,
            gather=self.gather,
        )
        loss = self.weighter({"im": loss_im, "cm": loss_cm})
        # A copy: a weighter may update its weights in place in backward_step, and the logged ones are those
        # this step applied.
        weights = self.weighter.current().detach().to(loss, copy=True)
        return {
            "loss": loss,
            "loss_im": loss_im,
            "loss_cm": loss_cm,
            "weight_im": weights[0],
            "weight_cm": weights[1],
        }

    def backward_step(self, outputs: Mapping[str, torch.Tensor], backward) -> None:
        self.weighter.backward_step(outputs["loss"], backward)

    def end_epoch(self) -> None:
        self.weighter.end_epoch()


def build_objective(loss_cfg: Mapping, weighting_cfg: Mapping, distributed: bool = False) -> PretrainObjective:
    """The objective from the `loss` section (PretrainObjective's keyword-only parameters) and the
    `weighting` section; `distributed`: several processes under torchrun."""
    return PretrainObjective(build_weighter(weighting_cfg, PretrainObjective.names), distributed, **loss_cfg)
