"""The cross-modal pairings and the pretraining objective, against hand-composed nt_xent calls."""

import math

import pytest
import torch

from losses.crossmodal import cross_modal_loss
from losses.ntxent import nt_xent
from losses.objective import PretrainObjective, build_objective
from losses.weighting import StaticWeighter, build_weighter
from utils.errors import ConfigError

B, D, T = 6, 16, 0.2


def embeddings(seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    names = ("z_points1", "z_points2", "z_image", "z_gray")
    return {name: torch.randn(B, D, generator=g, dtype=torch.float64).requires_grad_(requires_grad) for name in names}


def test_mean_mode_is_ntxent_of_the_mean_point_embedding():
    z = embeddings()
    expected = nt_xent((z["z_points1"] + z["z_points2"]) / 2, z["z_image"], T)
    got = cross_modal_loss(z["z_points1"], z["z_points2"], z["z_image"], mode="mean", temperature=T)
    assert got.item() == expected.item()
    # Mean mode ignores the grayscale branch and has nothing to exclude.
    assert cross_modal_loss(*z.values(), mode="mean", temperature=T, exclude_same_object=True).item() == got.item()


def test_stacked_mode_is_ntxent_of_the_stacked_pairs():
    z = embeddings()
    points = torch.cat([z["z_points1"], z["z_points2"]])
    images = torch.cat([z["z_image"], z["z_gray"]])
    got = cross_modal_loss(*z.values(), mode="stacked", temperature=T)
    assert got.item() == nt_xent(points, images, T).item()
    excluded = cross_modal_loss(*z.values(), mode="stacked", temperature=T, exclude_same_object=True)
    ids = torch.arange(B).repeat(2)
    assert excluded.item() == nt_xent(points, images, T, same_object=ids).item()
    assert excluded.item() != got.item()


def test_stacked_exclusion_removes_exactly_the_other_rows_of_the_object():
    # Aligned orthonormal embeddings: z1_i = z2_i = rgb_i = gray_i = e_i. Without exclusion the anchor z1_i
    # has its positive rgb_i (sim 1) and 4B-2 negatives, of which z2_i and gray_i have similarity 1 too:
    # log(e^{1/t} + 2 e^{1/t} + (4B-4)) - 1/t. With exclusion those two go: log(1 + (4B-4) e^{-1/t}).
    eye = torch.eye(B, dtype=torch.float64)
    plain = cross_modal_loss(eye, eye, eye, eye, mode="stacked", temperature=T)
    excluded = cross_modal_loss(eye, eye, eye, eye, mode="stacked", temperature=T, exclude_same_object=True)
    assert abs(plain.item() - (math.log(3 * math.exp(1 / T) + 4 * B - 4) - 1 / T)) < 1e-12
    assert abs(excluded.item() - math.log(1 + (4 * B - 4) * math.exp(-1 / T))) < 1e-12


def test_stacked_without_gray_and_unknown_mode_raise():
    z = embeddings()
    with pytest.raises(ValueError, match="z_gray"):
        cross_modal_loss(z["z_points1"], z["z_points2"], z["z_image"], mode="stacked", temperature=T)
    with pytest.raises(ValueError, match="mode"):
        cross_modal_loss(*z.values(), mode="sum", temperature=T)


@pytest.mark.parametrize("mode", ["stacked", "mean"])
def test_objective_outputs_and_total(mode):
    z = embeddings(requires_grad=True)
    objective = PretrainObjective(temperature=T, cross_modal=mode, weighter=StaticWeighter(("im", "cm"), weights=[0.3, 2.0]))
    out = objective(z)
    assert set(out) == {"loss", "loss_im", "loss_cm", "weight_im", "weight_cm"}
    assert out["loss_im"].item() == nt_xent(z["z_points1"], z["z_points2"], T).item()
    expected_cm = cross_modal_loss(*z.values(), mode=mode, temperature=T)
    assert out["loss_cm"].item() == expected_cm.item()
    assert (out["weight_im"].item(), out["weight_cm"].item()) == (0.3, 2.0)
    assert not out["weight_im"].requires_grad
    assert abs(out["loss"].item() - (0.3 * out["loss_im"].item() + 2.0 * out["loss_cm"].item())) < 1e-12
    out["loss"].backward()
    assert all(torch.isfinite(t.grad).all() for t in z.values() if t.grad is not None)
    assert (z["z_gray"].grad is not None) == (mode == "stacked")


def test_objective_needs_gray_for_stacked():
    z = embeddings()
    del z["z_gray"]
    with pytest.raises(ValueError, match="stacked' needs z_gray"):  # one check, in the loss function
        PretrainObjective(temperature=T, cross_modal="stacked")(z)
    assert torch.isfinite(PretrainObjective(temperature=T, cross_modal="mean")(z)["loss"])


def test_objective_end_epoch_reaches_the_weighter():
    objective = PretrainObjective(temperature=T, weighter=build_weighter({"name": "dwa"}, ("im", "cm")))
    for epoch in range(3):
        for seed in range(2):
            objective(embeddings(10 * epoch + seed))
        objective.end_epoch()
    assert int(objective.weighter.epochs) == 3
    assert objective.weighter.weights()["im"] != 1.0


def test_build_objective_defaults_and_errors():
    objective = build_objective({}, {"name": "adacrossnet"})
    assert objective.temperature == 0.2
    assert objective.cross_modal == "stacked" and not objective.exclude_same_object and not objective.gather
    assert type(objective.weighter).__name__ == "AdaCrossNetWeighter"
    custom = build_objective(
        {"temperature": 0.1, "cross_modal": "mean", "exclude_same_object": True, "gather_negatives": True},
        {"name": "static", "weights": [1.0, 1.0]}, distributed=True,
    )
    assert (custom.temperature, custom.cross_modal, custom.exclude_same_object, custom.gather) == (0.1, "mean", True, True)
    assert not build_objective({"gather_negatives": True}, {"name": "static"}).gather  # e.g. world_size == 1
    with pytest.raises(ConfigError, match="weighting.name"):
        build_objective({}, {"name": "nosuch"})


def test_pretraining_with_gradnorm_moves_the_weights_and_keeps_their_sum():
    from models.build import build_model
    from tasks.pretrain import ContrastivePretraining

    torch.manual_seed(0)
    model = build_model({"name": "adacrossnet", "point_backbone": {"name": "pointnet", "emb_dims": 16},
                         "image_encoder": {"name": "resnet18"}, "proj_dim": 8, "image_hidden": 8})
    for layer, expected in (("head", model.point_head[3].weight),
                            ("encoder", model.point_encoder.layers[-1].conv.weight)):
        task = ContrastivePretraining(model, build_objective({}, {"name": "gradnorm", "layer": layer, "lr": 0.05}))
        assert task.objective.weighter.shared == [expected]
    optimiser = torch.optim.SGD(task.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    batch = {"points1": torch.randn(4, 32, 3, generator=g), "points2": torch.randn(4, 32, 3, generator=g),
             "image": torch.randn(4, 3, 32, 32, generator=g), "gray": torch.randn(4, 1, 32, 32, generator=g)}
    applied = []
    for _ in range(3):
        out = task(batch)
        optimiser.zero_grad()
        task.backward_step(out, lambda tensor, inputs=None: tensor.backward(inputs=inputs))
        optimiser.step()
        applied.append((out["weight_im"].item(), out["weight_cm"].item()))
        assert all(p.grad is not None for p in task.model.point_encoder.parameters())
    weights = list(task.objective.weighter.weights().values())
    assert applied[0] == (1.0, 1.0) and applied[1] != (1.0, 1.0) and weights != list(applied[-1])
    assert abs(sum(weights) - 2) < 1e-12 and weights[0] != 1.0
