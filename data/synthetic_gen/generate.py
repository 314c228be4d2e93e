"""Generate small synthetic copies of the five AdaCrossNet datasets, in their real on-disk layouts.

The sizes weighting_tiny / weighting write the loss-weighting benchmark instead (weighting_bench.py)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from .class_tree import FOLDER as CLASS_TREE_FOLDER
from .class_tree import make_class_tree
from .modelnet40 import make_modelnet40
from .s3dis import make_s3dis
from .scanobjectnn import make_scanobjectnn
from .shapenet_part import make_shapenet_part
from .shapenet_render import make_shapenet_render
from .weighting_bench import BENCH_SIZES, make_weighting_bench, mismatch_renders

SIZES = {
    # tests: the whole generation stays around a couple of seconds on one core
    "tiny": dict(modelnet_train=10, modelnet_test=5, render_per_synset=2, render_missing=2,
                 sonn_train=6, sonn_test=3, sonn_pb_copies=2, part_train=4, part_val=1, part_test=2,
                 rooms_per_area=1, room_extent=(2.4, 3.2), room_density=900.0, blocks_per_file=20,
                 render_density=2500.0, tree_train=4, tree_test=2, tree_segments=8),
    # CPU demo
    "small": dict(modelnet_train=40, modelnet_test=20, render_per_synset=16, render_missing=2,
                  sonn_train=20, sonn_test=8, sonn_pb_copies=3, part_train=24, part_val=4, part_test=8,
                  rooms_per_area=2, room_extent=(3.0, 5.5), room_density=1200.0, blocks_per_file=100,
                  render_density=4000.0, tree_train=24, tree_test=10, tree_segments=16),
}

DATASET_FOLDERS = ("ShapeNet", "ShapeNetRendering", "modelnet40_ply_hdf5_2048", "h5_files", "ScanObjectNN",
                   "shapenet_part_seg_hdf5_data", "indoor3d_sem_seg_hdf5_data", CLASS_TREE_FOLDER)
MARKER = "SYNTHETIC_DATA.txt"


class RefusedRoot(FileExistsError):
    """The output folder holds dataset folders without this script's marker: perhaps the real data."""


def _prepare(root):
    """Clear an earlier synthetic copy (stale objects would be globbed by the ShapeNetRender loader), but
    never a folder with dataset folders and no marker: that may be the real data."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(20, "not a folder", str(root))
    root.mkdir(parents=True, exist_ok=True)
    existing = [name for name in DATASET_FOLDERS if (root / name).exists()]
    if existing and not (root / MARKER).is_file():
        raise RefusedRoot(f"{root}: holds {', '.join(existing)} but no {MARKER}; refusing to overwrite "
                          "what may be real data")
    for name in existing:
        shutil.rmtree(root / name)


def make_synthetic(root, seed=0, size="small", mismatched_renders=False) -> dict:
    """Write all five synthetic datasets under `root` (or, for a weighting_* size, the loss-weighting
    benchmark); returns counts per dataset. `mismatched_renders` (weighting sizes only): every object gets
    another object's views, the control in which the images carry no information about the points."""
    if size not in SIZES and size not in BENCH_SIZES:
        raise ValueError(f"size must be one of {(*SIZES, *BENCH_SIZES)}, got {size!r}")
    if mismatched_renders and size not in BENCH_SIZES:  # before _prepare: a refused call clears nothing
        raise ValueError(f"mismatched_renders is for the weighting sizes {tuple(BENCH_SIZES)}, not {size!r}")
    root, started = Path(root).resolve(), time.perf_counter()
    _prepare(root)
    (root / MARKER).write_text(f"synthetic AdaCrossNet data: make_synthetic(seed={seed}, size={size!r}"
                               f"{', mismatched_renders=True' if mismatched_renders else ''}); "
                               "not real data, see data/README.md\n")
    summary = {"root": str(root), "seed": seed, "size": size}
    if size in BENCH_SIZES:
        summary.update(make_weighting_bench(root, seed, BENCH_SIZES[size]))
        if mismatched_renders:
            summary["mismatched_renders"] = mismatch_renders(root, seed)
        summary["seconds"] = round(time.perf_counter() - started, 2)
        return summary
    cfg = SIZES[size]
    summary["shapenet_render"] = make_shapenet_render(root, seed, cfg)
    summary["modelnet40"] = make_modelnet40(root, seed, cfg)
    summary["scanobjectnn"] = make_scanobjectnn(root, seed, cfg)
    summary["shapenetpart"] = make_shapenet_part(root, seed, cfg)
    summary["s3dis"] = make_s3dis(root, seed, cfg)
    summary["class_tree"] = make_class_tree(root, seed, cfg)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def format_summary(summary) -> str:
    if summary["size"] in BENCH_SIZES:
        r, m = summary["shapenet_render"], summary["modelnet40"]
        return "\n".join([
            f"weighting benchmark (size={summary['size']}, seed={summary['seed']}) in {summary['root']}, "
            f"{summary['seconds']} s",
            f"  ShapeNetRender: {r['objects']} objects x {r['views']} views of {r['image_size']} px",
            f"  ModelNet40:     {m['train']} train / {m['test']} test, {m['classes_used']} of 40 classes",
        ] + ([f"  every object paired with another object's views ({summary['mismatched_renders']} objects)"]
             if "mismatched_renders" in summary else []))
    r, m, s, p, d, t = (summary[k] for k in ("shapenet_render", "modelnet40", "scanobjectnn", "shapenetpart", "s3dis",
                                             "class_tree"))
    return "\n".join([
        f"synthetic data (size={summary['size']}, seed={summary['seed']}) in {summary['root']}, {summary['seconds']} s",
        f"  ShapeNetRender: {r['with_renderings']} objects x {r['views']} views, "
        f"{r['without_renderings']} without renderings",
        f"  ModelNet40:     {m['train']} train / {m['test']} test, {m['classes_used']} of 40 classes",
        f"  ScanObjectNN:   {s['train']} train / {s['test']} test "
        f"(PB_T50_RS {s['train_pb_t50_rs']} / {s['test_pb_t50_rs']})",
        f"  ShapeNetPart:   {p['train']} train / {p['val']} val / {p['test']} test",
        f"  S3DIS:          {d['blocks']} blocks from {d['rooms']} rooms in 6 areas, {d['files']} files",
        f"  {CLASS_TREE_FOLDER} tree:  {t['train']} train / {t['test']} test OFF meshes, {t['classes']} classes",
    ])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/synthetic", help="data root to write (default: data/synthetic)")
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument("--size", choices=(*SIZES, *BENCH_SIZES), default="small",
                        help="tiny | small: the five datasets; weighting_tiny | weighting: the loss-weighting "
                             "benchmark (default: small)")
    parser.add_argument("--mismatched-renders", action="store_true",
                        help="weighting sizes: give every object another object's rendered views (a control: "
                             "images that say nothing about their points)")
    args = parser.parse_args(argv)
    if args.mismatched_renders and args.size not in BENCH_SIZES:
        parser.error(f"--mismatched-renders needs a weighting size ({', '.join(BENCH_SIZES)})")
    # Run as a file, this script cannot import the repository's utils.errors: its errors are reported here.
    try:
        summary = make_synthetic(args.out, seed=args.seed, size=args.size, mismatched_renders=args.mismatched_renders)
    except RefusedRoot as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = error.filename if error.filename is not None else args.out
        print(f"error: {where}: cannot write the synthetic data ({error.strerror or error})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: interrupted; {args.out} may hold partial data: run the same command again", file=sys.stderr)
        return 130
    print(format_summary(summary))
    return 0


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected 0 <= seed < 2**32, got {value}")
    return value
