"""The loss-weighting benchmark (data/synthetic_gen/weighting_bench.py): layouts the repo's loaders read,
deterministic output, the designed factors (hidden core, coat colour, ribs) where they should be."""

import colorsys
import hashlib

import numpy as np
import pytest

from data.make_synthetic import make_synthetic
from data.synthetic_gen import MARKER
from data.synthetic_gen.sampling import stream
from data.synthetic_gen.weighting_bench import (BENCH_SIZES, CLASS_NAMES, COATS, CORES, RIB_AMPLITUDE, SHELLS,
                                                _coat_colours, _object, factors)
from datasets import ModelNet40, ShapeNetRender
from datasets.shapenet_render import read_png_rgba

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
    assert classes == len(SHELLS) * len(CORES) * len(COATS) == 20
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


def test_factors_live_where_the_design_puts_them():
    for label in range(len(CLASS_NAMES)):
        shell, core, coat = factors(label)
        assert CLASS_NAMES[label] == f"{SHELLS[shell]}_{CORES[core]}_{COATS[coat]}"
    rng = stream(0, 99)
    # the core sits inside the shell: every core point is nearer the centre than the farthest shell point
    for shell in range(len(SHELLS)):
        points, _, on_shell = _object(rng, shell, 1, 0, 2048)
        assert 0.01 < (~on_shell).mean() < 0.3  # a minority of the points (area-weighted sampling)
        centre = points[on_shell].mean(axis=0)
        radius = np.linalg.norm(points - centre, axis=1)
        assert radius[~on_shell].max() < radius[on_shell].max()
    # ribs move shell points along their normal by up to RIB_AMPLITUDE of the half-height: same shell draws
    # (a box, y up), with and without ribs
    plain, _, _ = _object(stream(0, 7), 0, 0, 0, 2048)
    ribbed, _, _ = _object(stream(0, 7), 0, 0, 1, 2048)
    moved = np.linalg.norm(plain - ribbed, axis=1)
    depth = RIB_AMPLITUDE * np.abs(plain[:, 1]).max()
    assert 0.9 * depth < moved.max() <= depth + 1e-9
    # the coat's colour family: plain is red to orange, ribbed cyan to blue
    for coat, (lo, hi) in enumerate(((0.0, 0.1), (0.5, 0.7))):
        for seed in range(20):
            hue = colorsys.rgb_to_hls(*_coat_colours(coat, 1, stream(seed, 5))[0])[0]
            off = abs(hue - (lo + hi) / 2)
            assert min(off, 1 - off) <= (hi - lo) / 2 + 0.03  # hue is circular: 0.99 is next to 0.0


def test_renders_show_the_coat_colour(bench):
    root, _ = bench
    reds = blues = 0
    for png in sorted((root / "ShapeNetRendering").rglob("00.png")):
        rgba = read_png_rgba(png).float()
        opaque = rgba[3] > 0
        assert opaque.any() and not opaque[0, 0]  # something drawn, transparent corner
        red, blue = rgba[0][opaque].mean(), rgba[2][opaque].mean()
        reds, blues = reds + int(red > blue), blues + int(blue > red)
    assert reds == blues == len(CLASS_NAMES) * TINY["pretrain_per_class"] // 2


def test_mismatched_renders_pair_every_object_with_another_objects_views(bench, tmp_path):
    root, _ = bench
    mismatched = tmp_path / "mismatched"
    summary = make_synthetic(mismatched, seed=0, size="weighting_tiny", mismatched_renders=True)
    objects = len(CLASS_NAMES) * TINY["pretrain_per_class"]
    assert summary["mismatched_renders"] == objects

    def views(base):
        return {p.relative_to(base).parts[1:3]: p.joinpath("rendering", "00.png").read_bytes()
                for p in sorted((base / "ShapeNetRendering").glob("*/*"))}

    matched, shuffled = views(root), views(mismatched)
    assert matched.keys() == shuffled.keys() and len(matched) == objects  # same objects, point clouds untouched
    assert fingerprint(mismatched / "ShapeNet") == fingerprint(root / "ShapeNet")
    assert sorted(matched.values()) == sorted(shuffled.values())  # the same views, dealt out again
    assert all(matched[key] != shuffled[key] for key in matched)  # none kept its own
    assert "mismatched_renders=True" in (mismatched / MARKER).read_text()
    with pytest.raises(ValueError, match="weighting"):  # refused before anything is cleared
        make_synthetic(mismatched, seed=0, size="tiny", mismatched_renders=True)
    assert fingerprint(mismatched / "ShapeNet") == fingerprint(root / "ShapeNet")
