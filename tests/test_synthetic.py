"""The synthetic data generator writes the real on-disk layouts (data/README.md), deterministically."""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

from data.make_synthetic import make_synthetic
from data.synthetic_gen import MARKER, SIZES
from data.synthetic_gen.modelnet40 import MODELNET40_NAMES, make_modelnet40
from data.synthetic_gen.shapenet_part import PART_OFFSETS, SHAPENET_PART_CATEGORIES
from data.synthetic_gen.shapenet_render import SHAPENET_RENDER_FAMILIES, make_shapenet_render

SEED = 0
CFG = SIZES["tiny"]
RENDER_SYNSETS = ("02691156", "02828884", "02933112", "02958343", "03001627", "03211117", "03636649",
                  "03691459", "04090263", "04256520", "04379243", "04401088", "04530566")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    summary = make_synthetic(root, seed=SEED, size="tiny")
    return root, summary


def read_h5(path):
    with h5py.File(path, "r") as f:
        return {key: f[key][()] for key in f}


def fingerprint(root):
    """sha256 of every file, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def lines(path):
    return path.read_text().splitlines()


# ---------------------------------------- ModelNet40 ------------------------------------------------------

def test_modelnet40_layout_keys_dtypes(generated):
    root, summary = generated
    folder = root / "modelnet40_ply_hdf5_2048"
    names = lines(folder / "shape_names.txt")
    assert names == list(MODELNET40_NAMES) and len(set(names)) == 40
    assert (names[0], names[8], names[19], names[33], names[39]) == ("airplane", "chair", "lamp", "table", "xbox")
    prefix = "data/modelnet40_ply_hdf5_2048"
    assert lines(folder / "train_files.txt") == [f"{prefix}/ply_data_train{i}.h5" for i in range(5)]
    assert lines(folder / "test_files.txt") == [f"{prefix}/ply_data_test{i}.h5" for i in range(2)]
    labels = []
    for split, n_files in (("train", 5), ("test", 2)):
        total = 0
        for i in range(n_files):
            h5 = read_h5(folder / f"ply_data_{split}{i}.h5")
            assert set(h5) == {"data", "label", "normal"}
            n = len(h5["data"])
            assert h5["data"].shape == (n, 2048, 3) and h5["data"].dtype == np.float32
            assert h5["normal"].shape == (n, 2048, 3) and h5["normal"].dtype == np.float32
            assert h5["label"].shape == (n, 1) and h5["label"].dtype == np.uint8
            radius = np.linalg.norm(h5["data"], axis=2).max(axis=1)
            np.testing.assert_allclose(radius, 1.0, atol=1e-5)  # unit sphere
            np.testing.assert_allclose(h5["data"].mean(axis=1), 0.0, atol=0.02)
            # points are in random order: the first 1024 (the SVM protocol's input) sample the whole shape
            assert np.abs(h5["data"][:, :1024].mean(axis=1)).max() < 0.1
            labels.append(h5["label"].ravel())
            total += n
        assert total == summary["modelnet40"][split]
    labels = np.concatenate(labels)
    assert labels.max() <= 39 and len(np.unique(labels)) >= 10
    assert {MODELNET40_NAMES[k] for k in np.unique(labels)} >= {"airplane", "chair", "table", "lamp", "car"}


# ---------------------------------------- ShapeNetPart ----------------------------------------------------

def test_shapenet_part_layout_and_part_ranges(generated):
    root, summary = generated
    folder = root / "shapenet_part_seg_hdf5_data"
    assert lines(folder / "train_hdf5_file_list.txt") == [f"ply_data_train{i}.h5" for i in range(6)]
    assert lines(folder / "val_hdf5_file_list.txt") == ["ply_data_val0.h5"]
    assert lines(folder / "test_hdf5_file_list.txt") == ["ply_data_test0.h5", "ply_data_test1.h5"]
    assert lines(folder / "all_object_categories.txt")[0] == "Airplane\t02691156"
    assert [line.split("\t")[0] for line in lines(folder / "all_object_categories.txt")] == \
        [name for name, _, _ in SHAPENET_PART_CATEGORIES]
    counts = [c[2] for c in SHAPENET_PART_CATEGORIES]
    assert counts == [4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3] and sum(counts) == 50
    assert list(PART_OFFSETS) == list(np.cumsum([0] + counts)[:-1])
    for split in ("train", "val", "test"):
        total = 0
        for name in lines(folder / f"{split}_hdf5_file_list.txt"):
            h5 = read_h5(folder / name)
            assert set(h5) == {"data", "label", "pid"}
            n = len(h5["data"])
            assert h5["data"].shape == (n, 2048, 3) and h5["data"].dtype == np.float32
            assert h5["label"].shape == (n, 1) and h5["label"].dtype == np.uint8
            assert h5["pid"].shape == (n, 2048) and h5["pid"].dtype == np.uint8
            for category, pid in zip(h5["label"].ravel(), h5["pid"]):
                lo = PART_OFFSETS[category]
                assert lo <= pid.min() and pid.max() < lo + counts[category]
                assert len(np.unique(pid)) >= 2  # parts are regions of the shape, never one label
            total += n
        assert total == summary["shapenetpart"][split]


def test_shapenet_part_labels_are_geometric(generated):
    """A table's top is above its legs; an airplane's wings stick out further sideways than its body."""
    root, _ = generated
    files = [read_h5(path) for path in sorted((root / "shapenet_part_seg_hdf5_data").glob("ply_data_*.h5"))]
    label, data, part = (np.concatenate([h5[key] for h5 in files]) for key in ("label", "data", "pid"))
    checked = set()
    for category, points, pid in zip(label.ravel(), data, part):
        local = pid.astype(int) - PART_OFFSETS[category]
        name = SHAPENET_PART_CATEGORIES[category][0]
        if name == "Table":
            assert points[local == 0, 1].mean() > points[local == 1, 1].mean()
            checked.add(name)
        if name == "Lamp":  # the shade sits above the base
            assert points[local == 2, 1].mean() > points[local == 0, 1].mean()
            checked.add(name)
        if name == "Airplane":  # across the fuselage's (horizontal) axis, the wings reach further out
            body = points[local == 0][:, [0, 2]]
            body = body - body.mean(axis=0)
            axis = np.linalg.svd(body, full_matrices=False)[2][0]
            across = np.array([-axis[1], axis[0]])
            wings = points[local == 1][:, [0, 2]] - points[local == 0][:, [0, 2]].mean(axis=0)
            assert np.abs(wings @ across).max() > 2 * np.abs(body @ across).max()
            checked.add(name)
    assert checked == {"Table", "Lamp", "Airplane"}


# ---------------------------------------- ScanObjectNN ----------------------------------------------------

def test_scanobjectnn_official_and_crosspoint_names(generated):
    root, summary = generated
    official = root / "h5_files"
    for split, stem in (("train", "training"), ("test", "test")):
        bg = read_h5(official / "main_split" / f"{stem}_objectdataset.h5")
        nobg = read_h5(official / "main_split_nobg" / f"{stem}_objectdataset.h5")
        pb = read_h5(official / "main_split" / f"{stem}_objectdataset_augmentedrot_scale75.h5")
        pb_nobg = read_h5(official / "main_split_nobg" / f"{stem}_objectdataset_augmentedrot_scale75.h5")
        n = summary["scanobjectnn"][split]
        for h5, rows, with_mask in ((bg, n, True), (nobg, n, False), (pb, n * CFG["sonn_pb_copies"], True),
                                    (pb_nobg, n * CFG["sonn_pb_copies"], False)):
            assert set(h5) == ({"data", "label", "mask"} if with_mask else {"data", "label"})
            assert h5["data"].shape == (rows, 2048, 3) and h5["data"].dtype == np.float32
            assert h5["label"].shape == (rows,) and h5["label"].dtype == np.int32
            assert h5["label"].min() >= 0 and h5["label"].max() <= 14
            assert np.isfinite(h5["data"]).all() and np.abs(h5["data"]).max() <= 1.0 + 1e-5
            if with_mask:
                assert h5["mask"].shape == (rows, 2048) and h5["mask"].dtype == np.int32
                background = h5["mask"] == -1
                assert background.any() and (~background).any()
                assert (h5["mask"][~background] >= 0).all()
        assert len(np.unique(bg["label"])) == 15
        np.testing.assert_array_equal(bg["label"], nobg["label"])  # the same objects, with and without clutter
        crosspoint = root / "ScanObjectNN" / "main_split" / f"{split}.h5"
        assert crosspoint.read_bytes() == (official / "main_split" / f"{stem}_objectdataset.h5").read_bytes()


# ---------------------------------------- S3DIS -----------------------------------------------------------

def test_s3dis_layout_rooms_and_channels(generated):
    root, summary = generated
    folder = root / "indoor3d_sem_seg_hdf5_data"
    listed = lines(folder / "all_files.txt")
    assert listed == [f"indoor3d_sem_seg_hdf5_data/ply_data_all_{i}.h5" for i in range(len(listed))]
    assert len(listed) >= 2
    data, labels = [], []
    for line in listed:
        h5 = read_h5(root / line)  # lines carry the folder prefix: join with the parent
        assert set(h5) == {"data", "label"}
        n = len(h5["data"])
        assert h5["data"].shape == (n, 4096, 9) and h5["data"].dtype == np.float32
        assert h5["label"].shape == (n, 4096) and h5["label"].dtype == np.uint8
        data.append(h5["data"])
        labels.append(h5["label"])
    data, labels = np.concatenate(data), np.concatenate(labels)
    rooms = lines(folder / "room_filelist.txt")
    assert len(rooms) == len(data) == summary["s3dis"]["blocks"]
    assert all(re.fullmatch(r"Area_[1-6]_[A-Za-z]+_\d+", room) for room in rooms)
    assert {room.split("_")[1] for room in rooms} == {"1", "2", "3", "4", "5", "6"}
    assert labels.max() <= 12 and {0, 1, 2} <= set(np.unique(labels))  # ceiling, floor, wall everywhere
    assert len(np.unique(labels)) >= 8
    xy = data[:, :, 0:2]
    assert xy.min() >= -0.5 - 1e-5 and xy.max() <= 0.5 + 1e-5  # x, y moved to the block centre
    assert data[:, :, 2].min() >= -0.2  # z: height above the floor
    assert data[:, :, 3:6].min() >= 0 and data[:, :, 3:6].max() <= 1  # rgb / 255
    assert data[:, :, 6:9].min() >= 0 and data[:, :, 6:9].max() <= 1 + 1e-6  # room-normalised xyz
    for area in "123456":  # Area 5 test split and 6-fold both have data on either side
        is_test = np.array([f"Area_{area}" in room for room in rooms])
        assert 0 < is_test.sum() < len(rooms)


# ---------------------------------------- ShapeNetRender --------------------------------------------------

def test_shapenet_render_plys_and_images(generated):
    root, summary = generated
    assert sorted(SHAPENET_RENDER_FAMILIES) == list(RENDER_SYNSETS)
    assert sorted(p.name for p in (root / "ShapeNet").iterdir()) == list(RENDER_SYNSETS)
    plys = sorted((root / "ShapeNet").glob("*/*.ply"))
    assert len(plys) == summary["shapenet_render"]["objects"] == 13 * CFG["render_per_synset"] + CFG["render_missing"]
    formats, vertex_counts, without_images = set(), set(), 0
    for ply_path in plys:
        assert re.fullmatch(r"[0-9a-f]{32}", ply_path.stem)
        ply = PlyData.read(str(ply_path))
        vertex = ply["vertex"]
        assert [p.name for p in vertex.properties] == ["x", "y", "z"]
        points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
        assert vertex["x"].dtype == np.float32 and np.isfinite(points).all()
        assert 2000 <= len(points) <= 2600
        formats.add("ascii" if ply.text else ply.byte_order)
        vertex_counts.add(len(points))
        rendering = root / "ShapeNetRendering" / ply_path.parent.name / ply_path.stem / "rendering"
        pngs = sorted(rendering.glob("*.png"))
        if not pngs:
            without_images += 1
            continue
        assert [p.name for p in pngs] == [f"{v:02d}.png" for v in range(24)]
        assert lines(rendering / "renderings.txt") == [f"{v:02d}.png" for v in range(24)]
        metadata = [line.split() for line in lines(rendering / "rendering_metadata.txt")]
        assert len(metadata) == 24 and all(len(row) == 5 for row in metadata)
        azimuth, elevation, inplane, distance, fov = np.array(metadata, dtype=float).T
        assert (0 <= azimuth).all() and (azimuth < 360).all() and (inplane == 0).all() and (fov == 25).all()
        assert (distance > 0).all() and (elevation > 0).all()
        for png in pngs[:3]:
            image = Image.open(png)
            assert image.mode == "RGBA" and image.size == (137, 137)
            alpha = np.asarray(image)[..., 3]
            assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0  # transparent background
            assert 0.02 < (alpha == 255).mean() < 0.9  # the object is there and does not fill the frame
    assert formats == {"ascii", "<"}  # both PLY flavours are exercised
    assert len(vertex_counts) > 1
    assert without_images == summary["shapenet_render"]["without_renderings"] == CFG["render_missing"] >= 1


def test_render_shows_the_same_shape_as_the_ply(generated):
    """The rendered silhouette of a tall object (a lamp) is taller than wide, of a wide one (an airplane) not."""
    root, _ = generated

    def silhouette_aspect(synset):
        aspects = []
        for rendering in (root / "ShapeNetRendering" / synset).glob("*/rendering"):
            for png in sorted(rendering.glob("*.png"))[:6]:
                rows, cols = np.nonzero(np.asarray(Image.open(png))[..., 3])
                aspects.append((rows.max() - rows.min() + 1) / (cols.max() - cols.min() + 1))
        return np.median(aspects)

    assert silhouette_aspect("03636649") > 1.2 > silhouette_aspect("02691156")


# ---------------------------------------- determinism and safety ------------------------------------------

def test_deterministic_per_seed_and_regenerates_in_place(generated, tmp_path):
    root, _ = generated
    reference = fingerprint(root)
    # another seed (two datasets are enough to see it, and keep the test fast) ...
    other = tmp_path / "other"
    make_modelnet40(other, SEED + 1, CFG)
    make_shapenet_render(other, SEED + 1, CFG)
    (other / MARKER).write_text("an earlier synthetic copy")
    a = read_h5(root / "modelnet40_ply_hdf5_2048" / "ply_data_train0.h5")["data"]
    b = read_h5(other / "modelnet40_ply_hdf5_2048" / "ply_data_train0.h5")["data"]
    assert a.shape == b.shape and not np.array_equal(a, b)
    pngs = lambda fp: {v for k, v in fp.items() if k.endswith(".png")}
    assert not pngs(reference) & pngs(fingerprint(other))  # no identical image between seeds
    # ... then the same seed again over it: byte-identical files, nothing of the other seed left behind
    make_synthetic(other, seed=SEED, size="tiny")
    assert fingerprint(other) == reference


def test_refuses_to_overwrite_what_may_be_real_data(tmp_path):
    (tmp_path / "ShapeNet").mkdir()
    with pytest.raises(FileExistsError, match=MARKER):
        make_synthetic(tmp_path, seed=SEED, size="tiny")
    assert not any((tmp_path / "ShapeNet").iterdir())


def test_unknown_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="size"):
        make_synthetic(tmp_path, size="huge")


@pytest.mark.parametrize("command", [["data/make_synthetic.py"], ["-m", "data.make_synthetic"]])
def test_entry_script_runs_as_a_file_and_as_a_module(command):
    """The Makefile runs it as a file (then data/, not the root, is on sys.path); -m runs it as a module."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, *command, "--help"], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--size" in done.stdout
