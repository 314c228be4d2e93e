"""The loss-weighting benchmark (data/synthetic_gen/weighting_bench.py): layouts the repo's loaders read,
deterministic output, the designed factors where they should be (the aspect in the points and the renders,
the shell in the points only), and the stretch that hides the aspect from the intra-modal loss."""

import hashlib
import math

import numpy as np
import pytest

from data.make_synthetic import make_synthetic
from data.synthetic_gen import MARKER
from data.synthetic_gen.sampling import stream
from data.synthetic_gen.weighting_bench import (ASPECT_LOG, ASPECT_SPREAD, ASPECTS, BENCH_SIZES, CLASS_NAMES,
                                                SHELLS, _object, factors)
from datasets import ModelNet40, ShapeNetRender
from datasets.shapenet_render import read_ply_points, read_png_rgba
from datasets.transforms import RandomAxisScale, pretrain_augmentation

TINY = BENCH_SIZES["weighting_tiny"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("weighting")
    summary = make_synthetic(root, seed=0, size="weighting_tiny")
    return root, summary


def fingerprint(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_repo_loaders_read_both_layouts(bench):
    root, summary = bench
    classes = len(CLASS_NAMES)
    assert classes == len(SHELLS) * len(ASPECTS) == 15
    pretrain = ShapeNetRender(root, num_points=128, image_size=32)
    assert len(pretrain) == summary["shapenet_render"]["objects"] == classes * TINY["pretrain_per_class"]
    assert pretrain.num_skipped == 0
    item = pretrain[0]
    assert item["points1"].shape == (128, 3) and item["image"].shape == (3, 32, 32)
    assert all(len(views) == TINY["views"] for views in pretrain.views)

    trainval = ModelNet40(root, split="trainval", num_points=256)
    test = ModelNet40(root, split="test", num_points=256)
    train, val = ModelNet40(root, split="train"), ModelNet40(root, split="val")
    assert len(trainval) == classes * TINY["train_per_class"] == len(train) + len(val)
    assert len(test) == classes * TINY["test_per_class"]
    assert sorted(np.unique(trainval.labels)) == list(range(classes))
    assert trainval.class_names[:classes] == list(CLASS_NAMES) and len(trainval.class_names) == 40
    points = test[0]["points"].numpy()  # the first 256 of 2048 points on the unit sphere
    assert points.shape == (256, 3) and 0.8 < np.linalg.norm(points, axis=1).max() <= 1 + 1e-5


def test_study_size_meets_the_split_sizes_it_is_for():
    study = BENCH_SIZES["weighting"]
    classes = len(CLASS_NAMES)
    assert classes * study["train_per_class"] >= 5000  # the loader's 10% validation part then holds >= 500
    assert classes * study["test_per_class"] >= 2000
    assert classes * study["pretrain_per_class"] // 16 >= 200  # >= 200 steps per epoch at batch 16


def test_deterministic_per_seed_and_refuses_real_data(bench, tmp_path):
    root, _ = bench
    again = tmp_path / "again"
    make_synthetic(again, seed=0, size="weighting_tiny")
    assert fingerprint(again) == fingerprint(root)
    make_synthetic(again, seed=1, size="weighting_tiny")  # over a synthetic copy: replaced
    other = fingerprint(again)
    assert set(other) != set(fingerprint(root))  # new object ids
    assert (again / MARKER).is_file()
    real = tmp_path / "real"
    (real / "modelnet40_ply_hdf5_2048").mkdir(parents=True)
    with pytest.raises(FileExistsError, match=MARKER):
        make_synthetic(real, seed=0, size="weighting_tiny")


def log_aspect(points):
    """log(half-height / half-width) of a cloud turned about y: the width is the largest distance from the
    vertical axis through its bounding box's centre (so that a shift changes nothing)."""
    centre = (points.max(axis=0) + points.min(axis=0)) / 2
    return math.log(np.ptp(points[:, 1]) / 2 / np.hypot(points[:, 0] - centre[0], points[:, 2] - centre[2]).max())


def test_factors_live_where_the_design_puts_them():
    for label in range(len(CLASS_NAMES)):
        shell, aspect = factors(label)
        assert CLASS_NAMES[label] == f"{SHELLS[shell]}_{ASPECTS[aspect]}"
    # within a shell kind the aspects never overlap: flat < even < tall, measured on the points (boxes and
    # ellipsoids against the largest radius of their (x, z) extent, so below the designed band)
    for shell in range(len(SHELLS)):
        measured = [[] for _ in ASPECTS]
        for aspect in range(len(ASPECTS)):
            for k in range(8):
                points, _, box, _ = _object(stream(0, 99, shell, aspect, k), shell, aspect, 2048)
                measured[aspect].append(log_aspect(points))
                assert ASPECT_LOG[aspect] - ASPECT_SPREAD - 0.5 < measured[aspect][-1] < ASPECT_LOG[aspect] + ASPECT_SPREAD + 0.02
                # the rendered box is the shell's bounding box: same height, encloses every point
                assert np.ptp(box[:, 1]) == pytest.approx(np.ptp(points[:, 1]), rel=0.02)
                assert np.hypot(box[:, 0], box[:, 2]).max() > 0.97 * np.hypot(points[:, 0], points[:, 2]).max()
        assert max(measured[0]) < min(measured[1]) and max(measured[1]) < min(measured[2])
    # same draws, another shell: the box the renders show does not depend on the shell kind (a cylinder's
    # box equals a cone's and a tub's with the same radius and height)
    boxes = [_object(stream(0, 7), shell, 1, 2048)[2] for shell in (1, 3)]
    assert np.allclose(boxes[0], boxes[1])


def test_the_study_stretch_moves_a_view_across_aspects_and_the_default_leaves_it():
    """With data.axis_scale=[0.5, 2] two views of one 'even' object often differ in aspect by more than the
    classes do (0.6 in log): the intra-modal loss cannot use the aspect. CrossPoint's default keeps it."""
    points = _object(stream(0, 3), 0, 1, 2048)[0]
    rng = np.random.default_rng(0)
    stretched = [log_aspect(RandomAxisScale(0.5, 2.0)(points, rng)) for _ in range(200)]
    assert np.mean(np.abs(np.subtract(stretched[::2], stretched[1::2])) > 0.6) > 0.25
    kept = [log_aspect(pretrain_augmentation()(points, rng)) for _ in range(20)]
    assert np.ptp(kept) < 0.25  # jitter and dropout only
    assert "RandomAxisScale" in repr(pretrain_augmentation((0.5, 2.0))) and "Axis" not in repr(pretrain_augmentation())


def test_renders_show_the_box_proportions_not_the_shell(bench):
    """The tall and flat boxes differ in their silhouettes' height over width; colour is one family for all."""
    root, _ = bench
    ratio = {}
    for png in sorted((root / "ShapeNetRendering").rglob("*.png")):
        rgba = read_png_rgba(png).float()
        opaque = rgba[3] > 0
        assert opaque.any() and not opaque[0, 0]  # something drawn, transparent corner
        assert rgba[2][opaque].mean() > rgba[0][opaque].mean()  # blue family, whatever the class
        rows, cols = opaque.any(dim=1).nonzero(), opaque.any(dim=0).nonzero()
        ratio.setdefault(png.parent.parent.name, []).append(float(len(rows) / len(cols)))
    pretrain = ShapeNetRender(root, num_points=128, image_size=32)
    aspect = {model_id: log_aspect(read_ply_points(pretrain.ply_path(index)))
              for index, (_, model_id) in enumerate(pretrain.objects)}
    flat = [np.mean(ratio[m]) for m, a in aspect.items() if a < -0.3]
    tall = [np.mean(ratio[m]) for m, a in aspect.items() if a > 0.3]
    assert len(flat) >= len(SHELLS) and len(tall) >= len(SHELLS) and max(flat) < min(tall)
