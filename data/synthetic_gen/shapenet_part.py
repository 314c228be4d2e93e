"""ShapeNetPart in the layout of shapenet_part_seg_hdf5_data/."""

from __future__ import annotations

import numpy as np

from .sampling import POINTS_PER_OBJECT, SPLIT_CODES, TAG_PART, sample_object, stream
from .writers import write_lines, write_split

# (name as in all_object_categories.txt, ShapeNet synset, number of parts); label = position in this list
SHAPENET_PART_CATEGORIES = (
    ("Airplane", "02691156", 4), ("Bag", "02773838", 2), ("Cap", "02954340", 2), ("Car", "02958343", 4),
    ("Chair", "03001627", 4), ("Earphone", "03261776", 3), ("Guitar", "03467517", 3),
    ("Knife", "03624134", 2), ("Lamp", "03636649", 4), ("Laptop", "03642806", 2),
    ("Motorbike", "03790512", 6), ("Mug", "03797390", 2), ("Pistol", "03948459", 3),
    ("Rocket", "04099429", 3), ("Skateboard", "04225987", 3), ("Table", "04379243", 3))
# global part ids are contiguous: category c owns [PART_OFFSETS[c], PART_OFFSETS[c] + parts)
PART_OFFSETS = tuple(int(x) for x in np.cumsum([0] + [c[2] for c in SHAPENET_PART_CATEGORIES])[:-1])
SHAPENET_PART_FAMILIES = {name: name.lower() for name, _, _ in SHAPENET_PART_CATEGORIES}


def make_shapenet_part(root, seed, cfg):
    """shapenet_part_seg_hdf5_data/: ply_data_train{0..5}.h5, ply_data_val0.h5, ply_data_test{0,1}.h5 with
    data float32 (n,2048,3), label uint8 (n,1) category 0..15, pid uint8 (n,2048) global part id 0..49;
    {train,val,test}_hdf5_file_list.txt (bare file names) and all_object_categories.txt."""
    folder = root / "shapenet_part_seg_hdf5_data"
    counts = {}
    for split, per_class, n_files in (("train", cfg["part_train"], 6), ("val", cfg["part_val"], 1),
                                      ("test", cfg["part_test"], 2)):
        order_rng = stream(seed, TAG_PART, SPLIT_CODES[split])
        jobs = [(c, k) for c in range(len(SHAPENET_PART_CATEGORIES)) for k in range(per_class)]
        jobs = [jobs[i] for i in order_rng.permutation(len(jobs))]
        data = np.zeros((len(jobs), POINTS_PER_OBJECT, 3), np.float32)
        label = np.zeros((len(jobs), 1), np.uint8)
        pid = np.zeros((len(jobs), POINTS_PER_OBJECT), np.uint8)
        for row, (c, k) in enumerate(jobs):
            name, _, n_parts = SHAPENET_PART_CATEGORIES[c]
            rng = stream(seed, TAG_PART, SPLIT_CODES[split], c, k)
            data[row], _, parts = sample_object(SHAPENET_PART_FAMILIES[name], rng)
            assert parts.max() < n_parts, (name, parts.max())
            label[row, 0] = c
            pid[row] = PART_OFFSETS[c] + parts
        write_split(folder, split, n_files, f"{split}_hdf5_file_list.txt", "", data=data, label=label, pid=pid)
        counts[split] = len(jobs)
    write_lines(folder / "all_object_categories.txt",
                [f"{name}\t{synset}" for name, synset, _ in SHAPENET_PART_CATEGORIES])
    return counts
