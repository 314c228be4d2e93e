"""The file readers (datasets/formats): every format on files these tests write, in the variants real files use."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from datasets.clouds import Preprocessing, read_cloud, sample_surface
from datasets.formats import read_shape, write_pcd
from datasets.formats.pcd import lzf_compress, lzf_decompress
from utils.errors import DataError

ROOT = Path(__file__).resolve().parent.parent

# a unit cube as 8 corners and 6 quads (outward)
CUBE_VERTICES = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]],
                         dtype=np.float64)
CUBE_QUADS = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]]


def cloud(n=500, seed=0, scale=37.0, offset=(120.0, -3.0, 40.0)):
    """A cloud in arbitrary units, far from the origin, as real scans are."""
    return (np.random.default_rng(seed).normal(size=(n, 3)) * scale + offset).astype(np.float32)


def triangle_area(shape) -> float:
    a, b, c = (shape.vertices[shape.faces[:, k]] for k in range(3))
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# -------------------------------------------------------------------------------------------------- PCD
@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_each_pcd_encoding_reads_the_cloud_of_the_same_npy(tmp_path, encoding):
    xyz = cloud()
    rgb = np.random.default_rng(1).random((len(xyz), 3))
    extra = {"normal_x": np.ones(len(xyz), np.float32), "intensity": np.arange(len(xyz), dtype=np.float64),
             "label": np.arange(len(xyz), dtype=np.uint16), "fpfh": np.zeros((len(xyz), 33), np.float32)}
    np.save(tmp_path / "same.npy", xyz)
    write_pcd(tmp_path / "cloud.pcd", xyz, rgb, encoding=encoding, extra=extra)
    shape = read_shape(tmp_path / "cloud.pcd")
    assert shape.faces is None
    np.testing.assert_array_equal(shape.vertices, xyz)
    np.testing.assert_allclose(shape.colours, np.rint(rgb * 255) / 255, atol=1e-7)
    settings = Preprocessing()
    np.testing.assert_allclose(settings.read(tmp_path / "cloud.pcd"), settings.read(tmp_path / "same.npy"), atol=1e-6)


@pytest.mark.parametrize("encoding", ["ascii", "binary", "binary_compressed"])
def test_pcd_packed_colour_as_unsigned_int_and_invalid_points_dropped(tmp_path, encoding):
    xyz = cloud(40)
    xyz[[3, 17]] = np.nan  # PCL marks missing returns of organised clouds so
    rgb = np.tile([[1.0, 0.5, 0.0]], (40, 1))
    write_pcd(tmp_path / "c.pcd", xyz, rgb, encoding=encoding, packed_rgb="U")
    shape = read_shape(tmp_path / "c.pcd")
    assert len(shape.vertices) == 38 and np.isfinite(shape.vertices).all()
    np.testing.assert_allclose(shape.colours, np.tile([[1.0, 128 / 255, 0.0]], (38, 1)), atol=1e-7)


def test_pcd_as_pcl_writes_it_by_hand(tmp_path):
    """An ascii PCD as in PCL's documentation: comment, rgb stored as the float that holds its bits."""
    packed = struct.unpack("<f", struct.pack("<I", 0x00FF8000))[0]
    path = write(tmp_path / "doc.pcd", f"""
        # .PCD v.7 - Point Cloud Data file format
        VERSION .7
        FIELDS x y z rgb
        SIZE 4 4 4 4
        TYPE F F F F
        COUNT 1 1 1 1
        WIDTH 3
        HEIGHT 1
        VIEWPOINT 0 0 0 1 0 0 0
        POINTS 3
        DATA ascii
        0.93773 0.33763 0 {packed!r}
        0.90805 0.35641 0 {packed!r}
        0.81915 0.32 0 {packed!r}
        """)
    shape = read_shape(path)
    np.testing.assert_allclose(shape.vertices, [[0.93773, 0.33763, 0], [0.90805, 0.35641, 0], [0.81915, 0.32, 0]])
    np.testing.assert_allclose(shape.colours[0], [1.0, 128 / 255, 0.0], atol=1e-7)


@pytest.mark.parametrize("damage, cause", [
    (lambda b: b.replace(b"POINTS 300", b"POINTS 3000000000"), "declares 3000000000 points"),
    (lambda b: b[: len(b) - 100], "truncated"),
    (lambda b: b.replace(b"FIELDS x y z", b"FIELDS a b c"), "no field x, y, z"),
    (lambda b: b.replace(b"DATA binary", b"DATA lz4"), "not ascii, binary or binary_compressed"),
    (lambda b: b.replace(b"TYPE F F F", b"TYPE F F Q"), "not a PCD type"),
    (lambda b: b"hello\n" + b, "not a PCD file"),
])
def test_damaged_pcd_is_one_line_naming_the_file(tmp_path, damage, cause):
    write_pcd(tmp_path / "ok.pcd", cloud(300), encoding="binary")
    bad = tmp_path / "bad.pcd"
    bad.write_bytes(damage((tmp_path / "ok.pcd").read_bytes()))
    with pytest.raises(DataError, match=cause) as error:
        read_shape(bad)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)


def test_damaged_compressed_pcd_is_one_line(tmp_path):
    write_pcd(tmp_path / "c.pcd", cloud(300), encoding="binary_compressed")
    data = bytearray((tmp_path / "c.pcd").read_bytes())
    body = data.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
    data[body + 8:body + 40] = b"\xff" * 32  # back-references before the start of the output
    (tmp_path / "c.pcd").write_bytes(bytes(data))
    with pytest.raises(DataError, match="binary_compressed data is damaged"):
        read_shape(tmp_path / "c.pcd")


def test_lzf_matches_the_reference_format():
    # liblzf's own output for this input (a run, then repeats of 'bc' from 3 back)
    reference = b"\x01aa\xe0\t\x00\x01bc@\x02\x01bc"
    assert lzf_decompress(reference, 28) == b"a" * 20 + b"bcabcabc"
    rng = np.random.default_rng(0)
    for data in [b"", b"x", b"ab" * 500, rng.integers(0, 3, 20000, dtype=np.uint8).tobytes(), rng.bytes(3000),
                 np.repeat(rng.random(64).astype(np.float32), 9).tobytes()]:
        packed = lzf_compress(data)
        assert lzf_decompress(packed, len(data)) == data
    assert len(lzf_compress(b"ab" * 500)) < 30  # it compresses
    with pytest.raises(ValueError, match="not the declared"):
        lzf_decompress(lzf_compress(b"abc" * 10), 31)


# -------------------------------------------------------------------------------------------------- OFF
def off_text(vertices, faces, header="OFF\n{v} {f} 0\n", face_suffix=""):
    lines = [header.format(v=len(vertices), f=len(faces))]
    lines += [" ".join(repr(float(x)) for x in row) + "\n" for row in vertices]
    lines += [f"{len(face)} " + " ".join(map(str, face)) + face_suffix + "\n" for face in faces]
    return "".join(lines)


def test_off_quads_are_cut_into_fans_and_sampled_on_the_surface(tmp_path):
    path = tmp_path / "cube.off"
    path.write_text(off_text(CUBE_VERTICES, CUBE_QUADS))
    shape = read_shape(path)
    assert shape.faces.shape == (12, 3) and triangle_area(shape) == pytest.approx(6.0)
    points, _ = read_cloud(path, mesh_points=4000, seed=3)
    assert points.shape == (4000, 3)
    on_a_side = np.isclose(points, 0, atol=1e-6) | np.isclose(points, 1, atol=1e-6)
    assert on_a_side.any(axis=1).all() and (points >= -1e-6).all() and (points <= 1 + 1e-6).all()
    counts = [np.isclose(points[:, axis], side, atol=1e-6).sum() for axis in range(3) for side in (0, 1)]
    assert min(counts) > 4000 / 6 * 0.8  # area-weighted: every side gets its share


def test_off_ngons_colours_comments_and_modelnets_header(tmp_path):
    hexagon = np.array([[np.cos(a), np.sin(a), 0.0] for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)])
    apex = np.array([[0.0, 0.0, 2.0]])
    vertices = np.concatenate([hexagon, apex])
    faces = [[5, 4, 3, 2, 1, 0]] + [[k, (k + 1) % 6, 6] for k in range(6)]
    plain = tmp_path / "plain.off"
    plain.write_text(off_text(vertices, faces))
    reference = read_shape(plain)
    assert reference.faces.shape == (4 + 6, 3)
    variants = {
        "modelnet.off": off_text(vertices, faces, header="OFF{v} {f} 0\n"),             # ModelNet's quirk
        "same_line.off": off_text(vertices, faces, header="OFF {v} {f} 0\n"),
        "no_keyword.off": off_text(vertices, faces, header="{v} {f} 0\n"),
        "face_colours.off": off_text(vertices, faces, face_suffix=" 255 0 0"),           # per-face colours
        "face_rgba.off": off_text(vertices, faces, face_suffix=" 0.1 0.2 0.3 1.0"),
        "comments.off": "# made by hand\n" + off_text(vertices, faces).replace("\n", "  # note\n", 3) + "\n\n",
        "crlf.off": off_text(vertices, faces).replace("\n", "\r\n"),
    }
    for name, text in variants.items():
        (tmp_path / name).write_text(text)
        shape = read_shape(tmp_path / name)
        np.testing.assert_array_equal(shape.vertices, reference.vertices, err_msg=name)
        np.testing.assert_array_equal(shape.faces, reference.faces, err_msg=name)
    coff = tmp_path / "coff.off"
    coff.write_text("COFF\n7 7 0\n" + "".join(f"{x:g} {y:g} {z:g} 255 128 0 255\n" for x, y, z in vertices)
                    + "".join(f"{len(f)} {' '.join(map(str, f))}\n" for f in faces))
    shape = read_shape(coff)
    np.testing.assert_allclose(shape.colours, np.tile([[1.0, 128 / 255, 0.0]], (7, 1)), atol=1e-7)
    np.testing.assert_array_equal(shape.faces, reference.faces)


def test_mesh_formats_without_faces_are_point_sets(tmp_path):
    points = cloud(300).astype(np.float64)
    (tmp_path / "points.off").write_text(off_text(points, []))
    (tmp_path / "points.obj").write_text("# vertices only\n" + "".join(f"v {x!r} {y!r} {z!r}\n" for x, y, z in points.tolist()))
    (tmp_path / "points.ply").write_text(
        f"ply\nformat ascii 1.0\nelement vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 0\nproperty list uchar int vertex_indices\nend_header\n"
        + "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in points.astype(np.float32).tolist()))
    for name in ("points.off", "points.obj", "points.ply"):
        shape = read_shape(tmp_path / name)
        assert not shape.is_mesh, name
        xyz, _ = read_cloud(tmp_path / name)
        np.testing.assert_allclose(xyz, points, rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("text, cause", [
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "refers to vertex 7"),
    ("OFF\n30 1 0\n0 0 0\n1 0 0\n", "only 2 lines"),
    ("OFF\n3 1 0\n0 0 0\n1 0 x\n0 1 0\n3 0 1 2\n", "not a number"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "4 corners but lists 3"),
    ("OFF BINARY\n", "not supported"),
    ("hello\n", "not an OFF file"),
])
def test_bad_off_is_one_line_naming_the_file(tmp_path, text, cause):
    path = tmp_path / "bad.off"
    path.write_text(text)
    with pytest.raises(DataError, match=cause) as error:
        read_shape(path)
    assert str(path) in str(error.value)


# -------------------------------------------------------------------------------------------------- OBJ
def test_obj_corner_syntax_negative_indices_and_polygons(tmp_path):
    vertices = "".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES)
    plain = tmp_path / "plain.obj"
    plain.write_text(vertices + "".join("f " + " ".join(str(i + 1) for i in q) + "\n" for q in CUBE_QUADS))
    fancy = tmp_path / "fancy.obj"
    fancy.write_text("mtllib cube.mtl\no cube\n" + vertices + "vt 0 0\nvn 0 0 1\ng sides\nusemtl red\ns off\n"
                     + "".join("f " + " ".join(f"{i - 8}/1/1" for i in q) + "\n" for q in CUBE_QUADS[:3])
                     + "".join("f " + " ".join(f"{i + 1}//1" for i in q) + "\n" for q in CUBE_QUADS[3:])
                     + "l 1 2\n")
    a, b = read_shape(plain), read_shape(fancy)
    np.testing.assert_array_equal(a.faces, b.faces)
    assert triangle_area(a) == pytest.approx(6.0)


def test_a_mesh_gives_the_same_samples_in_every_format(tmp_path):
    import trimesh

    triangles = [[q[0], q[1], q[2]] for q in CUBE_QUADS] + [[q[0], q[2], q[3]] for q in CUBE_QUADS]
    (tmp_path / "cube.off").write_text(off_text(CUBE_VERTICES, CUBE_QUADS))  # quads, cut here
    (tmp_path / "cube.obj").write_text("".join(f"v {x:g} {y:g} {z:g}\n" for x, y, z in CUBE_VERTICES[::-1])
                                       + "".join("f " + " ".join(str(8 - i) for i in t) + "\n" for t in triangles))
    mesh = trimesh.Trimesh(CUBE_VERTICES, np.array(triangles), process=False)
    mesh.export(tmp_path / "cube.stl")
    mesh.export(tmp_path / "cube.glb")
    write_ply_mesh(tmp_path / "cube.ply", CUBE_VERTICES, CUBE_QUADS, binary=True)
    samples = {name: read_cloud(tmp_path / name, mesh_points=512, seed=5)[0]
               for name in ("cube.off", "cube.obj", "cube.stl", "cube.glb", "cube.ply")}
    for name, points in samples.items():
        np.testing.assert_allclose(points, samples["cube.stl"], atol=1e-6, err_msg=name)


# -------------------------------------------------------------------------------------------------- PLY
def write_ply_mesh(path, vertices, faces, binary=True, order="<", colours=None):
    """A PLY mesh with a face list (uchar count, int indices), optionally uchar vertex colours."""
    props = "property float x\nproperty float y\nproperty float z\n"
    if colours is not None:
        props += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    fmt = {"<": "binary_little_endian", ">": "binary_big_endian"}[order] if binary else "ascii"
    header = (f"ply\nformat {fmt} 1.0\ncomment written by a test\nelement vertex {len(vertices)}\n{props}"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n").encode()
    if not binary:
        body = "".join(" ".join(f"{v:g}" for v in row) + ("" if colours is None else " " + " ".join(map(str, c)))
                       + "\n" for row, c in zip(vertices, colours if colours is not None else [None] * len(vertices)))
        body += "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces)
        path.write_bytes(header + body.encode())
        return
    chunks = []
    for k, row in enumerate(vertices):
        chunks.append(struct.pack(order + "3f", *row))
        if colours is not None:
            chunks.append(struct.pack("3B", *colours[k]))
    for face in faces:
        chunks.append(struct.pack(order + "B" + f"{len(face)}i", len(face), *face))
    path.write_bytes(header + b"".join(chunks))


@pytest.mark.parametrize("binary, order", [(True, "<"), (True, ">"), (False, "<")])
def test_low_poly_ply_is_a_mesh_sampled_on_its_surface(tmp_path, binary, order):
    tetrahedron = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    faces = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]
    path = tmp_path / "tetra.ply"
    write_ply_mesh(path, tetrahedron, faces, binary=binary, order=order, colours=[[255, 0, 0]] * 4)
    shape = read_shape(path)
    np.testing.assert_array_equal(shape.faces, faces)
    np.testing.assert_allclose(shape.colours, [[1, 0, 0]] * 4)
    encoder_input = Preprocessing().read(path)  # once refused as "4 distinct points"
    assert encoder_input.shape == (1024, 3) and len(np.unique(encoder_input, axis=0)) == 1024
    box = tmp_path / "box.ply"  # quads and triangles mixed: lists of varying length
    write_ply_mesh(box, CUBE_VERTICES, CUBE_QUADS[:3] + [[q[0], q[1], q[2]] for q in CUBE_QUADS[3:]]
                   + [[q[0], q[2], q[3]] for q in CUBE_QUADS[3:]], binary=binary, order=order)
    assert triangle_area(read_shape(box)) == pytest.approx(6.0)


def test_ply_vertices_keep_reading_fast_paths_and_other_elements(tmp_path):
    points = cloud(100)
    vertex = np.empty(100, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f8"), ("label", "<u2")])
    vertex["x"], vertex["y"], vertex["z"] = points.T
    header = ("ply\nformat binary_little_endian 1.0\nobj_info scanner\nelement vertex 100\nproperty float x\n"
              "property float y\nproperty float z\nproperty double nx\nproperty ushort label\n"
              "element camera 1\nproperty list uchar float matrix\nend_header\n")
    path = tmp_path / "scan.ply"
    path.write_bytes(header.encode() + vertex.tobytes() + struct.pack("<B2f", 2, 1.0, 2.0))
    np.testing.assert_array_equal(read_shape(path).vertices, points)


def test_a_ply_declaring_a_huge_count_is_refused_within_a_memory_bound(tmp_path):
    """A 1 kB file declaring 10^8 vertices with a list property (once 2.6 GB of allocation) is refused with one
    line by a process limited to 1 GiB of address space beyond what it has after importing the readers."""
    path = tmp_path / "huge.ply"
    path.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 100000000\nproperty float x\n"
                     b"property float y\nproperty float z\nproperty list uchar int extra\nend_header\n" + bytes(1000))
    text_path = tmp_path / "huge_ascii.ply"
    text_path.write_bytes(path.read_bytes().replace(b"binary_little_endian", b"ascii"))
    pcd = tmp_path / "huge.pcd"
    pcd.write_bytes(b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 1\nHEIGHT 1\n"
                    b"POINTS 200000000\nDATA ascii\n" + b"0 0 0\n" * 100)
    script = textwrap.dedent("""
        import resource, sys
        from datasets.formats import read_shape
        from utils.errors import DataError
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), used + (1 << 30)))
        for path in sys.argv[1:]:
            try:
                read_shape(path)
            except DataError as error:
                print(error)
    """)
    result = subprocess.run([sys.executable, "-c", script, str(path), str(text_path), str(pcd)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert "declares 100000000 'vertex' elements" in lines[0] and str(path) in lines[0]
    assert "declares 100000000 'vertex' elements" in lines[1]
    assert "declares 200000000 points" in lines[2]


# ---------------------------------------------------------------------------------------------- sampling
def test_surface_samples_are_seeded_and_independent_of_the_triangle_order():
    faces = np.array([[q[0], q[1], q[2]] for q in CUBE_QUADS] + [[q[0], q[2], q[3]] for q in CUBE_QUADS])
    a = sample_surface(CUBE_VERTICES, faces, 256, seed=1)
    np.testing.assert_array_equal(a, sample_surface(CUBE_VERTICES, faces, 256, seed=1))
    assert not np.array_equal(a, sample_surface(CUBE_VERTICES, faces, 256, seed=2))
    permuted = np.random.default_rng(0).permutation(len(faces))
    rolled = np.roll(faces[permuted], 1, axis=1)  # the same triangles, another start corner and order
    np.testing.assert_array_equal(a, sample_surface(CUBE_VERTICES, rolled, 256, seed=1))
    assert sample_surface(CUBE_VERTICES, np.array([[0, 1, 1]]), 8, seed=0) is None  # no area


def test_a_mesh_without_area_is_read_as_its_vertices(tmp_path):
    path = tmp_path / "lines.off"
    path.write_text(off_text(cloud(64).astype(np.float64), [[0, 1, 1], [2, 3]]))
    xyz, _ = read_cloud(path)
    assert xyz.shape == (64, 3)
