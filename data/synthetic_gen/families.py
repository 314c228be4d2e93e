"""The shape families: part names, render colours, and one builder per family (furniture.py, objects.py).
For ShapeNetPart families the part order is that category's part order."""

from __future__ import annotations

import math

from . import furniture, objects
from .primitives import U, rot_y

FAMILY_PARTS = {
    "airplane": ("body", "wing", "tail", "engine"), "bag": ("handle", "body"), "cap": ("peak", "crown"),
    "car": ("roof", "hood", "wheel", "body"), "chair": ("back", "seat", "leg", "arm"),
    "earphone": ("earcup", "headband", "cord"), "guitar": ("head", "neck", "body"),
    "knife": ("blade", "handle"), "lamp": ("base", "pole", "shade", "bulb"), "laptop": ("keyboard", "screen"),
    "motorbike": ("gas_tank", "seat", "wheel", "handlebar", "light", "frame"), "mug": ("handle", "body"),
    "pistol": ("barrel", "grip", "trigger"), "rocket": ("body", "fin", "nose"),
    "skateboard": ("wheel", "deck", "truck"), "table": ("top", "leg", "support"),
    "bed": ("frame", "mattress", "headboard"), "bench": ("seat", "leg", "back"),
    "bin": ("body", "lid"), "bottle": ("body", "neck"), "bowl": ("bowl", "foot"), "box": ("box", "flap"),
    "cabinet": ("body", "door", "handle"), "cone": ("cone", "base"), "desk": ("top", "pedestal", "leg"),
    "door": ("slab", "knob", "frame"), "loudspeaker": ("cabinet", "driver"),
    "monitor": ("screen", "stand", "base"), "pillow": ("pillow",), "rifle": ("barrel", "body", "stock"),
    "shelf": ("frame", "board", "book"), "sink": ("basin", "support", "faucet"),
    "sofa": ("base", "back", "arm"), "telephone": ("body", "screen", "detail"),
    "toilet": ("bowl", "tank", "seat"), "watercraft": ("hull", "deck", "superstructure"),
}

# base colour per part (RGB 0..1) for the renders
FAMILY_COLOURS = {
    "airplane": [(.85, .86, .88), (.7, .72, .76), (.8, .25, .2), (.35, .35, .4)],
    "bench": [(.55, .38, .22), (.25, .25, .27), (.55, .38, .22)],
    "cabinet": [(.62, .45, .3), (.7, .52, .35), (.8, .8, .75)],
    "car": [(.2, .3, .6), (.7, .15, .15), (.1, .1, .1), (.75, .2, .2)],
    "chair": [(.55, .3, .2), (.6, .35, .22), (.2, .2, .2), (.45, .3, .2)],
    "monitor": [(.1, .1, .12), (.3, .3, .32), (.25, .25, .27)],
    "lamp": [(.3, .3, .3), (.6, .6, .62), (.95, .85, .6), (1.0, 1.0, .85)],
    "loudspeaker": [(.15, .12, .1), (.4, .4, .42)],
    "rifle": [(.2, .2, .22), (.3, .3, .3), (.45, .3, .18)],
    "sofa": [(.6, .2, .2), (.55, .18, .18), (.5, .16, .16)],
    "table": [(.6, .42, .25), (.35, .25, .15), (.45, .32, .2)],
    "telephone": [(.15, .15, .17), (.2, .3, .45), (.6, .6, .6)],
    "watercraft": [(.9, .9, .92), (.6, .45, .3), (.3, .4, .6)],
}
DEFAULT_COLOURS = [(.6, .6, .6), (.4, .4, .45), (.75, .6, .45), (.3, .5, .6), (.6, .3, .3), (.5, .6, .3)]

BUILDERS = {name[len("build_"):]: fn for module in (furniture, objects) for name, fn in vars(module).items()
            if name.startswith("build_")}
assert set(BUILDERS) == set(FAMILY_PARTS), set(BUILDERS) ^ set(FAMILY_PARTS)


def make_shape(family, rng):
    """One random instance of a family, turned about the up axis (y) by a random angle."""
    parts = BUILDERS[family](rng)
    turn = rot_y(U(rng, 0, 2 * math.pi))
    return [(prim.moved(turn, (0, 0, 0)), part) for prim, part in parts]
