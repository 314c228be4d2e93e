"""Dataset loaders on tiny synthetic data (tests/conftest.py `synthetic_root`): items, splits, randomness,
and a one-line DataError naming the file for every kind of bad input."""

import shutil

import h5py
import numpy as np
import plyfile
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from datasets import S3DIS, ModelNet40, ScanObjectNN, ShapeNetPart, ShapeNetRender
from datasets.s3dis import room_area
from datasets.shapenet_render import GRAY_MEAN, GRAY_STD, IMAGENET_MEAN, IMAGENET_STD, read_ply_points
from datasets.splits import grouped_val_mask, stratified_val_mask
from datasets.transforms import RandomJitter
from utils.errors import DataError


def assert_data_error(match_path, call):
    """`call()` raises a one-line DataError whose message names `match_path` (a file or folder name)."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    assert str(match_path) in message, message
    return message


def batches(dataset, workers):
    loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=workers)
    return list(loader)


# ------------------------------------------------------------------------------------------ ShapeNetRender


def test_shapenet_render_items(synthetic_root):
    ds = ShapeNetRender(synthetic_root, grayscale=True)
    on_disk = sorted(synthetic_root.glob("ShapeNet/*/*.ply"))
    with_png = [p for p in on_disk
                if list((synthetic_root / "ShapeNetRendering" / p.parent.name / p.stem / "rendering").glob("*.png"))]
    assert len(ds) == len(with_png) and ds.num_skipped == len(on_disk) - len(with_png) > 0
    assert len(ds.skipped) == ds.num_skipped
    item = ds[0]
    assert set(item) == {"points1", "points2", "image", "gray"}
    for key in ("points1", "points2"):
        assert item[key].shape == (2048, 3) and item[key].dtype == torch.float32
        assert torch.isfinite(item[key]).all()
    assert not torch.equal(item["points1"], item["points2"])  # two independent views
    assert item["image"].shape == (3, 224, 224) and item["image"].dtype == torch.float32
    assert item["gray"].shape == (1, 224, 224) and item["gray"].dtype == torch.float32
    # gray is the luma of the same augmented view (resizing is linear, so the order does not matter)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = item["image"] * std + mean
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]
    torch.testing.assert_close(item["gray"] * GRAY_STD + GRAY_MEAN, luma, atol=2e-3, rtol=0)
    assert rgb.min() >= -1e-4 and rgb.max() <= 1 + 1e-4
    assert "gray" not in ShapeNetRender(synthetic_root, image_size=32)[0]


def test_shapenet_render_randomness(synthetic_root):
    ds = ShapeNetRender(synthetic_root, image_size=32, seed=3)
    first = ds[1]
    again = ShapeNetRender(synthetic_root, image_size=32, seed=3)[1]
    for key in first:
        assert torch.equal(first[key], again[key])
    ds.set_epoch(1)
    later = ds[1]
    assert not torch.equal(first["points1"], later["points1"])
    assert not torch.equal(first["image"], later["image"])
    other_seed = ShapeNetRender(synthetic_root, image_size=32, seed=4)[1]
    assert not torch.equal(first["points1"], other_seed["points1"])


def test_shapenet_render_same_items_with_workers(synthetic_root):
    ds = ShapeNetRender(synthetic_root, image_size=32, num_points=256, grayscale=True)
    ds.set_epoch(2)
    serial, parallel = batches(ds, 0), batches(ds, 2)
    assert len(serial) == len(parallel) > 1
    for a, b in zip(serial, parallel):
        for key in a:
            assert torch.equal(a[key], b[key]), key


def write_ply(path, points, text):
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    vertex["x"], vertex["y"], vertex["z"] = np.asarray(points, np.float32).T
    path.parent.mkdir(parents=True, exist_ok=True)
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")], text=text).write(str(path))


def tiny_render_root(tmp_path, n_points=50, alpha=0, text=False):
    """One object: an n-point PLY and two uniform 8x8 RGBA views."""
    root = tmp_path / "render"
    points = np.random.default_rng(0).normal(size=(n_points, 3))
    write_ply(root / "ShapeNet" / "02691156" / "abc.ply", points, text)
    views = root / "ShapeNetRendering" / "02691156" / "abc" / "rendering"
    views.mkdir(parents=True)
    for v in range(2):
        rgba = np.zeros((8, 8, 4), np.uint8)
        rgba[..., :3], rgba[..., 3] = (200, 30, 90), alpha
        Image.fromarray(rgba, "RGBA").save(views / f"{v:02d}.png")
    return root


def test_shapenet_render_composites_on_background(tmp_path):
    root = tiny_render_root(tmp_path, alpha=0)
    for background in ((255, 255, 255), (0, 0, 0), (10, 120, 250)):
        ds = ShapeNetRender(root, image_size=16, background=background, color_jitter=(0, 0, 0, 0), flip_p=0)
        image = ds[0]["image"]
        expected = (torch.tensor(background) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        torch.testing.assert_close(image, expected.view(3, 1, 1).expand(3, 16, 16), atol=1e-5, rtol=0)
    opaque = ShapeNetRender(tiny_render_root(tmp_path / "b", alpha=255), image_size=16, color_jitter=(0, 0, 0, 0))
    rgb = opaque[0]["image"] * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    torch.testing.assert_close(rgb[:, 0, 0], torch.tensor([200, 30, 90]) / 255, atol=1e-5, rtol=0)


@pytest.mark.parametrize("text", [False, True])
def test_ply_binary_and_ascii_and_resampling(tmp_path, text):
    root = tiny_render_root(tmp_path, n_points=50, text=text)
    path = root / "ShapeNet" / "02691156" / "abc.ply"
    vertex = plyfile.PlyData.read(str(path))["vertex"].data
    np.testing.assert_array_equal(read_ply_points(path), np.stack([vertex["x"], vertex["y"], vertex["z"]], 1))
    item = ShapeNetRender(root, num_points=300, image_size=16)[0]  # 50 points -> 300 with replacement
    assert item["points1"].shape == (300, 3)


def test_relative_root_from_any_directory(synthetic_root, monkeypatch):
    monkeypatch.chdir(synthetic_root.parent)
    ds = ModelNet40(synthetic_root.name, split="test")
    monkeypatch.chdir("/")
    assert len(ds) > 0 and ds[0]["points"].shape == (1024, 3)
    monkeypatch.chdir(synthetic_root.parent)
    render = ShapeNetRender(synthetic_root.name, image_size=16)
    monkeypatch.chdir("/")
    assert render[0]["image"].shape == (3, 16, 16)


# ---------------------------------------------------------------------------------------------- ModelNet40


def test_modelnet40_items_and_splits(synthetic_root):
    splits = {s: ModelNet40(synthetic_root, split=s) for s in ("train", "val", "trainval", "test")}
    for ds in splits.values():
        item = ds[0]
        assert set(item) == {"points", "label"}
        assert item["points"].shape == (1024, 3) and item["points"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
        assert 0 <= ds.labels.min() and ds.labels.max() < 40
    assert len(splits["train"].class_names) == 40
    train, val, trainval = (splits[s].indices for s in ("train", "val", "trainval"))
    assert len(train) + len(val) == len(trainval) and not set(train) & set(val)
    assert sorted(set(train) | set(val)) == list(trainval)
    assert abs(len(val) - 0.1 * len(trainval)) <= 1
    # stratified: every training class is in val, in proportion
    assert set(splits["val"].labels) == set(splits["trainval"].labels)
    # the split is fixed: independent of the training seed, identical when rebuilt
    assert np.array_equal(ModelNet40(synthetic_root, split="val", seed=7).indices, val)
    # the first 1024 of the stored 2048 points, in file order
    with h5py.File(synthetic_root / "modelnet40_ply_hdf5_2048" / "ply_data_test0.h5", "r") as f:
        np.testing.assert_array_equal(splits["test"][0]["points"].numpy(), f["data"][0, :1024])
        assert splits["test"][0]["label"] == int(f["label"][0, 0])
    assert ModelNet40(synthetic_root, split="test", num_points=2048)[0]["points"].shape == (2048, 3)


def test_downstream_transform_uses_item_rng(synthetic_root):
    ds = ModelNet40(synthetic_root, split="test", transform=RandomJitter(), seed=1)
    a, b = ds[3]["points"], ds[3]["points"]
    ds.set_epoch(1)
    c = ds[3]["points"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = ModelNet40(synthetic_root, split="test")
    plain.set_epoch(5)
    assert torch.equal(plain[3]["points"], ModelNet40(synthetic_root, split="test")[3]["points"])
    serial, parallel = batches(ds, 0), batches(ds, 2)
    assert all(torch.equal(x["points"], y["points"]) for x, y in zip(serial, parallel))


def test_split_helpers():
    labels = np.repeat(np.arange(5), [10, 20, 3, 1, 40])
    mask = stratified_val_mask(labels, 0.1)
    assert np.array_equal(mask, stratified_val_mask(labels, 0.1))
    assert mask.sum() == round(0.1 * len(labels))
    assert not mask[labels == 3].any()  # a class with one sample stays in train
    assert 3 <= mask[labels == 4].sum() <= 5
    assert not np.array_equal(mask, stratified_val_mask(labels, 0.1, split_seed=1))
    rooms = [f"Area_{a}_room_{r}" for a in (1, 2) for r in range(10) for _ in range(3)]
    grouped = grouped_val_mask(rooms, [r.split("_")[1] for r in rooms], 0.2)
    val_rooms = {r for r, m in zip(rooms, grouped) if m}
    assert len(val_rooms) == 4 and not val_rooms & {r for r, m in zip(rooms, grouped) if not m}


# -------------------------------------------------------------------------------------------- ScanObjectNN


@pytest.mark.parametrize("variant", ["OBJ_BG", "OBJ_ONLY", "PB_T50_RS"])
def test_scanobjectnn_variants(synthetic_root, variant):
    train, val, test = (ScanObjectNN(synthetic_root, variant=variant, split=s) for s in ("train", "val", "test"))
    trainval = ScanObjectNN(synthetic_root, variant=variant, split="trainval")
    assert len(train) + len(val) == len(trainval) and not set(train.indices) & set(val.indices)
    for ds in (train, test):
        item = ds[0]
        assert item["points"].shape == (2048, 3) and 0 <= int(item["label"]) < 15
        assert ds.labels.max() < 15
    assert len(ScanObjectNN.class_names) == 15


def test_scanobjectnn_crosspoint_names(synthetic_root, tmp_path):
    root = tmp_path / "cp"
    shutil.copytree(synthetic_root / "ScanObjectNN", root / "ScanObjectNN")
    ds = ScanObjectNN(root, variant="OBJ_BG", split="test")
    assert ds.file.name == "test.h5"
    official = ScanObjectNN(synthetic_root, variant="OBJ_BG", split="test")
    assert torch.equal(ds[0]["points"], official[0]["points"])
    message = assert_data_error(root, lambda: ScanObjectNN(root, variant="OBJ_ONLY", split="test"))
    assert "h5_files/main_split_nobg/test_objectdataset.h5" in message


# -------------------------------------------------------------------------------------------- ShapeNetPart


def test_shapenet_part(synthetic_root):
    splits = {s: ShapeNetPart(synthetic_root, split=s) for s in ("train", "val", "trainval", "test")}
    assert len(splits["train"]) + len(splits["val"]) == len(splits["trainval"])
    assert sum(ShapeNetPart.parts_per_category) == 50 and len(ShapeNetPart.category_names) == 16
    assert ShapeNetPart.part_ranges[0] == range(0, 4) and ShapeNetPart.part_ranges[15] == range(47, 50)
    for ds in splits.values():
        item = ds[0]
        assert set(item) == {"points", "category", "seg"}
        assert item["points"].shape == (2048, 3) and item["seg"].shape == (2048,)
        assert item["seg"].dtype == torch.int64 and item["category"].dtype == torch.int64
        cat = int(item["category"])
        assert 0 <= cat < 16 and set(item["seg"].tolist()) <= set(ShapeNetPart.part_ranges[cat])


def test_shapenet_part_reads_only_the_listed_files(synthetic_root, tmp_path):
    folder = tmp_path / "shapenet_part_seg_hdf5_data"
    shutil.copytree(synthetic_root / "shapenet_part_seg_hdf5_data", folder)
    shutil.copy(folder / "ply_data_train0.h5", folder / "ply_data_train0_backup.h5")  # a stray copy beside them
    (folder / "ply_data_test9.h5").write_text("not even an h5 file")
    for split in ("train", "test"):
        assert len(ShapeNetPart(tmp_path, split=split)) == len(ShapeNetPart(synthetic_root, split=split))
    (folder / "val_hdf5_file_list.txt").unlink()
    assert "val_hdf5_file_list.txt: file not found" in assert_data_error(folder, lambda: ShapeNetPart(tmp_path,
                                                                                                      split="val"))


# --------------------------------------------------------------------------------------------------- S3DIS


def test_s3dis_splits_and_items(synthetic_root):
    splits = {s: S3DIS(synthetic_root, split=s) for s in ("train", "val", "trainval", "test")}
    item = splits["train"][0]
    assert set(item) == {"points", "seg"}
    assert item["points"].shape == (4096, 9) and item["points"].dtype == torch.float32
    assert item["seg"].shape == (4096,) and item["seg"].dtype == torch.int64
    assert 0 <= int(splits["train"].seg.min()) and int(splits["train"].seg.max()) < 13
    assert len(S3DIS.class_names) == 13
    assert all(r.startswith("Area_5_") for r in splits["test"].rooms)
    assert not any(r.startswith("Area_5_") for r in splits["trainval"].rooms)
    n_rooms = len((synthetic_root / "indoor3d_sem_seg_hdf5_data" / "room_filelist.txt").read_text().split())
    assert len(splits["trainval"]) + len(splits["test"]) == n_rooms
    assert len(splits["train"]) + len(splits["val"]) == len(splits["trainval"]) and len(splits["val"]) > 0
    assert not set(splits["train"].rooms) & set(splits["val"].rooms)  # whole rooms held out
    lazy = S3DIS(synthetic_root, split="val", in_memory=False)
    for i in (0, len(lazy) - 1):
        for key in ("points", "seg"):
            assert torch.equal(lazy[i][key], splits["val"][i][key])
    assert [len(b["points"]) for b in batches(lazy, 2)] == [len(b["points"]) for b in batches(splits["val"], 0)]


def test_s3dis_area_matching_is_exact(synthetic_root, tmp_path):
    assert room_area("Area_1_office_3") == 1 and room_area("Area_10_office_3") == 10
    assert room_area("Area_5_hallway_12") == 5 and room_area("office") is None
    folder = tmp_path / "indoor3d_sem_seg_hdf5_data"
    shutil.copytree(synthetic_root / "indoor3d_sem_seg_hdf5_data", folder)
    rooms = folder / "room_filelist.txt"
    rooms.write_text(rooms.read_text().replace("Area_6_", "Area_10_"))
    test = S3DIS(tmp_path, split="test", test_area=1)
    assert test.rooms and all(r.startswith("Area_1_") for r in test.rooms)
    assert all(r.startswith("Area_10_") for r in S3DIS(tmp_path, split="test", test_area=10).rooms)


# ------------------------------------------------------------------------------------------------ bad input


def sonn_root_with(tmp_path, writer):
    """A ScanObjectNN root whose OBJ_BG training file is produced by `writer(path)`."""
    path = tmp_path / "h5_files" / "main_split" / "training_objectdataset.h5"
    path.parent.mkdir(parents=True)
    writer(path)
    return tmp_path, path


def write_h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


GOOD = dict(data=np.zeros((4, 2048, 3), np.float32), label=np.arange(4, dtype=np.int32))


@pytest.mark.parametrize("case, cause", [
    ("truncated", "not a readable HDF5 file"),
    ("text", "not a readable HDF5 file"),
    ("no_label", "missing key 'label'"),
    ("wrong_shape", "shape"),
    ("few_points", "fewer than num_points"),
    ("nan", "NaN/Inf"),
    ("label_range", "outside 0..14"),
])
def test_bad_h5_files(synthetic_root, tmp_path, case, cause):
    real = synthetic_root / "h5_files" / "main_split" / "training_objectdataset.h5"
    writers = {
        "truncated": lambda p: p.write_bytes(real.read_bytes()[:100]),
        "text": lambda p: p.write_text("this is not an HDF5 file\n"),
        "no_label": lambda p: write_h5(p, data=GOOD["data"]),
        "wrong_shape": lambda p: write_h5(p, data=np.zeros((4, 2048, 4), np.float32), label=GOOD["label"]),
        "few_points": lambda p: write_h5(p, data=np.zeros((4, 100, 3), np.float32), label=GOOD["label"]),
        "nan": lambda p: write_h5(p, data=np.where(np.arange(3) == 1, np.nan, GOOD["data"]).astype(np.float32),
                                  label=GOOD["label"]),
        "label_range": lambda p: write_h5(p, data=GOOD["data"], label=np.array([0, 1, 2, 15], np.int32)),
    }
    root, path = sonn_root_with(tmp_path, writers[case])
    message = assert_data_error(path, lambda: ScanObjectNN(root, split="trainval"))
    assert cause in message


def test_missing_roots_and_folders(tmp_path):
    missing = tmp_path / "nowhere"
    for make in (lambda r: ShapeNetRender(r), lambda r: ModelNet40(r), lambda r: ScanObjectNN(r),
                 lambda r: ShapeNetPart(r), lambda r: S3DIS(r)):
        assert_data_error(missing, lambda: make(missing))
    assert_data_error("modelnet40_ply_hdf5_2048", lambda: ModelNet40(tmp_path))
    assert_data_error("ShapeNet", lambda: ShapeNetRender(tmp_path))
    assert_data_error("shapenet_part_seg_hdf5_data", lambda: ShapeNetPart(tmp_path))
    message = assert_data_error(tmp_path, lambda: ScanObjectNN(tmp_path, variant="OBJ_BG"))
    assert "training_objectdataset.h5" in message and "ScanObjectNN/main_split/train.h5" in message


def test_list_files_naming_missing_h5(synthetic_root, tmp_path):
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    shutil.copytree(synthetic_root / "modelnet40_ply_hdf5_2048", folder)
    (folder / "ply_data_train3.h5").unlink()
    message = assert_data_error(folder / "train_files.txt", lambda: ModelNet40(tmp_path, split="train"))
    assert "ply_data_train3.h5" in message

    s3dis = tmp_path / "indoor3d_sem_seg_hdf5_data"
    shutil.copytree(synthetic_root / "indoor3d_sem_seg_hdf5_data", s3dis)
    listing = s3dis / "all_files.txt"
    listing.write_text(listing.read_text() + "indoor3d_sem_seg_hdf5_data/ply_data_all_99.h5\n")
    message = assert_data_error(listing, lambda: S3DIS(tmp_path, split="test"))
    assert "ply_data_all_99.h5" in message


def test_bad_ply_and_png(tmp_path):
    root = tiny_render_root(tmp_path)
    ply = root / "ShapeNet" / "02691156" / "abc.ply"
    for text in (False, True):  # fewer than MIN_POINTS vertices in the header: skipped at scan time
        write_ply(ply, np.zeros((0, 3)), text=text)
        message = assert_data_error(root / "ShapeNet", lambda: ShapeNetRender(root))
        assert "1 with fewer than 3 points (e.g. 02691156/abc)" in message
    write_ply(ply, [[0.5, 0.5, 0.5]] * 4, text=True)  # found when loaded: the header alone cannot tell
    assert "all 4 points of the cloud coincide" in assert_data_error(ply, lambda: ShapeNetRender(root)[0])
    write_ply(ply, [[1e30, 0, 0], [0, 1, 0], [0, 0, 1]], text=True)
    assert "too large to normalise" in assert_data_error(ply, lambda: ShapeNetRender(root)[0])
    write_ply(ply, [[0, 0, 0], [np.nan, 1, 1], [1, 2, 3]], text=True)
    assert "NaN" in assert_data_error(ply, lambda: ShapeNetRender(root)[0])
    ply.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\n"
                    b"property float y\nproperty float z\nend_header\n" + bytes(40))
    assert_data_error(ply, lambda: ShapeNetRender(root)[0])  # truncated body
    ply.write_bytes(b"\x00garbage")
    assert_data_error(ply, lambda: ShapeNetRender(root)[0])

    write_ply(ply, np.arange(30.0).reshape(10, 3), text=False)
    views = root / "ShapeNetRendering" / "02691156" / "abc" / "rendering"
    for png in views.glob("*.png"):
        png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)
    message = assert_data_error("rendering/0", lambda: ShapeNetRender(root)[0])
    assert "cannot decode PNG" in message
