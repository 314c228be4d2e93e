"""The renderer and tools.make_pretrain_set: views of meshes and clouds, in the layout pretraining reads."""

from __future__ import annotations

import numpy as np
import pytest

from data.synthetic_gen.class_tree import make_class_tree, write_off
from datasets import ShapeNetRender
from datasets.clouds import sample_surface
from datasets.formats import read_shape, write_pcd
from datasets.shapenet_render import read_png_rgba, read_ply_points
from tools import make_pretrain_set
from tools.render import Camera, orbit, render_mesh, render_splats, splat_radii

TREE_SIZE = {"tree_train": 3, "tree_test": 1, "tree_segments": 8}
SMALL = ["--views", "4", "--size", "48", "--points", "256", "--workers", "1", "--no-progress"]

# An upright box and a box lying on it, off-centre: no mirror symmetry about any vertical plane through the axis
BOX = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
BOX_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def two_boxes() -> tuple[np.ndarray, np.ndarray]:
    upright = BOX * [0.3, 1.2, 0.3] + [-0.5, -0.6, -0.15]
    lying = BOX * [0.9, 0.25, 0.4] + [-0.2, -0.6, -0.2]
    vertices = np.concatenate([upright, lying])
    vertices = (vertices - vertices.mean(axis=0)) / np.linalg.norm(vertices - vertices.mean(axis=0), axis=1).max()
    return vertices, np.concatenate([BOX_FACES, BOX_FACES + 8])


def mask(image: np.ndarray) -> np.ndarray:
    return image[..., 3] > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_opposite_azimuths_give_mirrored_silhouettes():
    # An L in the plane z = 0, seen along -z and along +z: exact mirror images under perspective too, because
    # every point of the L is at the same depth from both cameras
    corners = np.array([[0, 0], [3, 0], [3, 1], [1, 1], [1, 4], [0, 4]], dtype=np.float64)
    vertices = np.c_[(corners - [1.5, 2]) / 2.6, np.zeros(6)]
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]])
    front, back = (mask(render_mesh(vertices, faces, Camera(azimuth, 0.0, size=96))) for azimuth in (0.0, 180.0))
    assert front.sum() > 500
    assert iou(front, back[:, ::-1]) > 0.99
    assert iou(front, back) < 0.7  # the L is not symmetric, so the test could fail
    cloud = sample_surface(vertices, faces, 4000, seed=0)
    radii = splat_radii(cloud)
    front, back = (mask(render_splats(cloud, radii, Camera(azimuth, 0.0, size=96))) for azimuth in (0.0, 180.0))
    assert iou(front, back[:, ::-1]) > 0.97 and iou(front, back) < 0.7


def test_a_solid_shape_seen_from_behind_is_its_mirror_image_in_outline():
    vertices, faces = two_boxes()
    far = 60.0  # nearly orthographic: the outline from behind is then the mirrored outline from the front
    front, back = (mask(render_mesh(vertices, faces, Camera(azimuth, 0.0, distance=far, fov=2.4, size=96)))
                   for azimuth in (30.0, 210.0))
    assert iou(front, back[:, ::-1]) > 0.95 and iou(front, back) < 0.8


def test_splats_of_a_dense_cloud_cover_the_silhouette_of_the_mesh():
    # Splats overhang the true outline by their radius: about 1 px for 20,000 points at 137 px, on an outline of
    # ~400 px around ~5,000 px of silhouette, so IoU ~0.9 is the ceiling; 0.85 leaves room for sampling noise
    # while a misplaced or mis-scaled splat (half a pixel off, or radii 2x too large) fails it.
    vertices, faces = two_boxes()
    dense = sample_surface(vertices, faces, 20000, seed=1)
    sparse = sample_surface(vertices, faces, 1024, seed=2)
    dense_radii, sparse_radii = splat_radii(dense), splat_radii(sparse)
    for camera in orbit(6):
        solid = mask(render_mesh(vertices, faces, camera))
        assert solid.sum() > 2000
        assert iou(mask(render_splats(dense, dense_radii, camera)), solid) > 0.85
        # 1,024 points still read as a surface: their splats leave almost none of it uncovered
        covered = mask(render_splats(sparse, sparse_radii, camera)) & solid
        assert covered.sum() / solid.sum() > 0.97


def test_mesh_views_are_lit_by_lambert_and_keep_their_colours():
    vertices, faces = two_boxes()
    camera = Camera(30.0, 20.0, size=64)
    red = render_mesh(vertices, faces, camera, colours=(1.0, 0.0, 0.0))
    opaque = red[mask(red)]
    assert (opaque[:, 1:3] == 0).all() and opaque[:, 0].min() >= 0.25 * 255 - 1
    assert len(np.unique(opaque[:, 0])) >= 3  # the faces turned differently to the light differ in brightness
    per_vertex = np.zeros((len(vertices), 3))
    per_vertex[:, 2] = 1.0
    blue = render_mesh(vertices, faces, camera, colours=per_vertex)
    assert (blue[mask(blue)][:, :2] == 0).all()
    np.testing.assert_array_equal(mask(blue), mask(red))


def test_a_camera_inside_the_shape_is_refused():
    with pytest.raises(ValueError, match="inside the shape"):
        Camera(0.0, 0.0, distance=0.5).project(np.eye(3))  # (0, 0, 1) is behind the camera at z = 0.5


@pytest.fixture
def inputs(tmp_path):
    """A ModelNet10-style tree of OFF meshes, and loose files: a binary PCD cloud with colours, a vertex-only OFF
    and a broken file."""
    make_class_tree(tmp_path, 0, TREE_SIZE)
    loose = tmp_path / "loose"
    loose.mkdir()
    rng = np.random.default_rng(0)
    vertices, faces = two_boxes()
    cloud = sample_surface(vertices, faces, 1500, seed=3) * 40 + 100  # not centred, not scaled
    write_pcd(loose / "scan.pcd", cloud, rgb=np.tile([[0.0, 1.0, 0.0]], (len(cloud), 1)))
    write_off(loose / "points.off", rng.normal(size=(600, 3)), [])
    (loose / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    return tmp_path


def test_the_layout_is_what_shapenetrender_reads(inputs, tmp_path, capsys):
    out = tmp_path / "set"
    result = make_pretrain_set.main([f"folder:{inputs / 'ModelNet10'}:train", str(inputs / "loose"),
                                     "--out", str(out), "--up", "z", *SMALL])
    err = capsys.readouterr().err
    assert result["skipped"] == 1 and err.count("skipped:") == 1 and "broken.ply" in err
    assert result["mesh"] == 27 and result["cloud"] == 2  # 10 classes x 3 train shapes minus the 3 of val
    dataset = ShapeNetRender(out, num_points=128, image_size=40)
    assert len(dataset) == 29 and dataset.num_skipped == 0
    assert {synset for synset, _ in dataset.objects} == {p.name for p in (inputs / "ModelNet10").iterdir()
                                                         if p.is_dir()} | {"loose"}
    item = dataset[0]
    assert item["points1"].shape == (128, 3) and item["image"].shape == (3, 40, 40)
    folder = out / "ShapeNetRendering" / "loose" / "scan" / "rendering"
    assert (folder / "renderings.txt").read_text().split() == ["00.png", "01.png", "02.png", "03.png"]
    cameras = [line.split() for line in (folder / "rendering_metadata.txt").read_text().splitlines()]
    assert [float(c[0]) for c in cameras] == [0.0, 90.0, 180.0, 270.0] and [c[1] for c in cameras][:3] == \
        ["15.000000", "30.000000", "45.000000"]
    points = read_ply_points(out / "ShapeNet" / "loose" / "scan.ply")
    assert len(points) == 256 and abs(np.linalg.norm(points, axis=1).max() - 1) < 0.02
    np.testing.assert_allclose(points.mean(axis=0), 0, atol=0.05)  # centred, scaled into the unit sphere
    view = read_png_rgba(folder / "00.png").permute(1, 2, 0).numpy()
    assert view.shape == (48, 48, 4) and (view[..., 3] == 0).mean() > 0.3  # a transparent background
    opaque = view[view[..., 3] > 0]
    assert (opaque[:, 1] > opaque[:, 0]).all() and (opaque[:, 1] > opaque[:, 2]).all()  # the file's own green


def test_the_same_inputs_give_the_same_bytes(inputs, tmp_path):
    args = [f"folder:{inputs / 'ModelNet10'}:test", str(inputs / "loose" / "scan.pcd"), *SMALL]
    make_pretrain_set.main([*args, "--out", str(tmp_path / "a")])
    make_pretrain_set.main([*args, "--out", str(tmp_path / "b"), "--workers", "2"])
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file() and p.name != make_pretrain_set.STATE)
    assert len(files) == 11 * (1 + 4 + 2)
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_an_interrupted_run_continues_where_it_stopped(inputs, tmp_path, capsys):
    args = [f"folder:{inputs / 'ModelNet10'}:test", *SMALL, "--out"]
    make_pretrain_set.main([*args, str(tmp_path / "whole")])
    out = tmp_path / "cut"
    make_pretrain_set.main([*args, str(out)])
    # as a kill leaves it: one shape without its PLY (views written), one with a half-written hidden folder
    chair = next((out / "ShapeNet" / "chair").iterdir())
    chair.unlink()
    sofa = next((out / "ShapeNet" / "sofa").iterdir())
    sofa.unlink()
    renders = out / "ShapeNetRendering" / "sofa"
    (renders / sofa.stem).rename(renders / f".{sofa.stem}.partial")
    capsys.readouterr()
    result = make_pretrain_set.main([*args, str(out)])
    assert result["rendered"] == 2 and result["done_before"] == 8
    assert "8 done before" in capsys.readouterr().out
    for path in (tmp_path / "whole").rglob("*"):
        if path.is_file() and path.name != make_pretrain_set.STATE:
            assert path.read_bytes() == (out / path.relative_to(tmp_path / "whole")).read_bytes()
    assert not list(renders.glob(".*"))


def test_other_settings_or_a_foreign_folder_are_refused(inputs, tmp_path, capsys):
    out = tmp_path / "set"
    make_pretrain_set.main([str(inputs / "loose" / "scan.pcd"), *SMALL, "--out", str(out)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        make_pretrain_set.main([str(inputs / "loose" / "scan.pcd"), *SMALL, "--size", "64", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "size differ" in err[0] and str(out) in err[0]
    assert (out / "ShapeNet" / "loose" / "scan.ply").is_file()  # nothing lost
    result = make_pretrain_set.main([str(inputs / "loose" / "scan.pcd"), *SMALL, "--size", "64", "--out", str(out),
                                     "--overwrite"])
    assert result["rendered"] == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    with pytest.raises(SystemExit):
        make_pretrain_set.main([str(inputs / "loose" / "scan.pcd"), *SMALL, "--out", str(foreign)])
    assert "not made by this tool" in capsys.readouterr().err and (foreign / "notes.txt").exists()


def test_a_colour_table_paints_shapes_by_class(inputs, tmp_path):
    table = tmp_path / "colours.csv"
    table.write_text("# class or file, colour\nchair,#ff0000\nscan,#0000ff\n")
    out = tmp_path / "set"
    make_pretrain_set.main([f"folder:{inputs / 'ModelNet10'}:test", str(inputs / "loose" / "scan.pcd"),
                            "--colours", str(table), *SMALL, "--out", str(out)])
    for group, channel in (("chair", 0), ("loose", 2)):
        views = next((out / "ShapeNetRendering" / group).iterdir()) / "rendering"
        pixels = read_png_rgba(views / "01.png").permute(1, 2, 0).numpy()
        opaque = pixels[pixels[..., 3] > 0][:, :3]
        assert len(opaque) and (np.delete(opaque, channel, axis=1) == 0).all()
    grey = read_png_rgba(next((out / "ShapeNetRendering" / "sofa").iterdir()) / "rendering" / "01.png")
    opaque = grey.permute(1, 2, 0).numpy()[grey[3].numpy() > 0][:, :3]
    assert (opaque[:, 0] == opaque[:, 1]).all() and (opaque[:, 1] == opaque[:, 2]).all()
    table.write_text("chair,red\n")
    with pytest.raises(SystemExit):
        make_pretrain_set.main([str(inputs / "loose"), "--colours", str(table), *SMALL, "--out", str(out)])


def test_the_up_axis_turns_the_cameras_not_the_points(tmp_path):
    tall = BOX * [0.2, 0.2, 1.0]  # a post along z
    write_off(tmp_path / "post.off", tall, [BOX_FACES])
    for up, taller in (("z", True), ("y", False)):
        out = tmp_path / f"up_{up}"
        make_pretrain_set.main([str(tmp_path / "post.off"), *SMALL, "--elevations", "0", "--up", up,
                                "--out", str(out)])
        view = read_png_rgba(out / "ShapeNetRendering" / tmp_path.name / "post" / "rendering" / "00.png")[3].numpy()
        rows, columns = np.nonzero(view)
        assert (np.ptp(rows) > 2 * np.ptp(columns)) == taller
        points = read_ply_points(out / "ShapeNet" / tmp_path.name / "post.ply")
        assert np.ptp(points[:, 2]) > 3 * np.ptp(points[:, 1])  # the PLY keeps the file's own axes


def test_a_contact_sheet_shows_the_first_shapes_and_their_views(inputs, tmp_path):
    sheet = tmp_path / "sheet.png"
    make_pretrain_set.main([f"folder:{inputs / 'ModelNet10'}:test", *SMALL, "--out", str(tmp_path / "set"),
                            "--png", str(sheet), "--sheet-shapes", "3"])
    image = read_png_rgba(sheet)
    assert tuple(image.shape) == (4, 3 * 50, 4 * 50) and (image[3] == 255).all()
    assert (image[:3] < 250).any()


def test_mismatched_views_pair_every_object_with_another_objects_views(inputs, tmp_path):
    out = tmp_path / "set"
    make_pretrain_set.main([f"folder:{inputs / 'ModelNet10'}:test", *SMALL, "--out", str(out)])
    own = ShapeNetRender(out, num_points=64, image_size=48)
    other = ShapeNetRender(out, num_points=64, image_size=48, paired_views="other_fixed")
    paired = [other.png_path(i, 0).parent.parent.name for i in range(len(other))]
    assert all(name != model for name, (_, model) in zip(paired, other.objects))
    assert sorted(paired) == sorted(model for _, model in own.objects)  # each object's views used once
    np.testing.assert_array_equal(other[3]["points1"], own[3]["points1"])  # the points are untouched


def test_read_shape_of_what_the_tool_wrote_is_a_point_set(inputs, tmp_path):
    out = tmp_path / "set"
    make_pretrain_set.main([str(inputs / "loose" / "points.off"), *SMALL, "--out", str(out)])
    shape = read_shape(out / "ShapeNet" / "loose" / "points.ply")
    assert not shape.is_mesh and len(shape.vertices) == 256


def test_a_stray_vertex_far_from_the_surface_does_not_stop_a_mesh(tmp_path):
    vertices, faces = two_boxes()
    write_off(tmp_path / "stray.off", np.concatenate([vertices, [[500.0, 0.0, 0.0]]]), [faces])
    result = make_pretrain_set.main([str(tmp_path / "stray.off"), *SMALL, "--out", str(tmp_path / "set")])
    assert result["mesh"] == 1 and not result["skipped"]


def test_a_run_where_every_input_fails_exits_non_zero(tmp_path, capsys):
    (tmp_path / "bad.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n")
    with pytest.raises(SystemExit) as stop:
        make_pretrain_set.main([str(tmp_path / "bad.off"), *SMALL, "--out", str(tmp_path / "set")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "skipped:" in err and "bad.off" in err and "no shape could be made" in err


def test_a_signal_stops_with_one_line_and_the_same_command_finishes_the_set(inputs, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "set"
    command = [sys.executable, "-m", "tools.make_pretrain_set", f"folder:{inputs / 'ModelNet10'}:trainval",
               "--views", "24", "--size", "96", "--workers", "2", "--no-progress", "--out", str(out)]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob("ShapeNet/*/*.ply")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the set was finished before the signal arrived")
    lines = err.strip().splitlines()
    assert process.returncode == 130 and len(lines) == 1 and "run the same command again" in lines[0], err
    assert not list(out.rglob("*.tmp"))
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "done before" in done.stdout
    assert len(ShapeNetRender(out, num_points=64, image_size=32)) == 30


def test_random_other_views_never_show_an_object_its_own_views(inputs, tmp_path, monkeypatch):
    out = tmp_path / "set"
    make_pretrain_set.main([f"folder:{inputs / 'ModelNet10'}:test", *SMALL, "--out", str(out)])
    dataset = ShapeNetRender(out, num_points=64, image_size=48, paired_views="other_random")
    import datasets.shapenet_render as module

    seen = []
    real = module.read_png_rgba
    monkeypatch.setattr(module, "read_png_rgba", lambda path: seen.append(path.parent.parent.name) or real(path))
    sources = {}
    for epoch in (0, 1, 2):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            dataset[index]
            assert seen[-1] != dataset.objects[index][1]
            sources.setdefault(index, set()).add(seen[-1])
    assert sum(len(s) > 1 for s in sources.values()) >= len(dataset) // 2  # drawn anew, not a fixed partner
    with pytest.raises(ValueError, match="paired_views must be one of"):
        ShapeNetRender(out, paired_views="mismatched")
