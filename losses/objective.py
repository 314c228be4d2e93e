"""The pretraining objective: intra-modal NT-Xent + cross-modal NT-Xent, combined by a weighter."""

from collections.abc import Mapping

import torch
from torch import nn

from losses.crossmodal import CROSS_MODAL_MODES, cross_modal_loss
from losses.ntxent import nt_xent
from losses.weighting import Weighter, build_weighter
from utils.errors import ConfigError

# The `loss` config section: every key and its default.
LOSS_DEFAULTS = {
    "temperature": 0.2,  # NT-Xent temperature of both terms (CrossPoint used 0.1)
    "cross_modal": "stacked",  # "stacked" (CrossNet/AdaCrossNet, needs z_gray) or "mean" (CrossPoint)
    "exclude_same_object": False,  # stacked: the other rows of an anchor's object are not negatives
    "gather_negatives": False,  # DDP: negatives from every rank's batch
}


class PretrainObjective(nn.Module):
    """loss_im = NTXent(z1, z2); loss_cm = cross_modal_loss(...); loss = weighter({"im", "cm"})."""

    names = ("im", "cm")

    def __init__(
        self,
        temperature: float = 0.2,
        cross_modal: str = "stacked",
        exclude_same_object: bool = False,
        weighter: Weighter | None = None,
        gather: bool = False,
    ):
        super().__init__()
        if cross_modal not in CROSS_MODAL_MODES:
            raise ValueError(f"objective: cross_modal {cross_modal!r} is not one of {CROSS_MODAL_MODES}")
        self.temperature, self.cross_modal = temperature, cross_modal
        self.exclude_same_object, self.gather = exclude_same_object, gather
        self.weighter = weighter if weighter is not None else build_weighter({"name": "static"}, self.names)
        if tuple(self.weighter.names) != self.names:
            raise ValueError(f"objective: the weighter must weigh {self.names}, not {self.weighter.names}")

    def forward(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """outputs: z_points1, z_points2, z_image (B, D) and, for cross_modal="stacked", z_gray."""
        z_gray = outputs.get("z_gray")
        if self.cross_modal == "stacked" and z_gray is None:
            raise ConfigError(
                "loss.cross_modal: 'stacked' needs the grayscale image branch (the model gave no z_gray); "
                "turn that branch on or set loss.cross_modal=mean"
            )
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
        weights = self.weighter.current().detach().to(loss)
        return {
            "loss": loss,
            "loss_im": loss_im,
            "loss_cm": loss_cm,
            "weight_im": weights[0],
            "weight_cm": weights[1],
        }

    def end_epoch(self) -> None:
        self.weighter.end_epoch()


def build_objective(loss_cfg: Mapping, weighting_cfg: Mapping, gather: bool = True) -> PretrainObjective:
    """The objective from the `loss` section (keys in LOSS_DEFAULTS) and the `weighting` section.

    Negatives are gathered across ranks when loss.gather_negatives is true and `gather` allows it (the
    caller passes gather=world_size > 1; with a single process gathering is the identity anyway).
    """
    unknown = sorted(set(loss_cfg) - set(LOSS_DEFAULTS))
    if unknown:
        raise ConfigError(f"loss: unknown keys {unknown}; valid keys are {sorted(LOSS_DEFAULTS)}")
    cfg = {**LOSS_DEFAULTS, **loss_cfg}
    temperature = cfg["temperature"]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ConfigError(f"loss.temperature: need a number > 0, got {temperature!r}")
    if cfg["cross_modal"] not in CROSS_MODAL_MODES:
        raise ConfigError(f"loss.cross_modal: {cfg['cross_modal']!r} is not one of {list(CROSS_MODAL_MODES)}")
    for key in ("exclude_same_object", "gather_negatives"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"loss.{key}: need true or false, got {cfg[key]!r}")
    return PretrainObjective(
        temperature=float(temperature),
        cross_modal=cfg["cross_modal"],
        exclude_same_object=cfg["exclude_same_object"],
        weighter=build_weighter(weighting_cfg, PretrainObjective.names),
        gather=cfg["gather_negatives"] and bool(gather),
    )
