"""The class-folder dataset (ModelNet's own tree and any tree of that shape), on trees these tests write."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

import datasets.class_folder as class_folder
from data.synthetic_gen.class_tree import make_class_tree
from datasets.class_folder import ClassFolder
from datasets.clouds import Preprocessing
from datasets.formats import write_pcd
from utils.errors import DataError

TREE_SIZE = {"tree_train": 6, "tree_test": 2, "tree_segments": 8}


@pytest.fixture
def tree(tmp_path) -> Path:
    """A ModelNet10-style tree of OFF meshes (not centred, not scaled), with a PCD and an npy cloud added to
    one class, and the loose files a downloaded archive has beside its classes."""
    make_class_tree(tmp_path, 0, TREE_SIZE)
    root = tmp_path / "ModelNet10"
    rng = np.random.default_rng(0)
    write_pcd(root / "chair" / "train" / "scan_0001.pcd", rng.normal(size=(900, 3)) * 50 + 7,
              encoding="binary_compressed")
    np.save(root / "chair" / "test" / "scan_0002.npy", (rng.normal(size=(700, 3)) * 3).astype(np.float32))
    (root / "README.txt").write_text("ModelNet10\n")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def build(root, split="train", **kwargs):
    return ClassFolder(root, split, num_points=256, mesh_points=512, workers=1, progress=False, **kwargs)


def test_classes_splits_and_points_as_the_h5_releases_have_them(tree, capsys):
    train, val, trainval, test = (build(tree, split) for split in ("train", "val", "trainval", "test"))
    assert train.class_names == sorted(p.name for p in tree.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(trainval) == 10 * 6 + 1 and len(test) == 10 * 2 + 1
    assert sorted(map(str, train.files + val.files)) == sorted(map(str, trainval.files))
    assert not set(train.files) & set(val.files) and len(val) == round(0.1 * len(trainval))
    for dataset in (train, test):
        # the unit sphere of all the samples, though the meshes are in any units; a subset reaches nearly to 1
        radius = np.linalg.norm(dataset.points, axis=-1).max(axis=1)
        assert (radius <= 1 + 1e-6).all() and radius.min() > 0.9
        np.testing.assert_allclose(dataset.points.mean(axis=1), 0, atol=0.08)
        for index in range(len(dataset)):
            assert dataset.class_names[dataset.labels[index]] == dataset.files[index].parent.parent.name
    item = test[0]
    assert item["points"].shape == (256, 3) and item["label"].dtype.is_floating_point is False
    assert "note:" in capsys.readouterr().err  # the README.txt beside the classes


def test_a_file_gives_the_points_tools_embed_gives_it(tree):
    test = build(tree, "test")
    settings = Preprocessing(num_points=256, mesh_points=512)
    for index in (0, len(test) - 1):
        np.testing.assert_array_equal(test.points[index], settings.read(test.files[index]))


def test_the_cache_is_read_again_and_redone_only_where_a_file_or_a_setting_changed(tree, monkeypatch):
    reads = []
    real = class_folder.read_or_problem
    monkeypatch.setattr(class_folder, "read_or_problem", lambda job: reads.append(job[0]) or real(job))
    first = build(tree, "test")
    assert len(reads) == len(first.files) and first.cache_path.is_file()
    assert first.cache_path.parent == tree / ".cache"
    reads.clear()
    again = build(tree, "test")
    assert reads == [] and np.array_equal(again.points, first.points)
    changed = again.files[3]
    stamp = changed.stat()
    changed.write_bytes(changed.read_bytes() + b"\n")
    os.utime(changed, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    build(tree, "test")
    assert reads == [str(changed)]
    reads.clear()
    other = ClassFolder(tree, "test", num_points=256, mesh_points=1024, workers=1, progress=False)
    assert len(reads) == len(first.files) and other.cache_path != first.cache_path


def test_a_read_only_tree_is_left_untouched_and_cached_elsewhere(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    before = sorted(str(p) for p in tree.rglob("*"))
    folders = [tree] + [p for p in tree.rglob("*") if p.is_dir()]
    for folder in folders:
        folder.chmod(0o555)
    try:
        dataset = build(tree, "test")
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert sorted(str(p) for p in tree.rglob("*")) == before
    assert tmp_path / "user_cache" in dataset.cache_path.parents and dataset.cache_path.is_file()


def test_prepared_in_worker_processes_as_in_one(tree):
    one = build(tree, "test", cache_dir=tree.parent / "cache_one")
    two = ClassFolder(tree, "test", num_points=256, mesh_points=512, workers=2, progress=False,
                      cache_dir=tree.parent / "cache_two")
    np.testing.assert_array_equal(one.points, two.points)


def test_a_bad_file_is_skipped_with_one_line_and_strict_stops(tree, capsys):
    bad = tree / "sofa" / "train" / "sofa_9999.off"
    bad.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n")
    dataset = build(tree, "trainval")
    err = capsys.readouterr().err
    assert f"skipped: {bad}: OFF declares 3 vertices and 1 faces" in err
    assert "skipped 1 of 62 files" in err and len(dataset) == 61 and bad not in dataset.files
    again = build(tree, "trainval")  # the refusal is cached too, and still reported
    assert again.skipped == dataset.skipped and f"skipped: {bad}" in capsys.readouterr().err
    with pytest.raises(DataError, match="sofa_9999.off: OFF declares"):
        build(tree, "trainval", strict=True)


@pytest.mark.parametrize("damage, cause", [
    (lambda root: shutil.rmtree(root / "bed" / "test"), "bed: no 'test' folder"),
    (lambda root: shutil.rmtree(root / "bed" / "train"), "bed: no 'train' folder"),
    (lambda root: [p.unlink() for p in (root / "desk" / "test").iterdir()], "desk/test: no point cloud or mesh"),
    (lambda root: (root / "lamp" / "test").mkdir(parents=True), "lamp: no 'train' folder"),  # a test-only class
    (lambda root: [shutil.rmtree(p) for p in root.iterdir() if p.is_dir()], "no class folders"),
])
def test_a_broken_layout_is_one_line_naming_the_folder(tree, damage, cause):
    damage(tree)
    with pytest.raises(DataError, match=cause) as error:
        build(tree, "test")
    assert "\n" not in str(error.value)


def test_a_class_whose_files_all_fail_is_one_line(tree):
    for path in (tree / "toilet" / "test").iterdir():
        path.write_text("not a mesh")
    with pytest.raises(DataError, match="toilet/test: none of its files could be read"):
        build(tree, "test")


def test_stray_files_in_the_split_folders_are_noted_not_read(tree, capsys):
    (tree / "chair" / "train" / "notes.doc").write_text("x")
    (tree / "chair" / "extra").mkdir()
    assert len(build(tree, "trainval")) == 61
    err = capsys.readouterr().err
    assert "ignored 3 entries" in err and "chair/train/notes.doc" in err and "chair/extra" in err
    assert not stat.S_ISDIR(os.stat(tree / "README.txt").st_mode)
