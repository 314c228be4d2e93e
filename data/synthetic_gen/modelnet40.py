"""ModelNet40 in the layout of modelnet40_ply_hdf5_2048/."""

from __future__ import annotations

import numpy as np

from .sampling import POINTS_PER_OBJECT, SPLIT_CODES, TAG_MODELNET, sample_object, stream
from .writers import write_lines, write_split

MODELNET40_NAMES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone", "cup",
    "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp", "laptop",
    "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink", "sofa",
    "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox")

# family that stands in for each dataset class (22 of the 40)
MODELNET40_FAMILIES = {
    "airplane": "airplane", "bed": "bed", "bench": "bench", "bookshelf": "shelf", "bottle": "bottle",
    "bowl": "bowl", "car": "car", "chair": "chair", "cone": "cone", "cup": "mug", "desk": "desk",
    "door": "door", "dresser": "cabinet", "glass_box": "box", "guitar": "guitar", "lamp": "lamp",
    "laptop": "laptop", "monitor": "monitor", "sink": "sink", "sofa": "sofa", "table": "table",
    "toilet": "toilet"}


def make_modelnet40(root, seed, cfg):
    """modelnet40_ply_hdf5_2048/: ply_data_train{0..4}.h5, ply_data_test{0,1}.h5 with data float32
    (n,2048,3) on the unit sphere, normal float32 (n,2048,3), label uint8 (n,1); shape_names.txt (all 40
    names), train_files.txt / test_files.txt listing the h5 paths as the real ones do (data/... prefix)."""
    folder = root / "modelnet40_ply_hdf5_2048"
    classes = sorted(MODELNET40_FAMILIES)
    counts = {}
    for split, per_class, n_files in (("train", cfg["modelnet_train"], 5), ("test", cfg["modelnet_test"], 2)):
        order_rng = stream(seed, TAG_MODELNET, SPLIT_CODES[split])
        jobs = [(name, k) for name in classes for k in range(per_class)]
        jobs = [jobs[i] for i in order_rng.permutation(len(jobs))]  # real files are shuffled across classes
        data = np.zeros((len(jobs), POINTS_PER_OBJECT, 3), np.float32)
        normal = np.zeros_like(data)
        label = np.zeros((len(jobs), 1), np.uint8)
        for row, (name, k) in enumerate(jobs):
            rng = stream(seed, TAG_MODELNET, SPLIT_CODES[split], MODELNET40_NAMES.index(name), k)
            data[row], normal[row], _ = sample_object(MODELNET40_FAMILIES[name], rng)
            label[row, 0] = MODELNET40_NAMES.index(name)
        write_split(folder, split, n_files, f"{split}_files.txt", "data/modelnet40_ply_hdf5_2048/", data=data,
                    normal=normal, label=label)
        counts[split] = len(jobs)
    write_lines(folder / "shape_names.txt", MODELNET40_NAMES)
    return {**counts, "classes_used": len(classes)}
