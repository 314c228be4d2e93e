"""Every bad value, fault and signal ends in one clear line, with nothing lost.

One table of cases through the real entry points: train.py, the three downstream scripts and
data/make_synthetic.py. Each case asserts a non-zero exit status, exactly one `error:` line that names the key
or file and the cause, no traceback, and, where a run directory existed before, that none of its files changed.
Files that declare a huge size are also run in a real process under an address-space limit
(test_a_file_declaring_a_huge_size_stays_within_a_memory_bound).

Most cases run in-process through the script's `main(argv)`: the same code path as a real run minus the
interpreter start (two seconds each on two cores, which 100 cases cannot afford). The cases that need a real
process (a script run the wrong way, make_synthetic as a file) are subprocesses; SIGTERM and SIGINT sent to a
real training process are in tests/test_train.py. The count of distinct cases is checked by
test_the_table_covers_at_least_100_cases and printed by it.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

import train
from downstream.classification import main as classification_main
from downstream.segmentation import main_partseg, main_semseg
from utils.checkpoint import load_checkpoint_file

REPO = Path(__file__).resolve().parents[1]

PRETRAIN = ["device=cpu", "data.num_points=128", "data.image_size=32", "model.point_backbone.k=8",
            "model.point_backbone.emb_dims=64", "model.proj_dim=32", "model.image_encoder.name=resnet18",
            "monitor.num_points=128", "optim.batch_size=8", "optim.epochs=1", "train.num_workers=0",
            "train.max_steps_per_epoch=1"]
CLASSIFY = ["device=cpu", "model.k=8", "model.emb_dims=32", "data.modelnet40_points=64",
            "data.scanobjectnn_points=64", "train.num_workers=0", "tsne=false", "fewshot.settings=[]"]
PARTSEG = ["device=cpu", "data.num_points=64", "model.k=8", "model.emb_dims=32", "optim.epochs=2",
           "optim.batch_size=8", "train.max_steps_per_epoch=1", "train.num_workers=0"]
SEMSEG = ["device=cpu", "data.num_points=64", "model.k=8", "model.emb_dims=32", "optim.epochs=1",
          "optim.batch_size=8", "train.max_steps_per_epoch=1", "train.num_workers=0"]

SCRIPTS = {"train": (train.main, ["--config", str(REPO / "configs" / "demo.yaml"), "--data-root", "{root}",
                                  "--out", "{out}", *PRETRAIN]),
           "cls": (classification_main.main, ["--data-root", "{root}", "--out", "{out}", *CLASSIFY]),
           "partseg": (main_partseg.main, ["--data-root", "{root}", "--out", "{out}", *PARTSEG]),
           "semseg": (main_semseg.main, ["--data-root", "{root}", "--out", "{out}", *SEMSEG])}


@dataclass
class Case:
    """`args` are appended to the script's tiny defaults; `{root}`, `{out}`, `{prior}`, `{tmp}` and the names
    that `setup(ctx, monkeypatch)` adds to ctx are filled in. `prior`: the case runs on a copy-free view of the
    finished part-segmentation run (`{prior}`, also `{out}`), whose files must not change."""

    id: str
    script: str
    args: list
    expect: tuple
    setup: Callable | None = None
    prior: bool = False
    code: int = 2
    may_change: tuple = field(default_factory=tuple)


# ------------------------------------------------------------------------------------- config cases
def config_cases() -> list[Case]:
    pretrain = [
        ("optim.batch_size=0", "'optim.batch_size' must be >= 1"),
        ("optim.batch_size=-4", "'optim.batch_size' must be >= 1"),
        ("train.eval_every=0", "'train.eval_every' must be >= 1"),
        ("model.point_backbone.k=200", "model.point_backbone.k=200 needs at least that many points"),
        ("seed=-1", "'seed' must be >= 0"),
        ("train.num_workers=-1", "'train.num_workers' must be >= 0"),
        ("optim.lr=-0.01", "'optim.lr' must be > 0"),
        ("optim.lr=.nan", "'optim.lr' must be a finite number"),
        ("optim.lr=fast", "'optim.lr' must be float"),
        ("data.num_points=0", "'data.num_points' must be >= 1"),
        ("data.image_size=0", "'data.image_size' must be >= 1"),
        ("optim.epochs=0", "'optim.epochs' must be >= 1"),
        ("optim.epochs=-3", "'optim.epochs' must be >= 1"),
        ("optim.name=adagrad", "'optim.name' unknown value 'adagrad'"),
        ("optim.momentum=1.5", "'optim.momentum' must be >= 0 and < 1"),
        ("optim.weight_decay=-1", "'optim.weight_decay' must be >= 0"),
        ("optim.warmup_epochs=-1", "'optim.warmup_epochs' must be >= 0"),
        ("optim.min_lr=-1", "'optim.min_lr' must be >= 0"),
        ("train.amp=fp8", "'train.amp' unknown value 'fp8'"),
        ("train.grad_clip=-1", "'train.grad_clip' must be >= 0"),
        ("train.log_every=0", "'train.log_every' must be >= 1"),
        ("train.checkpoint_every_steps=-1", "'train.checkpoint_every_steps' must be >= 0"),
        ("train.max_steps_per_epoch=-1", "'train.max_steps_per_epoch' must be >= 0"),
        ("train.sync_bn=maybe", "'train.sync_bn' must be bool"),
        ("device=gpu", "'device' expected auto, cpu, cuda or cuda:N"),
        ("data.background=[1,2]", "'data.background' needs exactly 3 values"),
        ("data.background=[0,0,300]", "'data.background' must be >= 0 and <= 255"),
        ("weighting.beta=1.0", "'weighting.beta' must be >= 0 and < 1"),
        ("weighting.name=magic", "'weighting.name' unknown value 'magic'"),
        ("loss.temperature=0", "'loss.temperature' must be > 0"),
        ("loss.cross_modal=sideways", "'loss.cross_modal' unknown value 'sideways'"),
        ("monitor.svm_c=-1", "'monitor.svm_c' must be > 0"),
        ("monitor.num_points=0", "'monitor.num_points' must be >= 1"),
        ("model.point_backbone.name=pointnet2", "'model.point_backbone.name' unknown value 'pointnet2'"),
        ("model.image_encoder.name=vit", "'model.image_encoder.name' unknown value 'vit'"),
        ("optim.lrr=1", "unknown key 'optim.lrr'"),
        ("optim=3", "'optim' is a section"),
        ("optim.lr", "expected key.sub=value"),
        ("resume_allow=optim.lr", "'resume_allow' must be a list"),
        ("model.gray_branch=false", "loss.cross_modal=stacked needs model.gray_branch=true"),
        ("optim.batch_size=1000", "optim.batch_size 1000 is larger than the"),
        ("resume_allow=[optim.nope]", "resume_allow: unknown key 'optim.nope'"),  # checked on a fresh run too
        ("optim={lr: 0.1, lr: 0.2}", "key 'lr' appears twice"),
    ]
    # braces doubled: the arguments are str.format templates
    cases = [Case(f"train:{o}", "train", [o.replace("{", "{{").replace("}", "}}")], (m,)) for o, m in pretrain]
    if not torch.cuda.is_available():
        cases.append(Case("train:device=cuda", "train", ["device=cuda"], ("CUDA is not available",)))
    classification = [
        ("data.scanobjectnn_variant=FOO", "'data.scanobjectnn_variant' unknown value 'FOO'"),
        ("data.datasets=[modelnet10]", "'data.datasets' unknown value 'modelnet10'"),
        ("data.datasets=[]", "'data.datasets' needs at least 1 value"),
        ("svm.c=-1", "'svm.c' must be > 0"),
        ("svm.c_grid=[0.1,0]", "'svm.c_grid' must be > 0"),
        ("svm.folds=1", "'svm.folds' must be >= 2"),
        ("fewshot.settings=[5w0s]", "'fewshot.settings' expected <N>w<K>s"),
        ("fewshot.queries=0", "'fewshot.queries' must be >= 1"),
        ("fewshot.runs=0", "'fewshot.runs' must be >= 1"),
        ("data.modelnet40_points=4096", "'data.modelnet40_points' must be >= 1 and <= 2048"),
        ("data.batch_size=0", "'data.batch_size' must be >= 1"),
        ("model.k=100", "model.k=100 needs at least that many points"),
        ("random_init=true", "--checkpoint and --random-init exclude each other"),
    ]
    cases += [Case(f"cls:{o}", "cls", ["--random-init", o] if "random_init" not in o else
                   ["--checkpoint", "{ckpt_random}", o], (m,)) for o, m in classification]
    cases += [
        Case("cls:no encoder", "cls", [], ("choose the encoder",)),
        Case("cls:resume=path", "cls", ["--random-init", "resume=x.pt"], ("this evaluation trains nothing",)),
        Case("cls:--seeds x", "cls", ["--random-init", "--seeds", "x"], ("--seeds: expected integers",)),
        Case("cls:--seeds 1 1", "cls", ["--random-init", "--seeds", "1", "1"], ("--seeds: repeated seed",)),
        Case("cls:--seeds -1", "cls", ["--random-init", "--seeds", "-1"], ("--seeds: seeds must be >= 0",)),
        Case("cls:--no-such-flag", "cls", ["--no-such-flag"], ("unrecognized arguments: --no-such-flag",)),
        Case("cls:--config missing", "cls", ["--config", "{tmp}/missing.yaml"], ("missing.yaml: cannot read config",)),
        Case("cls:--config broken", "cls", ["--config", "{broken_yaml}"], ("broken.yaml: invalid YAML",),
             setup=lambda ctx, mp: _write(ctx, "broken_yaml", "broken.yaml", "optim: [1, 2\n")),
        Case("cls:--config list", "cls", ["--config", "{list_yaml}"], ("a config must be a mapping",),
             setup=lambda ctx, mp: _write(ctx, "list_yaml", "list.yaml", "- 1\n- 2\n")),
        Case("cls:--config loop", "cls", ["--config", "{loop_yaml}"], ("inherits from itself",),
             setup=lambda ctx, mp: _write(ctx, "loop_yaml", "loop.yaml", "base: loop.yaml\n")),
        Case("cls:--config typo", "cls", ["--config", "{typo_yaml}"], ("typo.yaml: unknown key 'svm.cc'",),
             setup=lambda ctx, mp: _write(ctx, "typo_yaml", "typo.yaml", "svm:\n  cc: 1\n")),
        Case("train:--config with a key twice", "train", ["--config", "{twice_yaml}"],
             ("twice.yaml: key 'lr' appears twice (again at line 3)",),
             setup=lambda ctx, mp: _write(ctx, "twice_yaml", "twice.yaml", "optim:\n  lr: 0.1\n  lr: 0.01\n")),
        Case("train:--config not UTF-8", "train", ["--config", "{latin1_yaml}"], ("latin1.yaml: not UTF-8 text",),
             setup=lambda ctx, mp: _write(ctx, "latin1_yaml", "latin1.yaml", "# d\u00e9mo\n", "latin-1")),
    ]
    partseg = [
        ("model.k=100", "model.k=100 needs at least that many points"),
        ("data.train_split=test", "'data.train_split' unknown value 'test'"),
        ("loss.label_smoothing=0.5", "'loss.label_smoothing' must be >= 0 and < 0.5"),
        ("model.dropout=1", "'model.dropout' must be >= 0 and < 1"),
        ("data.num_points=0", "'data.num_points' must be >= 1"),
        ("optim.batch_size=0", "'optim.batch_size' must be >= 1"),
        ("optim.epochs=0", "'optim.epochs' must be >= 1"),
        ("model.name=pointnet", "'model.name' unknown value 'pointnet'"),
        ("eval_initial=3", "'eval_initial' must be bool"),
    ]
    cases += [Case(f"partseg:{o}", "partseg", [o], (m,)) for o, m in partseg]
    semseg = [
        ("data.test_area=7", "'data.test_area' unknown value 7"),
        ("data.val_fraction=0", "'data.val_fraction' must be > 0 and < 1"),
        ("data.val_fraction=1", "'data.val_fraction' must be > 0 and < 1"),
        ("model.k=1000", "model.k=1000 needs at least that many points"),
        ("data.num_points=-5", "'data.num_points' must be >= 1"),
        ("model.num_classes=0", "'model.num_classes' must be >= 1"),
    ]
    cases += [Case(f"semseg:{o}", "semseg", [o], (m,)) for o, m in semseg]
    cases.append(Case("semseg:six-fold resume=path", "semseg", ["--six-fold", "resume=x/last.pt"],
                      ("the 6-fold driver runs six, use resume=auto",)))
    return cases


def _write(ctx, key, name, text, encoding="utf-8"):
    path = ctx["tmp"] / name
    path.write_text(text, encoding=encoding)
    ctx[key] = str(path)


# ------------------------------------------------------------------------------------- data cases
def _copy_root(ctx, *folders):
    """A data root in tmp with copies of `folders` (to break) and links to the other dataset folders."""
    root = ctx["tmp"] / "data"
    root.mkdir()
    for entry in Path(ctx["synthetic"]).iterdir():
        if entry.name in folders:
            shutil.copytree(entry, root / entry.name)
        else:
            (root / entry.name).symlink_to(entry)
    ctx["root"] = str(root)
    return root


def _write_ply(path, points):
    header = f"ply\nformat ascii 1.0\nelement vertex {len(points)}\nproperty float x\nproperty float y\n" \
             f"property float z\nend_header\n"
    path.write_text(header + "".join(f"{x} {y} {z}\n" for x, y, z in points))


def _all_plys(ctx, points):
    root = _copy_root(ctx, "ShapeNet")
    for path in (root / "ShapeNet").rglob("*.ply"):
        _write_ply(path, points)


def _modelnet_h5(ctx, change):
    root = _copy_root(ctx, "modelnet40_ply_hdf5_2048")
    for path in sorted((root / "modelnet40_ply_hdf5_2048").glob("*.h5")):
        with h5py.File(path, "r+") as file:
            change(file)


def _set_coordinate(value):
    def change(file):
        data = file["data"][...]
        data[0, 0, 0] = value
        file["data"][...] = data
    return change


def _drop_label(file):
    del file["label"]


def write_png(path, width, height):
    """A valid black RGB PNG of any size, a few kB per million pixels: the rows are compressed as they are made."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(1)
    row = bytes(1 + 3 * width)  # filter byte 0, then the pixels
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def write_h5_declaring(path, samples, points=2048):
    """A ModelNet40-style file of under 2 kB that declares `samples` shapes (chunks never written: fill values)."""
    with h5py.File(path, "w") as file:
        file.create_dataset("data", shape=(samples, points, 3), dtype="f4", chunks=(1, points, 3), compression="gzip")
        file.create_dataset("label", shape=(samples, 1), dtype="u1", chunks=(min(samples, 65536), 1),
                            compression="gzip")


def _huge_pngs(ctx, width=12000, height=12000):
    """Every rendered view replaced by one valid PNG of width x height pixels (hard links: one file on disk)."""
    root = _copy_root(ctx, "ShapeNetRendering")
    big = ctx["tmp"] / "big.png"
    write_png(big, width, height)
    for path in (root / "ShapeNetRendering").rglob("*.png"):
        path.unlink()
        os.link(big, path)
    return root


def _huge_modelnet40_file(ctx, samples=2_000_000):
    root = _copy_root(ctx, "modelnet40_ply_hdf5_2048")
    write_h5_declaring(root / "modelnet40_ply_hdf5_2048" / "ply_data_train0.h5", samples)
    return root


def _scanobjectnn_copy_without_test(ctx):
    """The official copy (h5_files/) lacks its test file; CrossPoint's copy (ScanObjectNN/main_split) has one."""
    root = _copy_root(ctx, "h5_files")
    (root / "h5_files" / "main_split" / "test_objectdataset.h5").unlink()
    assert (root / "ScanObjectNN" / "main_split" / "test.h5").is_file()


def _part_list_naming_a_missing_file(ctx):
    root = _copy_root(ctx, "shapenet_part_seg_hdf5_data")
    listing = root / "shapenet_part_seg_hdf5_data" / "train_hdf5_file_list.txt"
    listing.write_text(listing.read_text() + "\nply_data_train9.h5\n")


def data_cases() -> list[Case]:
    return [
        Case("train:rendered views of 12000 x 12000 pixels", "train", [],
             (".png: PNG of 12000 x 12000 pixels, more than the limit of 16777216",),
             setup=lambda ctx, mp: _huge_pngs(ctx)),
        Case("cls:ModelNet40 file declaring 2 million shapes", "cls", ["--random-init", "data.datasets=[modelnet40]"],
             ("ply_data_train0.h5: 'data' declares 2000000 samples, more than the limit of 100000",),
             setup=lambda ctx, mp: _huge_modelnet40_file(ctx)),
        Case("cls:ScanObjectNN test file missing from its copy", "cls",
             ["--random-init", "data.datasets=[scanobjectnn]"],
             ("h5_files/main_split/test_objectdataset.h5: file not found", "never taken from two copies"),
             setup=lambda ctx, mp: _scanobjectnn_copy_without_test(ctx)),
        Case("partseg:ShapeNetPart list naming a missing file", "partseg", [],
             ("train_hdf5_file_list.txt: lists 'ply_data_train9.h5', but", "does not exist"),
             setup=lambda ctx, mp: _part_list_naming_a_missing_file(ctx)),
        Case("train:no data root", "train", ["--data-root", "{tmp}/nowhere"], ("nowhere",)),
        Case("cls:no data root", "cls", ["--random-init", "--data-root", "{tmp}/nowhere"], ("nowhere",)),
        Case("partseg:no data root", "partseg", ["--data-root", "{tmp}/nowhere"], ("nowhere",)),
        Case("semseg:no data root", "semseg", ["--data-root", "{tmp}/nowhere"], ("nowhere",)),
        Case("train:every cloud has 1 point", "train", [], ("no usable .ply object", "fewer than 3 points"),
             setup=lambda ctx, mp: _all_plys(ctx, [(0.1, 0.2, 0.3)])),
        Case("train:clouds of 4 identical points", "train", [], (".ply: all 4 points of the cloud coincide",),
             setup=lambda ctx, mp: _all_plys(ctx, [(0.5, 0.5, 0.5)] * 4)),
        Case("train:cloud at 1e30", "train", [], (".ply: PLY coordinates up to 1e+30 are too large",),
             setup=lambda ctx, mp: _all_plys(ctx, [(1e30, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)])),
        Case("train:cloud with NaN", "train", [], (".ply: PLY has NaN/Inf coordinates",),
             setup=lambda ctx, mp: _all_plys(ctx, [(float("nan"), 0, 0), (0, 1, 0), (0, 0, 1)])),
        Case("train:no renderings", "train", [], ("ShapeNetRendering: folder not found",),
             setup=lambda ctx, mp: shutil.rmtree(_copy_root(ctx, "ShapeNetRendering") / "ShapeNetRendering")),
        Case("cls:ModelNet40 coordinates at 1e30", "cls", ["--random-init", "data.datasets=[modelnet40]"],
             ("NaN, Inf or overflowing", "coordinates reach 1e+30"),
             setup=lambda ctx, mp: _modelnet_h5(ctx, _set_coordinate(1e30))),
        Case("cls:ModelNet40 coordinate NaN", "cls", ["--random-init", "data.datasets=[modelnet40]"],
             ("ply_data_", "NaN"), setup=lambda ctx, mp: _modelnet_h5(ctx, _set_coordinate(float("nan")))),
        Case("cls:ModelNet40 without labels", "cls", ["--random-init", "data.datasets=[modelnet40]"],
             ("ply_data_", "label"), setup=lambda ctx, mp: _modelnet_h5(ctx, _drop_label)),
        Case("train:ModelNet40 coordinates at 1e30", "train", [], ("NaN, Inf or overflowing", "coordinates reach 1e+30"),
             setup=lambda ctx, mp: _modelnet_h5(ctx, _set_coordinate(1e30))),
    ]


# ------------------------------------------------------------------------------------- checkpoint cases
def checkpoint_cases() -> list[Case]:
    bad = [("random", "neither a torch zip archive nor a pickle"),
           ("json", "neither a torch zip archive nor a pickle (it looks like text or JSON)"),
           ("nan", "tensor 'conv1.conv.weight' holds NaN or Inf"),
           ("folder", "is a directory"),
           ("missing", "no such file"),
           ("truncated", "truncated or corrupted"),
           ("pickled_object", "refused: it pickles Python objects other than tensors (argparse.Namespace)"),
           ("list", "holds a list, expected a dict"),
           ("empty", "empty file")]
    cases = []
    for name, message in bad:
        cases.append(Case(f"cls:--checkpoint {name}", "cls", ["--checkpoint", f"{{ckpt_{name}}}"], (message,)))
        cases.append(Case(f"partseg:--checkpoint {name}", "partseg", ["--checkpoint", f"{{ckpt_{name}}}"],
                          (message,)))
    cases.append(Case("train:resume random bytes", "train", ["resume={ckpt_random}"], ("neither a torch zip",)))
    cases.append(Case("semseg:--checkpoint json", "semseg", ["--checkpoint", "{ckpt_json}"], ("neither a torch",)))
    cases.append(Case("cls:--checkpoint of another architecture", "cls", ["--checkpoint", "{prior}/last.pt",
                                                                          "model.emb_dims=64"],
                      ("last.pt: does not fit the DGCNN encoder", "check model.name and model.emb_dims")))
    return cases


# ------------------------------------------------------------------------------------- resume cases
def resume_cases() -> list[Case]:
    auto = ["--resume", "auto"]
    changed = [
        ("optim.batch_size=4", "optim.batch_size (8 -> 4)"),
        ("optim.lr=0.05", "optim.lr (0.1 -> 0.05)"),
        ("seed=3", "seed (0 -> 3)"),
        ("model.k=4", "model.k (8 -> 4)"),
        ("train.grad_clip=1", "train.grad_clip (0.0 -> 1.0)"),
        ("data.augment=false", "data.augment (True -> False)"),
    ]
    cases = [Case(f"partseg:resume with {o}", "partseg", [*auto, o], ("config differs from the run's in", m),
                  prior=True) for o, m in changed]
    cases += [
        Case("partseg:resume with lr and seed", "partseg", [*auto, "optim.lr=0.05", "seed=3"],
             ("optim.lr (0.1 -> 0.05)", "seed (0 -> 3)", "resume_allow=[optim.lr,seed]"), prior=True),
        Case("partseg:resume_allow unknown key", "partseg", [*auto, "resume_allow=[optim.nope]"],
             ("resume_allow: unknown key 'optim.nope'",), prior=True),
        Case("partseg:resume allowed but already past", "partseg",
             [*auto, "optim.epochs=1", "resume_allow=[optim.epochs]"],
             ("optim.epochs=1, but", "has already trained 2 epochs"), prior=True),
        Case("partseg:resume another architecture", "partseg", [*auto, "model.emb_dims=16", "resume_allow=[model]"],
             ("does not fit this model: 0 missing, 0 unexpected and", "mismatched tensors"), prior=True),
        Case("partseg:resume from random bytes", "partseg", ["--resume", "{ckpt_random}"],
             ("neither a torch zip archive",), prior=True),
        Case("partseg:resume from a state_dict", "partseg", ["--resume", "{ckpt_state_dict}"],
             ("not a training checkpoint of this repo",), prior=True),
        Case("partseg:resume from NaN weights", "partseg", ["--resume", "{ckpt_nan_training}"],
             ("tensor 'model.", "holds NaN or Inf"), prior=True),
        Case("partseg:resume from missing file", "partseg", ["--resume", "{tmp}/gone/last.pt"],
             ("gone/last.pt: no such file",), prior=True),
        Case("partseg:seeds with resume=path", "partseg", ["--seeds", "0", "1", "--resume", "{prior}/last.pt"],
             ("names one run; with several seeds use resume=auto",), prior=True),
    ]
    return cases


# ------------------------------------------------------------------------------------- run directories
ANOTHER_RUN = ("holds another run (", "to continue it use resume=auto, to replace it overwrite=true (--overwrite)")


def _copy_of_prior(ctx, change=None):
    """A copy of the finished run as `{out}` (its files must not change either), `change(folder)` applied."""
    out = ctx["tmp"] / "copy"
    shutil.copytree(ctx["prior"], out)
    if change is not None:
        change(out)
    ctx["out"] = str(out)


def _checkpoint_elsewhere(ctx):
    (ctx["tmp"] / "elsewhere").mkdir()
    shutil.copy(Path(ctx["prior"]) / "last.pt", ctx["tmp"] / "elsewhere" / "last.pt")


def run_dir_cases() -> list[Case]:
    cases = [Case(f"{script}:fresh run into another run's folder", script,
                  ["--random-init"] if script == "cls" else [], ANOTHER_RUN, prior=True) for script in SCRIPTS]
    cases += [
        Case("partseg:--seeds into another run's folder", "partseg", ["--seeds", "0", "1"], ANOTHER_RUN, prior=True),
        Case("semseg:--six-fold into another run's folder", "semseg", ["--six-fold"], ANOTHER_RUN, prior=True),
        Case("partseg:resume from elsewhere into another run's folder", "partseg",
             ["--resume", "{tmp}/elsewhere/last.pt"], ANOTHER_RUN, prior=True,
             setup=lambda ctx, mp: _checkpoint_elsewhere(ctx)),
        Case("cls:resume=auto on a finished run of another kind", "cls", ["--random-init", "--resume", "auto"],
             ("holds a finished run (", "that this run cannot resume", "overwrite=true"), prior=True),
        Case("partseg:resume with a corrupted metrics.json", "partseg", ["--resume", "auto"],
             ("copy/metrics.json: not valid JSON (Expecting value at line 1 column 1)",),
             setup=lambda ctx, mp: _copy_of_prior(ctx, lambda out: (out / "metrics.json").write_text("{oops"[1:]))),
        Case("partseg:resume with a metrics.json of another encoding", "partseg", ["--resume", "auto"],
             ("copy/metrics.json: not UTF-8 text",),
             setup=lambda ctx, mp: _copy_of_prior(ctx, lambda out: (out / "metrics.json").write_bytes(b'{"\xff": 1}'))),
        Case("cls:resume with a corrupted config.yaml", "cls", ["--random-init", "--resume", "auto"],
             ("copy/config.yaml: invalid YAML at line 2",),
             setup=lambda ctx, mp: _copy_of_prior(ctx, lambda out: (out / "config.yaml").write_text("seed: [0\n"))),
    ]
    return cases


# ------------------------------------------------------------------------------------- environment faults
def _full_disk(ctx, monkeypatch, after_bytes=64 * 1024):
    """Writes through atomic_write fail with ENOSPC once a file passes `after_bytes` (checkpoints do; the
    small JSON and YAML files do not)."""
    import utils.files

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, file):
            self.file, self.written = file, 0

        def write(self, data):
            self.written += len(data)
            if self.written > after_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(utils.files.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))


def _read_only(ctx, monkeypatch):
    """As a read-only folder looks to a writer (tests run as root, where chmod stops nothing)."""
    import utils.files

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(utils.files.tempfile, "mkstemp", refuse)


def _regular_file(ctx, monkeypatch):
    (ctx["tmp"] / "afile").write_text("not a folder")


def environment_cases() -> list[Case]:
    cases = []
    for script in SCRIPTS:
        extra = ["--random-init"] if script == "cls" else []
        cases.append(Case(f"{script}:out under a regular file", script, [*extra, "--out", "{tmp}/afile/run"],
                          ("afile/run: cannot create the folder",), setup=_regular_file))
        cases.append(Case(f"{script}:out is a regular file", script, [*extra, "--out", "{tmp}/afile"],
                          ("afile: cannot create the folder",), setup=_regular_file))
    cases += [
        Case("partseg:disk full while saving a checkpoint", "partseg", [],
             (".pt: cannot write (No space left on device)",), setup=_full_disk),
        Case("partseg:disk full on resume", "partseg", ["--resume", "auto", "optim.epochs=3",
                                                       "resume_allow=[optim.epochs]"],
             (".pt: cannot write (No space left on device)", "left as it was"), setup=_full_disk, prior=True,
             # the accepted change is in config.yaml; the step trained before the save logged a row (a later
             # resume drops the rows past its checkpoint)
             may_change=("config.yaml", "curves.csv")),
        Case("partseg:read-only output folder", "partseg", [], ("metrics.json: cannot write (Read-only file system)",),
             setup=_read_only),
        Case("partseg:read-only folder on resume", "partseg", ["--resume", "auto", "optim.epochs=3",
                                                              "resume_allow=[optim.epochs]"],
             ("config.yaml: cannot write (Read-only file system)",), setup=_read_only, prior=True),
        Case("train:disk full", "train", [], ("cannot write (No space left on device)",),
             setup=lambda ctx, mp: _full_disk(ctx, mp, after_bytes=0)),
        Case("cls:read-only output folder", "cls", ["--random-init", "data.datasets=[modelnet40]"],
             ("config.yaml: cannot write (Read-only file system)",), setup=_read_only),
    ]
    return cases


# ------------------------------------------------------------------------------------- signal cases
def _signal_when(monkeypatch, owner, name, signum, times=1, only=None):
    """Wrap `owner.name` so that its call (its first with `only` among its arguments) sends `signum` to this
    process `times` times before it runs."""
    real = getattr(owner, name)
    sent = []

    def wrapper(*args, **kwargs):
        if not sent and (only is None or only in args):
            sent.append(True)
            for _ in range(times):
                os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def signal_cases() -> list[Case]:
    import tasks.finetune as finetune
    import tasks.segmentation as seg
    import utils.checkpoint
    import utils.signals

    return [
        Case("partseg:SIGTERM during validation", "partseg", [],  # the epoch is kept: saved before validation
             ("interrupted by SIGTERM during validation", "last.pt holds step 1", "resume=auto"), code=143,
             setup=lambda ctx, mp: _signal_when(mp, seg, "score_part_seg", signal.SIGTERM, only="val")),
        Case("partseg:SIGINT during the test", "partseg", [],
             ("interrupted by SIGINT during the test", "last.pt holds step 2", "resume=auto"), code=130,
             setup=lambda ctx, mp: _signal_when(mp, seg, "score_part_seg", signal.SIGINT, only="test")),
        Case("partseg:SIGTERM during a checkpoint save", "partseg", [],
             ("interrupted by SIGTERM after epoch 1", "last.pt holds step 1", "resume=auto"), code=143,
             setup=lambda ctx, mp: _signal_when(mp, utils.checkpoint.torch, "save", signal.SIGTERM)),
        Case("partseg:two SIGTERMs abort a save", "partseg", [], ("interrupted by SIGTERM",), code=143,
             setup=lambda ctx, mp: (mp.setattr(utils.signals, "SAME_REQUEST_SECONDS", 0),  # not one request twice
                                    _signal_when(mp, utils.checkpoint.torch, "save", signal.SIGTERM, times=2))),
        Case("partseg:SIGINT before training", "partseg", [], ("interrupted by SIGINT",), code=130,
             setup=lambda ctx, mp: _signal_when(mp, finetune, "initial_weights", signal.SIGINT)),
        Case("cls:SIGTERM during feature extraction", "cls", ["--random-init"], ("interrupted by SIGTERM",),
             code=143, setup=lambda ctx, mp: _signal_when(mp, classification_main, "evaluate_dataset",
                                                        signal.SIGTERM)),
    ]


CASES = (config_cases() + data_cases() + checkpoint_cases() + resume_cases() + run_dir_cases() + environment_cases()
         + signal_cases())


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, prior):
    folder = tmp_path_factory.mktemp("checkpoints")
    (folder / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "json.pt").write_text('{"model": {"w": [1, 2, 3]}}')
    (folder / "empty.pt").write_bytes(b"")
    (folder / "folder.pt").mkdir()
    last = load_checkpoint_file(prior / "last.pt")
    encoder = {k.removeprefix("model."): v for k, v in last["model"].items()}
    nan = {k: v.clone() for k, v in encoder.items()}
    nan["conv1.conv.weight"] = torch.full_like(nan.get("conv1.conv.weight", torch.zeros(1)), float("nan"))
    torch.save(nan, folder / "nan.pt")
    torch.save(encoder, folder / "state_dict.pt")
    nan_training = dict(last, model={k: v.clone() for k, v in last["model"].items()})
    first = next(k for k, v in nan_training["model"].items() if v.is_floating_point())
    nan_training["model"][first].fill_(float("nan"))
    torch.save(nan_training, folder / "nan_training.pt")
    (folder / "truncated.pt").write_bytes((prior / "last.pt").read_bytes()[:5000])
    torch.save({"args": argparse.Namespace(lr=1)}, folder / "pickled_object.pt")
    torch.save([torch.zeros(2)], folder / "list.pt")
    return {f"ckpt_{name}": str(folder / f"{name}.pt") for name in
            ("random", "json", "empty", "folder", "nan", "state_dict", "nan_training", "truncated",
             "pickled_object", "list", "missing")}


@pytest.fixture(scope="module")
def prior(synthetic_root, tmp_path_factory):
    """A finished two-epoch part-segmentation run: what a resume must leave as it was."""
    out = tmp_path_factory.mktemp("prior")
    main_partseg.main(["--data-root", str(synthetic_root), "--out", str(out), *PARTSEG])
    return out


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def check_one_error_line(code, expected_code, out, err, expect):
    assert "Traceback" not in out + err, err[-3000:]
    assert code == expected_code, (code, err[-3000:])
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err[-3000:]
    for part in expect:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_one_clear_line_and_nothing_lost(case, synthetic_root, prior, checkpoints, tmp_path, monkeypatch, capsys):
    main, defaults = SCRIPTS[case.script]
    ctx = {"root": str(synthetic_root), "synthetic": str(synthetic_root), "tmp": tmp_path,
           "out": str(prior if case.prior else tmp_path / "run"), "prior": str(prior), **checkpoints}
    if case.setup is not None:
        case.setup(ctx, monkeypatch)
    kept = {Path(ctx["out"]), *([prior] if case.prior else [])}  # what was saved before: unchanged
    before = {folder: file_hashes(folder) for folder in kept if folder.is_dir()}
    argv = [arg.format(**ctx) for arg in defaults + case.args]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    monkeypatch.undo()
    check_one_error_line(exit_info.value.code, case.code, out, err, case.expect)
    for folder in (Path(ctx["out"]), prior):
        if folder.is_dir():
            assert not list(folder.glob(".*.tmp")), "a temporary file was left behind"
    for folder, hashes in before.items():
        after = file_hashes(folder)
        changed = [name for name, digest in hashes.items() if after.get(name) != digest
                   and name not in case.may_change]
        assert not changed, f"files of the earlier run changed: {changed}"


def test_a_signal_during_a_save_lets_the_save_finish(synthetic_root, tmp_path, monkeypatch, capsys):
    import utils.checkpoint

    _signal_when(monkeypatch, utils.checkpoint.torch, "save", signal.SIGTERM)
    with pytest.raises(SystemExit):
        main_partseg.main(["--data-root", str(synthetic_root), "--out", str(tmp_path), *PARTSEG])
    checkpoint = load_checkpoint_file(tmp_path / "last.pt")  # complete, loads cleanly
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 1)


@pytest.mark.parametrize("same_request_seconds, line, saved", [
    (1.0, "after epoch 1", (1, 1)),  # a group's signal and torchrun's forwarded copy: one request, the save ends
    (0.0, None, None),  # a second request: the user insists, the save is abandoned
], ids=["at once: one request", "later: the save is aborted"])
def test_the_same_signal_twice(same_request_seconds, line, saved, synthetic_root, tmp_path, monkeypatch, capsys):
    import utils.checkpoint
    import utils.signals

    monkeypatch.setattr(utils.signals, "SAME_REQUEST_SECONDS", same_request_seconds)
    _signal_when(monkeypatch, utils.checkpoint.torch, "save", signal.SIGTERM, times=2)
    with pytest.raises(SystemExit) as exit_info:
        main_partseg.main(["--data-root", str(synthetic_root), "--out", str(tmp_path), *PARTSEG])
    error = check_one_error_line(exit_info.value.code, 143, *capsys.readouterr(), ("interrupted by SIGTERM",))
    assert not list(tmp_path.glob(".*.tmp"))
    if saved is None:
        assert error == "error: interrupted by SIGTERM" and not (tmp_path / "last.pt").exists()
    else:
        assert line in error
        checkpoint = load_checkpoint_file(tmp_path / "last.pt")
        assert (checkpoint["epoch"], checkpoint["step"]) == saved


def test_a_resume_of_a_finished_run_says_so(prior, synthetic_root, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(prior, out)
    main_partseg.main(["--data-root", str(synthetic_root), "--out", str(out), *PARTSEG, "--resume", "auto"])
    assert "has already completed all 2 epochs: nothing is left to train" in capsys.readouterr().err


def test_an_allowed_change_is_recorded(prior, synthetic_root, tmp_path, capsys):
    import json

    out = tmp_path / "copy"
    shutil.copytree(prior, out)
    main_partseg.main(["--data-root", str(synthetic_root), "--out", str(out), *PARTSEG, "--resume", "auto",
                       "optim.epochs=3", "resume_allow=[optim.epochs]", "train.num_workers=1"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resume_changes"] == [{"step": 2, "key": "optim.epochs", "old": 2, "new": 3}]
    assert len(metrics["epochs"]) == 3


def test_stale_temporaries_are_removed_when_a_run_resumes(prior, synthetic_root, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(prior, out)
    (out / ".last.pt.abcd1234.tmp").write_bytes(b"x" * 1000)  # what a SIGKILL during a save leaves
    main_partseg.main(["--data-root", str(synthetic_root), "--out", str(out), *PARTSEG, "--resume", "auto"])
    assert not list(out.glob(".*.tmp"))


# ------------------------------------------------------------------------------------- real processes
PROCESS_CASES = [
    ("classification run as a file", [sys.executable, "downstream/classification/main.py"],
     "run this script from the repository root as a module"),
    ("partseg run as a file", [sys.executable, "downstream/segmentation/main_partseg.py"],
     "python -m downstream.segmentation.main_partseg"),
    ("semseg run as a file", [sys.executable, "downstream/segmentation/main_semseg.py"],
     "python -m downstream.segmentation.main_semseg"),
    ("make_synthetic --seed -1", [sys.executable, "data/make_synthetic.py", "--seed", "-1"],
     "expected 0 <= seed < 2**32"),
    ("make_synthetic --size huge", [sys.executable, "data/make_synthetic.py", "--size", "huge"],
     "invalid choice: 'huge'"),
    ("make_synthetic --out under a file", [sys.executable, "data/make_synthetic.py", "--out", "{tmp}/afile/data",
                                           "--size", "tiny"], "afile/data: cannot write the synthetic data"),
    ("make_synthetic --out real data", [sys.executable, "data/make_synthetic.py", "--out", "{tmp}/real",
                                        "--size", "tiny"], "refusing to overwrite what may be real data"),
]


@pytest.mark.parametrize("name, command, message", PROCESS_CASES, ids=[c[0] for c in PROCESS_CASES])
def test_real_processes_end_in_one_line(name, command, message, tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "real" / "ShapeNet").mkdir(parents=True)
    command = [part.format(tmp=tmp_path) for part in command]
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    check_one_error_line(process.returncode, 2, process.stdout, process.stderr, (message,))
    assert (tmp_path / "real" / "ShapeNet").is_dir() and not (tmp_path / "real" / "SYNTHETIC_DATA.txt").exists()


# ------------------------------------------------------------------------------------- memory bounds
# The address space a script may add to what its imports (torch, ...) take: a tiny run of train.py needs between
# 512 MiB and 1 GiB more.
MEMORY_BOUND = 1 << 30
BOUNDED = """
import importlib, resource, sys
def size():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
script = importlib.import_module(sys.argv[1])
limit = size() + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
script.main(sys.argv[3:])
"""


@pytest.mark.parametrize("script, args, setup, message", [
    ("train", ["--config", str(REPO / "configs" / "demo.yaml"), *PRETRAIN, "monitor.random_init=false"], _huge_pngs,
     ".png: PNG of 12000 x 12000 pixels, more than the limit"),
    ("downstream.classification.main", ["--random-init", *CLASSIFY, "data.datasets=[modelnet40]"],
     _huge_modelnet40_file, "ply_data_train0.h5: 'data' declares 2000000 samples, more than the limit"),
], ids=["PNG of 12000 x 12000 pixels", "h5 file of 1.7 kB declaring 2 million shapes"])
def test_a_file_declaring_a_huge_size_stays_within_a_memory_bound(script, args, setup, message, synthetic_root,
                                                                  tmp_path):
    """Decoded, the PNG takes 2.3 GB by the time it is a float image, the h5 file's rows 1.4 GB. Refused from
    the size they declare, the script stays within MEMORY_BOUND (RLIMIT_AS, a real process) and says why in one
    line; without the limits it dies of a MemoryError there."""
    ctx = {"synthetic": str(synthetic_root), "tmp": tmp_path}
    root = setup(ctx)
    process = subprocess.run([sys.executable, "-c", BOUNDED, script, str(MEMORY_BOUND), *args,
                              "--data-root", str(root), "--out", str(tmp_path / "run")],
                             cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    check_one_error_line(process.returncode, 2, process.stdout, process.stderr, (message,))


def test_the_table_covers_at_least_100_cases():
    ids = [case.id for case in CASES] + [name for name, _, _ in PROCESS_CASES]
    assert len(ids) == len(set(ids)), "case ids must be distinct"
    print(f"\n{len(ids)} distinct bad inputs and faults ({len(CASES)} in-process, {len(PROCESS_CASES)} processes)")
    assert len(ids) >= 100
