"""tools/: embed, retrieve, classify, segment on files the tests write themselves, in every supported format.

Models are small and randomly initialised (k=8, a 32- or 64-d embedding, 64..128 points): these check the
preprocessing, the file handling and the wiring, not the quality of features.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from plyfile import PlyData, PlyElement

from datasets.shapenet_part import PART_RANGES
from models.dgcnn import DGCNN, DGCNNPartSeg, DGCNNSemSeg, knn
from tests.test_checkpoint import CPDGCNN, randomised
from tools import classify, embed, retrieve, segment
from datasets.clouds import Preprocessing
from tools.common import load_model
from tools.segment import covering_chunks
from utils.errors import CheckpointError

ROOT = Path(__file__).resolve().parent.parent
POINTS = ["--points", "64", "--min-points", "16", "--workers", "1"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: the models are tiny, and two-thread OpenMP barriers on a shared machine cost more
    than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-init DGCNN in train.py's layout: {"model": {"point_encoder.*", ...}, "config": {...}}."""
    torch.manual_seed(0)
    encoder = randomised(DGCNN(k=8, emb_dims=32))
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"model": {f"point_encoder.{k}": v for k, v in encoder.state_dict().items()},
                "config": {"model": {"name": "adacrossnet",
                                     "point_backbone": {"name": "dgcnn", "k": 8, "emb_dims": 32}}},
                "epoch": 1}, path)
    return path


def shape_cloud(seed: int = 0, n: int = 300) -> np.ndarray:
    """Points on a random box-and-ellipsoid surface, float32."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((n, 3))
    points = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.3, 1.0, 3)
    points[: n // 3] = rng.uniform(-1, 1, (n // 3, 3)) * [1, 0.05, 1] + [0, -1, 0]
    return points.astype(np.float32)


def write_ply(path: Path, xyz: np.ndarray, text: bool = False, extra: dict | None = None) -> None:
    fields = [(a, "<f4") for a in "xyz"] + [(name, values.dtype.str) for name, values in (extra or {}).items()]
    vertex = np.empty(len(xyz), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertex[name] = xyz[:, axis]
    for name, values in (extra or {}).items():
        vertex[name] = values
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(path))


def text_rows(xyz: np.ndarray, separator: str, extra_columns: int = 0) -> str:
    rows = np.concatenate([xyz, np.full((len(xyz), extra_columns), 7.0, np.float32)], axis=1)
    return "\n".join(separator.join(f"{v:.9g}" for v in row) for row in rows.tolist()) + "\n"


def write_every_point_format(folder: Path, xyz: np.ndarray) -> list[Path]:
    """The same cloud in each point format (float32 values written so that they read back exactly)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(xyz)
    colours = (np.arange(n) % 256).astype(np.uint8)
    write_ply(folder / "binary.ply", xyz)
    write_ply(folder / "ascii.ply", xyz, text=True, extra={"nx": np.ones(n, np.float32), "red": colours,
                                                           "green": colours, "blue": colours,
                                                           "intensity": np.arange(n, dtype=np.int32)})
    np.save(folder / "float64.npy", np.concatenate([xyz.astype(np.float64), np.ones((n, 3))], axis=1))
    np.savez(folder / "named.npz", points=xyz, normals=np.zeros_like(xyz))
    (folder / "spaces.xyz").write_text(text_rows(xyz, " "))
    (folder / "header.txt").write_text("# a comment line\nx y z nx\n" + text_rows(xyz, "\t", 1))
    (folder / "count.pts").write_text(f"{n}\n" + text_rows(xyz, " ", 1))
    (folder / "commas.csv").write_text("x,y,z,r,g,b\n" + text_rows(xyz, ",", 3))
    return sorted(folder.iterdir())


def embedded(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


# ------------------------------------------------------------------------------------------------ embed
def test_every_format_and_any_point_order_give_the_same_features(checkpoint, tmp_path):
    xyz = shape_cloud()
    files = write_every_point_format(tmp_path / "formats", xyz)
    shuffled = tmp_path / "formats" / "shuffled.ply"
    write_ply(shuffled, xyz[np.random.default_rng(1).permutation(len(xyz))])
    out = tmp_path / "f.npz"
    result = embed.main(["--checkpoint", str(checkpoint), str(tmp_path / "formats"), "--out", str(out), *POINTS])
    assert result["embedded"] == len(files) + 1 and result["skipped"] == 0
    data = embedded(out)
    assert data["features"].dtype == np.float32 and data["features"].shape == (len(files) + 1, 64)
    assert sorted(Path(p).name for p in data["paths"]) == sorted([f.name for f in files] + ["shuffled.ply"])
    np.testing.assert_allclose(data["features"], np.broadcast_to(data["features"][0], data["features"].shape),
                               atol=1e-5, rtol=1e-5)
    assert str(data["checkpoint"]) == "best.pt" and len(str(data["checkpoint_sha256"])) == 64
    assert json.loads(str(data["preprocessing"]))["num_points"] == 64
    assert json.loads(str(data["model"]))["architecture"] == "dgcnn"
    other = tmp_path / "g.npz"  # the same file alone: other batch mates change only the matmuls' rounding
    embed.main(["--checkpoint", str(checkpoint), str(files[0]), "--out", str(other), *POINTS])
    np.testing.assert_allclose(embedded(other)["features"][0], data["features"][0], rtol=1e-5, atol=1e-5)


def test_the_same_mesh_in_every_mesh_format_gives_the_same_features(checkpoint, tmp_path):
    mesh = trimesh.creation.box(extents=(1.0, 0.5, 0.25))
    mesh = trimesh.util.concatenate([mesh, trimesh.creation.box(extents=(0.25, 1.5, 0.25))])
    folder = tmp_path / "meshes"
    folder.mkdir()
    for suffix in ("obj", "off", "stl", "glb"):
        mesh.export(folder / f"shape.{suffix}")
    flipped = trimesh.Trimesh(mesh.vertices[::-1], (len(mesh.vertices) - 1 - mesh.faces)[::-1], process=False)
    flipped.export(folder / "reordered.obj")  # other vertex and face order, same surface
    out = tmp_path / "m.npz"
    result = embed.main(["--checkpoint", str(checkpoint), str(folder / "*.*"), "--out", str(out), *POINTS])
    assert result["embedded"] == 5
    features = embedded(out)["features"]
    np.testing.assert_allclose(features, np.broadcast_to(features[0], features.shape), atol=1e-5, rtol=1e-5)


def test_bad_files_are_skipped_with_one_line_each_and_strict_stops(checkpoint, tmp_path, capsys):
    good = tmp_path / "in"
    good.mkdir()
    for i in range(2):
        write_ply(good / f"good{i}.ply", shape_cloud(i))
    bad = {"truncated.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\n"
                            b"property float y\nproperty float z\nend_header\n\x00\x01",
           "empty.xyz": b"", "garbage.npy": b"not an npy file at all", "cloud.foo": b"1 2 3\n"}
    for name, content in bad.items():
        (good / name).write_bytes(content)
    nan = shape_cloud(3)
    nan[5, 1] = np.nan
    np.save(good / "nan.npy", nan)
    np.save(good / "one_point.npy", np.ones((200, 3), np.float32))
    names = [str(good / name) for name in sorted(bad)] + [str(good / "nan.npy"), str(good / "one_point.npy")]
    out = tmp_path / "f.npz"
    result = embed.main(["--checkpoint", str(checkpoint), str(good), *names[-3:], str(good / "cloud.foo"),
                         "--out", str(out), *POINTS])
    err = capsys.readouterr()
    assert result["embedded"] == 2 and result["skipped"] == len(names)
    lines = [line for line in err.err.splitlines() if line.startswith("skipped: ")]
    assert len(lines) == len(names)
    for name in names:
        assert sum(line.startswith(f"skipped: {name}: ") for line in lines) == 1, (name, lines)
    assert "NaN" in next(line for line in lines if "nan.npy" in line)
    assert "1 distinct point" in next(line for line in lines if "one_point" in line)
    assert "unknown extension" in next(line for line in lines if "cloud.foo" in line)
    assert "skipped 6" in err.out
    assert len(embedded(out)["paths"]) == 2

    done = subprocess.run([sys.executable, "-m", "tools.embed", "--checkpoint", str(checkpoint), str(good),
                           "--out", str(tmp_path / "strict.npz"), "--strict", *POINTS], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    stderr = done.stderr.strip().splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("error: ") and str(good) in stderr[0], done.stderr
    assert not (tmp_path / "strict.npz").exists()


# ------------------------------------------------------------------------------------- bad arguments, bad outputs
@pytest.fixture(scope="module")
def features(checkpoint, synthetic_root, tmp_path_factory) -> tuple[Path, Path]:
    """(a folder of two clouds, the labelled features file of the synthetic ModelNet40 test split)."""
    folder = tmp_path_factory.mktemp("clouds")
    for i in range(2):
        write_ply(folder / f"c{i}.ply", shape_cloud(20 + i))
    out = folder.parent / f"{folder.name}.npz"
    embed.main(["--checkpoint", str(checkpoint), "--dataset", "modelnet40:test", "--data-root", str(synthetic_root),
                "--out", str(out), *POINTS])
    return folder, out


def _segmenter(ctx):
    ctx["segmenter"] = str(seg_checkpoint(ctx["tmp"] / "semseg.pt", DGCNNSemSeg(k=8, emb_dims=32), "dgcnn_semseg",
                                          64))


TOOL_CASES = [  # (id, tool, arguments, what a setup(ctx, monkeypatch) adds, the error line's text)
    ("embed --device bogus", embed, ["--checkpoint", "{checkpoint}", "{clouds}", "--out", "{tmp}/f.npz",
                                     "--device", "bogus"], None, "--device bogus: expected cpu, cuda or cuda:N"),
    ("embed --k 0", embed, ["--checkpoint", "{checkpoint}", "{clouds}", "--out", "{tmp}/f.npz", "--k", "0"], None,
     "--k: must be >= 1, got 0"),
    ("embed --emb-dims 0", embed, ["--checkpoint", "{checkpoint}", "{clouds}", "--out", "{tmp}/f.npz",
                                   "--emb-dims", "0"], None, "--emb-dims: must be >= 1, got 0"),
    ("segment --k 0", segment, ["--checkpoint", "{checkpoint}", "{clouds}/c0.ply", "--out", "{tmp}/s.ply", "--k", "0"],
     None, "--k: must be >= 1, got 0"),
    ("retrieve with a missing --checkpoint", retrieve, ["{features}", "--query", "{tmp}/new.ply", "--checkpoint",
                                                        "{tmp}/missing.pt"],
     lambda ctx, mp: write_ply(ctx["tmp"] / "new.ply", shape_cloud(40)), "missing.pt: no such file"),
    ("embed --out under a regular file", embed, ["--checkpoint", "{checkpoint}", "{clouds}", "--out",
                                                 "{tmp}/afile/f.npz"], None, "afile: cannot create the folder"),
    ("embed --out in a read-only folder", embed, ["--checkpoint", "{checkpoint}", "{clouds}", "--out",
                                                  "{tmp}/f.npz"], "read-only", "f.npz: cannot write (Read-only"),
    ("embed --out on a full disk, over an older file", embed, ["--checkpoint", "{checkpoint}", "{clouds}",
                                                               "--out", "{tmp}/kept/f.npz"], "full disk",
     "kept/f.npz: cannot write (No space left on device); the previous file, if any, is left as it was"),
    ("classify --out under a regular file", classify, ["--reference", "{features}", "{features}", "--out",
                                                       "{tmp}/afile/p.csv"], None, "afile: cannot create the folder"),
    ("retrieve --png under a regular file", retrieve, ["{features}", "--query", "0", "--png", "{tmp}/afile/n.png",
                                                       "--data-root", "{root}"], None,
     "afile: cannot create the folder"),
    ("segment --out under a regular file", segment, ["--checkpoint", "{segmenter}", "{clouds}/c0.ply", "--out",
                                                     "{tmp}/afile/s.ply"], lambda ctx, mp: _segmenter(ctx),
     "afile: cannot create the folder"),
    ("retrieve --png on a full disk", retrieve, ["{features}", "--query", "0", "--png", "{tmp}/n.png", "--data-root",
                                                 "{root}"], "full disk",
     "n.png: cannot write (No space left on device)"),
]


@pytest.mark.parametrize("tool, args, setup, message", [case[1:] for case in TOOL_CASES],
                         ids=[case[0] for case in TOOL_CASES])
def test_tool_mistakes_and_unwritable_outputs_are_one_line(tool, args, setup, message, checkpoint, features,
                                                           synthetic_root, tmp_path, monkeypatch, capsys):
    """One error line naming the argument or file and the cause, exit status 2, no traceback; an output file
    written before (tmp/kept) is left as it was and no temporary file stays behind."""
    from tests.test_errors import _full_disk, _read_only, check_one_error_line, file_hashes

    ctx = {"checkpoint": str(checkpoint), "clouds": str(features[0]), "features": str(features[1]), "tmp": tmp_path,
           "root": str(synthetic_root)}
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "kept").mkdir()
    shutil.copy(features[1], tmp_path / "kept" / "f.npz")
    (tmp_path / "kept" / "s.ply").write_bytes(b"an earlier result")
    if callable(setup):
        setup(ctx, monkeypatch)
    argv = [arg.format(**ctx) for arg in args]
    before = file_hashes(tmp_path / "kept")
    if setup == "full disk":
        _full_disk(ctx, monkeypatch, after_bytes=0)
    elif setup == "read-only":
        _read_only(ctx, monkeypatch)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        tool.main(argv)
    monkeypatch.undo()
    check_one_error_line(exit_info.value.code, 2, *capsys.readouterr(), (message,))
    assert not list(tmp_path.rglob(".*.tmp")), "a temporary file was left behind"
    assert file_hashes(tmp_path / "kept") == before
    assert not [path for path in tmp_path.rglob("*") if path.is_file() and path.stat().st_size == 0]


def test_run_as_a_file_says_how_to_run_it():
    done = subprocess.run([sys.executable, "tools/embed.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "python -m tools.embed" in done.stderr


# --------------------------------------------------------------------------------------------- retrieve
def test_retrieval_finds_an_exact_duplicate_first(checkpoint, tmp_path, capsys):
    folder = tmp_path / "clouds"
    folder.mkdir()
    for i in range(6):
        write_ply(folder / f"c{i}.ply", shape_cloud(10 + i))
    shutil.copy(folder / "c2.ply", folder / "copy_of_c2.ply")
    out = tmp_path / "f.npz"
    embed.main(["--checkpoint", str(checkpoint), str(folder), "--out", str(out), *POINTS])
    paths = [str(p) for p in embedded(out)["paths"]]
    png = tmp_path / "n.png"
    found = retrieve.main([str(out), "--query", str(folder / "c2.ply"), "-k", "3", "--png", str(png)])
    assert paths[found["indices"][0]].endswith("copy_of_c2.ply") and found["similarities"][0] == pytest.approx(1.0)
    assert paths.index(str(folder / "c2.ply")) not in found["indices"] and len(found["indices"]) == 3
    assert png.stat().st_size > 1000
    by_index = retrieve.main([str(out), "--query", str(paths.index(str(folder / "c2.ply")))])
    assert by_index["indices"][0] == found["indices"][0]

    outside = tmp_path / "new.ply"
    shutil.copy(folder / "c4.ply", outside)
    with pytest.raises(SystemExit) as stop:
        retrieve.main([str(out), "--query", str(outside)])
    assert stop.value.code == 2 and "--checkpoint" in capsys.readouterr().err
    fresh = retrieve.main([str(out), "--query", str(outside), "--checkpoint", str(checkpoint), "-k", "1"])
    assert paths[fresh["indices"][0]].endswith("c4.ply") and fresh["similarities"][0] == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------------------------- classify
def test_classify_recovers_labels_from_a_synthetic_reference(checkpoint, synthetic_root, tmp_path):
    reference, test = tmp_path / "reference.npz", tmp_path / "test.npz"
    common = ["--checkpoint", str(checkpoint), "--data-root", str(synthetic_root), "--points", "128"]
    embed.main([*common, "--dataset", "modelnet40:trainval", "--out", str(reference)])
    embed.main([*common, "--dataset", "modelnet40:test", "--out", str(test)])
    data = embedded(reference)
    assert len(data["class_names"]) == 40 and data["labels"].dtype == np.int64
    assert str(data["paths"][0]) == "modelnet40:trainval:0"
    predictions = tmp_path / "predictions.csv"
    result = classify.main(["--reference", str(reference), str(test), "--out", str(predictions)])
    classes = len(np.unique(data["labels"]))
    assert result["accuracy"] > 5 / classes, result["accuracy"]  # chance is 1 / classes
    with open(predictions) as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(embedded(test)["paths"]) and rows[0]["class_name"] == result["class_names"][0]


def test_classify_refuses_features_of_another_checkpoint(checkpoint, synthetic_root, tmp_path, capsys):
    other = tmp_path / "other.pt"
    torch.save({"model": {f"point_encoder.{k}": v for k, v in randomised(DGCNN(k=8, emb_dims=32), 5)
                          .state_dict().items()}}, other)
    reference, mine = tmp_path / "reference.npz", tmp_path / "mine.npz"
    embed.main(["--checkpoint", str(checkpoint), "--data-root", str(synthetic_root), "--points", "64",
                "--dataset", "modelnet40:test", "--out", str(reference)])
    write_ply(tmp_path / "a.ply", shape_cloud())
    embed.main(["--checkpoint", str(other), "--k", "8", str(tmp_path / "a.ply"), "--out", str(mine), *POINTS])
    with pytest.raises(SystemExit) as stop:
        classify.main(["--reference", str(reference), str(mine)])
    assert stop.value.code == 2 and "another checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- segment
def seg_checkpoint(path: Path, model: torch.nn.Module, name: str, points: int) -> Path:
    """A downstream run's checkpoint: {"model": PointSegmentation state (keys model.*), "config": {...}}."""
    sizes = {"num_parts": 50, "num_categories": 16} if name == "dgcnn_partseg" else {"num_classes": 13}
    config = {"model": {"name": name, "k": 8, "emb_dims": 32, **sizes, "dropout": 0.5},
              "data": {"num_points": points}}
    torch.save({"model": {f"model.{k}": v for k, v in randomised(model).state_dict().items()}, "config": config,
                "optimizer": {}}, path)
    return path


def read_labelled(path: Path) -> np.ndarray:
    return PlyData.read(str(path))["vertex"].data


def test_part_segmentation_writes_one_label_per_point_within_the_category(tmp_path):
    ckpt = seg_checkpoint(tmp_path / "partseg.pt", DGCNNPartSeg(k=8, emb_dims=32), "dgcnn_partseg", 128)
    xyz = shape_cloud(n=300) * 3 + 5  # any scale and position: normalised for the model, written back as given
    write_ply(tmp_path / "chair.ply", xyz)
    out, png = tmp_path / "seg.ply", tmp_path / "seg.png"
    segment.main(["--checkpoint", str(ckpt), str(tmp_path / "chair.ply"), "--category", "chair", "--out", str(out),
                  "--png", str(png)])
    vertex = read_labelled(out)
    assert len(vertex) == 300 and set(vertex.dtype.names) >= {"x", "y", "z", "red", "green", "blue", "label"}
    assert set(vertex["label"].tolist()) <= set(PART_RANGES[4])
    np.testing.assert_array_equal(np.stack([vertex[a] for a in "xyz"], 1), xyz)
    assert vertex["red"].dtype == np.uint8 and png.stat().st_size > 1000


def test_semantic_segmentation_labels_every_point_of_a_room_larger_than_a_block(tmp_path, capsys):
    ckpt = seg_checkpoint(tmp_path / "semseg.pt", DGCNNSemSeg(k=8, emb_dims=32), "dgcnn_semseg", 128)
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 1, (1500, 3)) * [3.2, 2.5, 2.6] + [10, -4, 0.3]  # 4 x 3 blocks, in no particular frame
    write_ply(tmp_path / "room.ply", xyz.astype(np.float32), extra={c: rng.integers(0, 256, 1500).astype(np.uint8)
                                                                    for c in ("red", "green", "blue")})
    np.savetxt(tmp_path / "grey.xyz", xyz)
    out = tmp_path / "room_seg.ply"
    result = segment.main(["--checkpoint", str(ckpt), str(tmp_path / "room.ply"), "--out", str(out)])
    vertex = read_labelled(out)
    assert len(vertex) == 1500 and vertex["label"].min() >= 0 and vertex["label"].max() < 13
    assert result["architecture"] == "dgcnn_semseg" and result["points"] == 128
    segment.main(["--checkpoint", str(ckpt), str(tmp_path / "grey.xyz"), "--out", str(tmp_path / "grey.ply")])
    assert "no colours" in capsys.readouterr().out
    assert len(read_labelled(tmp_path / "grey.ply")) == 1500


def test_covering_chunks_give_every_point_a_prediction():
    rng = np.random.default_rng(0)
    for n, size in ((5, 16), (16, 16), (37, 16), (1000, 128)):
        rows = covering_chunks(np.arange(n) + 100, size, rng)
        assert rows.shape == (-(-n // size), size) and set(rows.ravel().tolist()) == set(range(100, 100 + n))


def test_segment_refuses_an_encoder_and_embed_a_segmenter(checkpoint, tmp_path, capsys):
    ckpt = seg_checkpoint(tmp_path / "semseg.pt", DGCNNSemSeg(k=8, emb_dims=32), "dgcnn_semseg", 128)
    write_ply(tmp_path / "a.ply", shape_cloud())
    with pytest.raises(SystemExit):
        segment.main(["--checkpoint", str(checkpoint), str(tmp_path / "a.ply"), "--out", str(tmp_path / "o.ply")])
    assert "fine-tune it first" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        embed.main(["--checkpoint", str(ckpt), str(tmp_path / "a.ply"), "--out", str(tmp_path / "o.npz")])
    assert "no per-cloud feature" in capsys.readouterr().err


# --------------------------------------------------------------------------------- checkpoint layouts
def test_load_model_reads_every_checkpoint_layout(checkpoint, tmp_path):
    model, info = load_model(checkpoint, "embed")
    assert info.architecture == "dgcnn" and info.k == 8 and info.outputs == 64 and info.described_by == "config"

    release = tmp_path / "dgcnn_cls_best.pth"  # CrossPoint's layout, DataParallel-wrapped, no config
    crosspoint = randomised(CPDGCNN(k=20, emb_dims=32))
    torch.save({f"module.{k}": v for k, v in crosspoint.state_dict().items()}, release)
    model, info = load_model(release, "embed")
    assert (info.architecture, info.k, info.emb_dims, info.layout) == ("dgcnn", 20, 32, "crosspoint-cls")
    points = torch.rand(2, 64, 3)
    with torch.inference_mode():
        assert torch.allclose(model(points), crosspoint(points), atol=1e-4)
    assert load_model(release, "embed", k=15)[1].k == 15

    partseg = seg_checkpoint(tmp_path / "p.pt", DGCNNPartSeg(k=8, emb_dims=32), "dgcnn_partseg", 128)
    encoder, info = load_model(partseg, "embed")
    assert info.architecture == "dgcnn_partseg_encoder" and info.outputs == 32
    seg, info = load_model(partseg, "segment")
    assert (info.architecture, info.outputs, info.num_categories, info.num_points) == ("dgcnn_partseg", 50, 16, 128)

    bare = tmp_path / "bare.pt"
    torch.save(DGCNN(k=8, emb_dims=48).state_dict(), bare)
    assert load_model(bare, "embed")[1].emb_dims == 48
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(bare, "embed", emb_dims=32)


# ----------------------------------------------------------------------------------------------- speed
@pytest.mark.parametrize("batch,points,k,channels", [(3, 1024, 20, 3), (2, 2048, 40, 8), (1, 4096, 20, 3),
                                                     (2, 1000, 16, 5), (2, 37, 8, 3)])
def test_knn_two_stage_selection_matches_topk(batch, points, k, channels):
    x = torch.randn(batch, points, channels, generator=torch.Generator().manual_seed(points))
    scores = torch.cdist(x, x)
    expected = (-scores).topk(k, dim=-1).indices.sort(-1).values
    found = knn(x, k).sort(-1).values
    same = (found == expected).all(-1)
    # where an exact tie or a rounding difference decides the k-th neighbour the two may differ: compare distances
    dist_found, dist_expected = scores.gather(-1, found).sort(-1).values, scores.gather(-1, expected).sort(-1).values
    assert same.float().mean() > 0.99 and torch.allclose(dist_found, dist_expected, atol=1e-4)


def test_preprocessing_is_deterministic_and_order_free():
    xyz = shape_cloud(n=500)
    settings = Preprocessing(num_points=128)
    first = settings.prepare(xyz)
    again = settings.prepare(xyz[::-1].copy())
    np.testing.assert_array_equal(first, again)
    assert first.shape == (128, 3) and np.linalg.norm(first, axis=1).max() <= 1.0 + 1e-6
    small = settings.prepare(xyz[:50])  # fewer points than asked: all of them, some twice
    assert len(np.unique(small, axis=0)) == 50


def test_benchmark_splits_by_name(synthetic_root):
    from tools.clouds import benchmark_cloud, load_benchmark
    from utils.errors import ConfigError

    split = load_benchmark("scanobjectnn:OBJ_ONLY:test", synthetic_root)
    assert len(split.class_names) == 15 and split.points.shape[1:] == (2048, 3) and len(split.labels) == len(split.points)
    np.testing.assert_array_equal(benchmark_cloud(split.path(2), synthetic_root), split.points[2])
    assert benchmark_cloud("scans/chair.ply", synthetic_root) is None
    for bad in ("modelnet40", "modelnet40:validation", "shapenet:test", "scanobjectnn:OBJ_X:test"):
        with pytest.raises(ConfigError):
            load_benchmark(bad, synthetic_root)


def test_a_class_folder_split_embeds_as_its_files_do(checkpoint, synthetic_root, tmp_path):
    """--dataset folder:TREE:SPLIT gives each shape the features its file gets when embedded on its own."""
    tree = tmp_path / "ModelNet10"
    shutil.copytree(synthetic_root / "ModelNet10", tree, ignore=shutil.ignore_patterns(".cache"))
    as_split, as_files = tmp_path / "split.npz", tmp_path / "files.npz"
    embed.main(["--checkpoint", str(checkpoint), "--dataset", f"folder:{tree}:test", "--out", str(as_split), *POINTS])
    embed.main(["--checkpoint", str(checkpoint), str(tree / "*" / "test" / "*.off"), "--out", str(as_files), *POINTS])
    split, files = embedded(as_split), embedded(as_files)
    assert list(split["class_names"]) == sorted(p.name for p in tree.iterdir() if p.is_dir() and p.name[0] != ".")
    assert split["paths"][0] == f"folder:{tree}:test:0" and len(split["labels"]) == 20
    order = np.argsort([Path(p).parent.parent.name + Path(p).name for p in files["paths"]], kind="stable")
    np.testing.assert_allclose(split["features"], files["features"][order], atol=1e-5, rtol=1e-5)
    with pytest.raises(SystemExit):
        embed.main(["--checkpoint", str(checkpoint), "--dataset", f"folder:{tree}:validation", "--out",
                    str(tmp_path / "x.npz")])
