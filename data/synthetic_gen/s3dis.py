"""S3DIS in the layout of indoor3d_sem_seg_hdf5_data/: procedural rooms cut into 1 m blocks."""

from __future__ import annotations

import math

import numpy as np

from .furniture import build_chair, build_shelf, build_sofa, build_table
from .primitives import Box, Cylinder, U, rot_y
from .sampling import TAG_S3DIS, choose_points, sample_parts, stream, total_area
from .writers import write_h5, write_lines

S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
                 "bookcase", "board", "clutter")
S3DIS_POINTS_PER_BLOCK = 4096
S3DIS_COLOURS = np.array([
    (225, 225, 220), (135, 120, 105), (205, 195, 175), (185, 180, 170), (195, 190, 180), (150, 185, 215),
    (120, 85, 60), (165, 125, 85), (60, 65, 80), (150, 55, 55), (125, 95, 65), (240, 240, 235), (0, 0, 0),
]) / 255.0
ROOM_TYPES = ("office", "conferenceRoom", "hallway", "storage", "lounge")
ROOM_WEIGHTS = (0.4, 0.2, 0.15, 0.1, 0.15)
LABEL = {name: k for k, name in enumerate(S3DIS_CLASSES)}


class _Room:
    """One S3DIS-like room in metres, y up, spanning [0, X] x [0, H] x [0, Z]: surfaces are sampled at a
    fixed density into labelled pieces as they are added."""

    def __init__(self, room_type, rng, cfg):
        lo, hi = cfg["room_extent"]
        self.type, self.rng, self.density = room_type, rng, cfg["room_density"]
        if room_type == "hallway":  # long and narrow
            self.x, self.z = U(rng, 1.4, 2.0), U(rng, hi, hi * 1.6)
        else:
            self.x, self.z = U(rng, lo, hi), U(rng, lo, hi)
        self.height = U(rng, 2.7, 3.2)
        self.pieces = []  # (points, label)
        self.table_tops = []  # (position, height) where clutter may stand

    def add(self, parts, label, turn=0.0, offset=(0, 0, 0)):
        parts = [(prim.moved(rot_y(turn), offset), part) for prim, part in parts]
        points = sample_parts(parts, max(int(total_area(parts) * self.density), 32), self.rng)[0]
        self.pieces.append((points, LABEL[label]))
        return points

    def spot(self, margin):
        """A random floor position at least `margin` from the walls (the middle in a small room)."""
        return (U(self.rng, min(margin, self.x / 2), max(self.x - margin, self.x / 2)), 0,
                U(self.rng, min(margin, self.z / 2), max(self.z - margin, self.z / 2)))

    def build_shell(self):
        """Floor, ceiling and walls; a door, maybe a window and a board are rectangles of a wall's plane,
        moved off it by a few cm (S3DIS labels them on the wall surface)."""
        x, z, h, rng = self.x, self.z, self.height, self.rng
        self.add([(Box((x / 2, 0, z / 2), (x, 0, z), faces=("+y",)), 0)], "floor")
        self.add([(Box((x / 2, h, z / 2), (x, 0, z), faces=("-y",)), 0)], "ceiling")
        # (surface, index of the coordinate that runs along the wall, wall length, inward normal)
        walls = [(Box((0, h / 2, z / 2), (0, h, z), faces=("+x",)), 2, z, (1, 0, 0)),
                 (Box((x, h / 2, z / 2), (0, h, z), faces=("-x",)), 2, z, (-1, 0, 0)),
                 (Box((x / 2, h / 2, 0), (x, h, 0), faces=("+z",)), 0, x, (0, 0, 1)),
                 (Box((x / 2, h / 2, z), (x, h, 0), faces=("-z",)), 0, x, (0, 0, -1))]
        door_wall, window_wall, board_wall = rng.permutation(4)[:3]

        def span(length, lo, hi):
            width = U(rng, lo, max(min(hi, length - 0.4), lo + 0.01))
            start = U(rng, 0.1, max(length - width - 0.1, 0.11))
            return start, start + width

        openings = {door_wall: ("door", span(walls[door_wall][2], 0.8, 1.0), (0.0, 2.1), 0.02)}
        if self.type not in ("hallway", "storage") or rng.random() < 0.3:
            sill = U(rng, 0.8, 1.0)
            window = span(walls[window_wall][2], 0.8, 2.0)
            openings[window_wall] = ("window", window, (sill, sill + U(rng, 1.0, 1.4)), -0.05)
        if self.type in ("office", "conferenceRoom") and rng.random() < 0.7:
            openings[board_wall] = ("board", span(walls[board_wall][2], 1.0, 2.4), (0.9, 0.9 + U(rng, 0.9, 1.2)), 0.02)
        for w, (surface, along, _, inward) in enumerate(walls):
            points = sample_parts([(surface, 0)], max(int(surface.area() * self.density), 32), rng)[0]
            on_wall = np.ones(len(points), dtype=bool)
            if w in openings:
                label, (u0, u1), (v0, v1), offset = openings[w]
                inside = ((points[:, along] >= u0) & (points[:, along] <= u1)
                          & (points[:, 1] >= v0) & (points[:, 1] <= v1))
                self.pieces.append((points[inside] + np.asarray(inward) * offset, LABEL[label]))
                on_wall = ~inside
            self.pieces.append((points[on_wall], LABEL["wall"]))

    def build_structure(self):
        """Sometimes a beam under the ceiling and a column in a corner."""
        x, z, h, rng = self.x, self.z, self.height, self.rng
        if rng.random() < 0.4:
            beam = Box((U(rng, 0.3, 0.7) * x, h - 0.2, z / 2), (0.3, 0.4, z), faces=("+x", "-x", "-y"))
            self.add([(beam, 0)], "beam")
        if rng.random() < 0.5:
            right, back = int(rng.integers(0, 2)), int(rng.integers(0, 2))
            center = (x - 0.2 if right else 0.2, h / 2, z - 0.2 if back else 0.2)
            faces = ("-x" if right else "+x", "-z" if back else "+z")
            self.add([(Box(center, (0.4, h, 0.4), faces=faces), 0)], "column")

    def furnish(self):
        """Tables with chairs around them, sofas, bookcases against a wall, clutter on tables and floor;
        how much of each depends on the room type."""
        rng, kind = self.rng, self.type
        for _ in range({"office": int(rng.integers(1, 3)), "conferenceRoom": 1, "lounge": 1}.get(kind, 0)):
            where, turn = self.spot(0.9), float(rng.integers(0, 4)) * math.pi / 2
            table = self.add(build_table(rng), "table", turn, where)
            self.table_tops.append((where, float(table[:, 1].max())))
            chairs = int(rng.integers(4, 7)) if kind == "conferenceRoom" else int(rng.integers(1, 3))
            for k in range(chairs):
                angle = turn + 2 * math.pi * k / chairs
                seat = np.array(where) + 0.8 * np.array([math.sin(angle), 0, math.cos(angle)])
                self.add(build_chair(rng), "chair", angle + math.pi, seat)
        if kind == "lounge":
            for k in range(int(rng.integers(1, 3))):
                self.add(build_sofa(rng), "sofa", k * math.pi, (self.x / 2, 0, 0.55 if k == 0 else self.z - 0.55))
        for k in range({"office": int(rng.random() < 0.7), "storage": int(rng.integers(2, 4))}.get(kind, 0)):
            self.add(build_shelf(rng), "bookcase", 0.0, (U(rng, 0.7, max(self.x - 0.7, 0.71)), 0, 0.2 + 0.01 * k))
        clutter = {"storage": int(rng.integers(4, 9)),
                   "hallway": int(rng.integers(0, 3))}.get(kind, int(rng.integers(2, 6)))
        for _ in range(clutter):
            size = U(rng, 0.1, 0.4)
            if self.table_tops and rng.random() < 0.5:
                (x, _, z), top = self.table_tops[int(rng.integers(len(self.table_tops)))]
                where = (x + U(rng, -0.4, 0.4), top, z + U(rng, -0.25, 0.25))
            else:
                where = self.spot(0.3)
            dims = (size, size * U(rng, 0.5, 2.0), size * U(rng, 0.5, 1.5))
            lifted = (0, dims[1] / 2, 0)
            shape = Box(lifted, dims) if rng.random() < 0.6 else Cylinder(lifted, size / 2, dims[1])
            self.add([(shape, 0)], "clutter", U(rng, 0, math.pi), where)

    def coloured_points(self):
        """Points, colours (class-typical colour x a per-object tint + per-point noise; clutter any colour)
        and labels. Furniture poking through a wall is cut off; a recessed window stays."""
        points, colours, labels = [], [], []
        for piece, label in self.pieces:
            base = self.rng.random(3) if label == LABEL["clutter"] else S3DIS_COLOURS[label] * U(self.rng, 0.85, 1.15)
            colours.append(np.clip(base + self.rng.normal(0, 0.03, piece.shape), 0, 1))
            points.append(piece)
            labels.append(np.full(len(piece), label))
        points, colours, labels = np.concatenate(points), np.concatenate(colours), np.concatenate(labels)
        margin = 0.1
        inside = np.all((points >= -margin) & (points <= np.array([self.x, self.height, self.z]) + margin), axis=1)
        return points[inside], colours[inside], labels[inside]


def _s3dis_room(room_type, rng, cfg):
    """Points (n,3) in metres (y up), colours (n,3) in 0..1 and labels (n,) of one random room."""
    room = _Room(room_type, rng, cfg)
    room.build_shell()
    room.build_structure()
    room.furnish()
    return room.coloured_points()


def _room_blocks(points, colours, labels, rng, block=1.0, stride=1.0, min_points=100):
    """Cut a room (z up) into 1 m x 1 m columns of 4096 points, as indoor3d_sem_seg_hdf5_data was made:
    channels 0-2 = xyz with x, y moved to the block centre (z stays the height above the floor),
    3-5 = rgb/255, 6-8 = xyz / room size (in [0, 1])."""
    points = points - points.min(axis=0)
    room_max = points.max(axis=0)
    n_x = int(math.ceil((room_max[0] - block) / stride)) + 1
    n_y = int(math.ceil((room_max[1] - block) / stride)) + 1
    data, block_labels = [], []
    for i in range(n_x):
        for j in range(n_y):
            x0, y0 = i * stride, j * stride
            inside = np.flatnonzero((points[:, 0] >= x0) & (points[:, 0] <= x0 + block)
                                    & (points[:, 1] >= y0) & (points[:, 1] <= y0 + block))
            if len(inside) < min_points:
                continue
            chosen = inside[choose_points(len(inside), S3DIS_POINTS_PER_BLOCK, rng)]
            xyz = points[chosen]
            channels = np.empty((S3DIS_POINTS_PER_BLOCK, 9), np.float32)
            channels[:, 0:3] = xyz
            channels[:, 0] -= xyz[:, 0].min() + block / 2
            channels[:, 1] -= xyz[:, 1].min() + block / 2
            channels[:, 3:6] = colours[chosen]
            channels[:, 6:9] = xyz / room_max
            data.append(channels)
            block_labels.append(labels[chosen].astype(np.uint8))
    return data, block_labels


def make_s3dis(root, seed, cfg):
    """indoor3d_sem_seg_hdf5_data/: ply_data_all_{k}.h5 with data float32 (n,4096,9), label uint8 (n,4096)
    0..12; all_files.txt (lines carry the folder prefix); room_filelist.txt (one Area_<a>_<room> per block).
    Areas 1..6, so both the Area 5 split and 6-fold cross-validation work."""
    folder = root / "indoor3d_sem_seg_hdf5_data"
    data, labels, rooms = [], [], []
    for area in range(1, 7):
        rng = stream(seed, TAG_S3DIS, area)
        seen = {}
        for _ in range(cfg["rooms_per_area"]):
            room_type = ROOM_TYPES[int(rng.choice(len(ROOM_TYPES), p=ROOM_WEIGHTS))]
            seen[room_type] = seen.get(room_type, 0) + 1
            name = f"Area_{area}_{room_type}_{seen[room_type]}"
            points, colours, room_labels = _s3dis_room(room_type, rng, cfg)
            z_up = points[:, [0, 2, 1]]  # S3DIS has z up
            blocks, block_labels = _room_blocks(z_up, colours, room_labels, rng)
            data += blocks
            labels += block_labels
            rooms += [name] * len(blocks)
    data, labels = np.stack(data), np.stack(labels)
    listed = []
    for index, start in enumerate(range(0, len(data), cfg["blocks_per_file"])):
        rows = slice(start, start + cfg["blocks_per_file"])
        write_h5(folder / f"ply_data_all_{index}.h5", data=data[rows], label=labels[rows])
        listed.append(f"indoor3d_sem_seg_hdf5_data/ply_data_all_{index}.h5")
    write_lines(folder / "all_files.txt", listed)
    write_lines(folder / "room_filelist.txt", rooms)
    return {"blocks": len(data), "rooms": len(set(rooms)), "files": len(listed)}
