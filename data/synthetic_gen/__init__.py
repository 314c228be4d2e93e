"""Generate small synthetic copies of the five AdaCrossNet datasets, in their real on-disk layouts.

    python data/make_synthetic.py --out data/synthetic --seed 0 --size small

Everything written here has the file names, h5 keys, shapes and dtypes of the public archives (see
data/README.md), so the loaders are tested against the real layout without downloading anything:

    ShapeNet/<synset>/<model_id>.ply                 ShapeNetRender point clouds (13 synsets)
    ShapeNetRendering/<synset>/<model_id>/rendering/  24 RGBA views + renderings.txt, rendering_metadata.txt
    modelnet40_ply_hdf5_2048/                        ModelNet40
    h5_files/main_split{,_nobg}/ and ScanObjectNN/main_split/   ScanObjectNN (official and CrossPoint names)
    shapenet_part_seg_hdf5_data/                     ShapeNetPart
    indoor3d_sem_seg_hdf5_data/                      S3DIS

The shapes are procedural: a family (table, chair, airplane, ...) is a list of surface primitives (boxes,
frusta, ellipsoids, tori) with random proportions, each primitive tagged with a part. Point clouds are
area-weighted surface samples, so classes differ by shape, not by point count, and part labels are
geometric. The renders of a ShapeNetRender object are drawn from the same posed shape as its .ply.

Modules:
    primitives, furniture, objects, families, sampling   the procedural shapes and their point samples
    render, writers                                       the point-splat renderer; h5, PLY, PNG, list files
    shapenet_render, modelnet40, scanobjectnn,
    shapenet_part, s3dis                                  one module per dataset
    generate                                              make_synthetic() and the command line

Self-contained on purpose (numpy, h5py, plyfile and the standard library) so that it runs before anything
else works. Imports inside the package are relative, so it works both as `data.synthetic_gen` (from the
repository root) and as `synthetic_gen` (when data/make_synthetic.py is run as a file).
Deterministic: the same (seed, size) gives identical h5 arrays (and files) and identical PNG bytes.
"""

from .generate import MARKER, SIZES, main, make_synthetic

__all__ = ["MARKER", "SIZES", "main", "make_synthetic"]
