"""Shape families of furniture and containers (also what furnishes the S3DIS rooms). Each builder returns
[(primitive, part), ...] in metres-ish units, y up, for one random instance; part ids follow
families.FAMILY_PARTS. Proportions are drawn from overlapping ranges so that the bounding box alone does not
give the class away."""

from __future__ import annotations

import math

import numpy as np

from .primitives import ALONG_Z, Box, Cylinder, Ellipsoid, Frustum, Torus, U, corners, rot_x, rot_y, rot_z


def build_table(rng):
    height, thick = U(rng, 0.6, 1.0), U(rng, 0.03, 0.08)
    top_y = height - thick / 2
    if rng.random() < 0.3:  # round pedestal table: central pole, disc foot
        radius = U(rng, 0.4, 0.8)
        return [(Cylinder((0, top_y, 0), radius, thick), 0),
                (Cylinder((0, (height - thick) / 2, 0), U(rng, 0.04, 0.1), height - thick, bottom=False, top=False), 1),
                (Cylinder((0, 0.02, 0), radius * U(rng, 0.4, 0.7), 0.04), 2)]
    width, depth, leg, inset = U(rng, 0.9, 2.0), U(rng, 0.6, 1.2), U(rng, 0.04, 0.1), U(rng, 0.0, 0.12)
    leg_h, apron_h = height - thick, U(rng, 0.06, 0.15)
    ax, az = width / 2 - inset - leg / 2, depth / 2 - inset - leg / 2
    parts = [(Box((0, top_y, 0), (width, thick, depth)), 0)]
    parts += [(Box((x, leg_h / 2, z), (leg, leg_h, leg)), 1) for x, z in corners(ax, az)]
    apron_y = height - thick - apron_h / 2
    parts += [(Box((0, apron_y, s * az), (2 * ax, apron_h, 0.02)), 2) for s in (-1, 1)]
    parts += [(Box((s * ax, apron_y, 0), (0.02, apron_h, 2 * az)), 2) for s in (-1, 1)]
    return parts


def build_chair(rng):
    w, d, seat_h, seat_t = U(rng, 0.4, 0.6), U(rng, 0.4, 0.6), U(rng, 0.4, 0.5), U(rng, 0.04, 0.08)
    back_h, back_t, leg = U(rng, 0.35, 0.7), U(rng, 0.03, 0.08), U(rng, 0.03, 0.06)
    under = seat_h - seat_t / 2
    parts = [(Box((0, seat_h, 0), (w, seat_t, d)), 1),
             (Box((0, seat_h + seat_t / 2 + back_h / 2, -d / 2 + back_t / 2), (w, back_h, back_t),
                  rot=rot_x(U(rng, -0.25, 0.0))), 0)]
    if rng.random() < 0.25:  # office chair: column and a five-spoke star
        parts.append((Cylinder((0, under / 2 + 0.04, 0), 0.03, under - 0.08, bottom=False, top=False), 2))
        for k in range(5):
            spoke = rot_y(2 * math.pi * k / 5)
            parts.append((Box(spoke @ np.array([0.15, 0.04, 0]), (0.3, 0.03, 0.04), rot=spoke), 2))
    else:
        parts += [(Box((x, under / 2, z), (leg, under, leg)), 2) for x, z in corners(w / 2 - leg / 2, d / 2 - leg / 2)]
    if rng.random() < 0.4:  # armrests on posts
        arm_y = seat_h + U(rng, 0.18, 0.25)
        for s in (-1, 1):
            parts.append((Box((s * (w / 2 + 0.02), arm_y, 0), (0.05, 0.04, d * 0.9)), 3))
            parts.append((Box((s * (w / 2 + 0.02), (arm_y + seat_h) / 2, d * 0.35), (0.03, arm_y - seat_h, 0.03)), 3))
    return parts


def build_sofa(rng):
    length, depth, base_h = U(rng, 1.4, 2.4), U(rng, 0.75, 1.0), U(rng, 0.35, 0.5)
    back_h, back_t, arm_w, arm_h = U(rng, 0.3, 0.5), U(rng, 0.15, 0.3), U(rng, 0.1, 0.25), U(rng, 0.15, 0.3)
    parts = [(Box((0, base_h / 2, 0), (length, base_h, depth)), 0),
             (Box((0, base_h + back_h / 2, -depth / 2 + back_t / 2), (length, back_h, back_t)), 1)]
    parts += [(Box((s * (length / 2 - arm_w / 2), base_h + arm_h / 2, back_t / 2), (arm_w, arm_h, depth - back_t)), 2)
              for s in (-1, 1)]
    seats = int(rng.integers(2, 4))  # seat cushions
    inner = length - 2 * arm_w
    parts += [(Box((-inner / 2 + (k + 0.5) * inner / seats, base_h + 0.05, back_t / 2),
                   (inner / seats * 0.96, 0.1, depth - back_t)), 0) for k in range(seats)]
    return parts


def build_bed(rng):
    length, width, frame_h, mat_h = U(rng, 1.9, 2.2), U(rng, 0.9, 1.8), U(rng, 0.2, 0.35), U(rng, 0.15, 0.3)
    head_h, lift = U(rng, 0.7, 1.3), 0.08
    parts = [(Box((0, lift + frame_h / 2, 0), (width, frame_h, length)), 0),
             (Box((0, lift + frame_h + mat_h / 2, 0), (width * 0.97, mat_h, length * 0.97)), 1),
             (Box((0, head_h / 2, -length / 2 - 0.03), (width, head_h, 0.06)), 2)]
    parts += [(Box((x, lift / 2, z), (0.06, lift, 0.06)), 0) for x, z in corners(width / 2 - 0.05, length / 2 - 0.05)]
    if rng.random() < 0.5:
        foot_h = U(rng, 0.3, 0.6)
        parts.append((Box((0, foot_h / 2, length / 2 + 0.03), (width, foot_h, 0.05)), 0))
    if rng.random() < 0.7:
        top = lift + frame_h + mat_h
        parts.append((Ellipsoid((0, top + 0.05, -length / 2 + 0.3), (width * 0.35, 0.07, 0.2)), 1))
    return parts


def build_bench(rng):
    length, depth, height, thick = U(rng, 1.0, 2.0), U(rng, 0.3, 0.5), U(rng, 0.4, 0.5), U(rng, 0.04, 0.08)
    parts = [(Box((0, height, 0), (length, thick, depth)), 0)]
    under = height - thick / 2
    if rng.random() < 0.5:  # slab ends
        parts += [(Box((s * (length / 2 - 0.1), under / 2, 0), (0.05, under, depth * 0.9)), 1) for s in (-1, 1)]
    else:
        parts += [(Box((x, under / 2, z), (0.05, under, 0.05)), 1)
                  for x, z in corners(length / 2 - 0.08, depth / 2 - 0.05)]
    if rng.random() < 0.5:  # backrest on posts
        back_h = U(rng, 0.25, 0.45)
        parts.append((Box((0, height + 0.1 + back_h / 2, -depth / 2), (length, back_h, 0.04)), 2))
        parts += [(Box((s * (length / 2 - 0.1), height + 0.05, -depth / 2), (0.04, 0.1, 0.04)), 2) for s in (-1, 1)]
    return parts


def build_desk(rng):
    width, depth, height, thick = U(rng, 1.0, 1.6), U(rng, 0.5, 0.8), U(rng, 0.7, 0.8), 0.04
    ped_w = U(rng, 0.35, 0.5)
    under = height - thick
    parts = [(Box((0, height - thick / 2, 0), (width, thick, depth)), 0),
             (Box((width / 2 - ped_w / 2, under / 2, 0), (ped_w, under, depth * 0.95)), 1)]
    drawers = int(rng.integers(2, 5))
    parts += [(Box((width / 2 - ped_w / 2, under * (k + 0.5) / drawers, depth * 0.475 + 0.01), (0.12, 0.02, 0.02)), 1)
              for k in range(drawers)]  # drawer handles
    if rng.random() < 0.5:
        parts.append((Box((-width / 2 + 0.03, under / 2, 0), (0.04, under, depth * 0.95)), 2))
    else:
        parts += [(Box((-width / 2 + 0.04, under / 2, s * (depth / 2 - 0.04)), (0.05, under, 0.05)), 2)
                  for s in (-1, 1)]
    if rng.random() < 0.5:  # modesty panel at the back
        parts.append((Box((0, under * 0.6, -depth / 2 + 0.02), (width - ped_w, under * 0.5, 0.02)), 2))
    return parts


def build_cabinet(rng):
    width, height, depth = U(rng, 0.5, 1.2), U(rng, 0.7, 2.0), U(rng, 0.35, 0.6)
    plinth = U(rng, 0.0, 0.1)
    parts = [(Box((0, plinth + (height - plinth) / 2, 0), (width, height - plinth, depth)), 0)]
    if plinth > 0.03:
        parts.append((Box((0, plinth / 2, -0.03), (width - 0.06, plinth, depth - 0.06)), 0))
    doors = int(rng.integers(1, 3))
    door_w, door_h = width / doors - 0.02, height - plinth - 0.06
    for k in range(doors):
        x = -width / 2 + (k + 0.5) * width / doors
        parts.append((Box((x, plinth + (height - plinth) / 2, depth / 2 + 0.01), (door_w, door_h, 0.02)), 1))
        hx = x + (door_w / 2 - 0.06) * (1 if k % 2 == 0 else -1)
        parts.append((Box((hx, plinth + (height - plinth) * 0.55, depth / 2 + 0.035), (0.02, 0.12, 0.03)), 2))
    return parts


def build_shelf(rng):
    width, height, depth, thick = U(rng, 0.6, 1.2), U(rng, 0.8, 2.0), U(rng, 0.25, 0.4), U(rng, 0.02, 0.04)
    boards = int(rng.integers(2, 6))
    parts = [(Box((s * (width / 2 - thick / 2), height / 2, 0), (thick, height, depth)), 0) for s in (-1, 1)]
    parts += [(Box((0, y, 0), (width, thick, depth)), 0) for y in (thick / 2, height - thick / 2)]
    parts.append((Box((0, height / 2, -depth / 2 + 0.005), (width, height, 0.01)), 0))
    inner = width - 2 * thick
    for k in range(1, boards):
        y = k * height / boards
        parts.append((Box((0, y, 0), (inner, thick, depth)), 1))
        if rng.random() < 0.6:  # a row of books on the board below
            book_h = min(U(rng, 0.15, 0.3), height / boards - 0.05)
            book_w = U(rng, 0.2, 0.6) * inner
            x = U(rng, -inner / 2 + book_w / 2, inner / 2 - book_w / 2)
            parts.append((Box((x, y - height / boards + thick / 2 + book_h / 2, 0), (book_w, book_h, depth * 0.8)), 2))
    return parts


def build_door(rng):
    width, height, thick = U(rng, 0.7, 1.0), U(rng, 1.9, 2.2), U(rng, 0.03, 0.06)
    parts = [(Box((0, height / 2, 0), (width, height, thick)), 0)]
    knob_x, knob_y = width / 2 - 0.08, U(rng, 0.9, 1.05)
    parts += [(Ellipsoid((knob_x, knob_y, s * (thick / 2 + 0.03)), (0.03, 0.03, 0.03)), 1) for s in (-1, 1)]
    if rng.random() < 0.6:  # frame around the slab
        f = 0.06
        parts += [(Box((s * (width / 2 + f / 2), (height + f) / 2, 0), (f, height + f, thick * 2)), 2) for s in (-1, 1)]
        parts.append((Box((0, height + f / 2, 0), (width + 2 * f, f, thick * 2)), 2))
    return parts


def build_monitor(rng):
    width = U(rng, 0.45, 0.8)
    screen_h, thick, neck_h, base_t = width * U(rng, 0.5, 0.75), U(rng, 0.02, 0.06), U(rng, 0.05, 0.2), 0.02
    parts = [(Box((0, base_t + neck_h + screen_h / 2, 0), (width, screen_h, thick)), 0),
             (Box((0, base_t + neck_h / 2 + 0.02, -thick), (U(rng, 0.04, 0.08), neck_h + 0.04, 0.03)), 1)]
    if rng.random() < 0.5:
        parts.append((Box((0, base_t / 2, -thick), (U(rng, 0.15, 0.3), base_t, U(rng, 0.12, 0.2))), 2))
    else:
        parts.append((Cylinder((0, base_t / 2, -thick), U(rng, 0.08, 0.14), base_t), 2))
    if rng.random() < 0.3:  # a bulky back, like an old CRT
        back_center = (0, base_t + neck_h + screen_h / 2, -thick / 2 - 0.1)
        parts.append((Box(back_center, (width * 0.7, screen_h * 0.7, 0.2)), 0))
    return parts


def build_toilet(rng):
    bowl_rx, bowl_ry, bowl_rz, bowl_y = U(rng, 0.17, 0.22), U(rng, 0.15, 0.22), U(rng, 0.22, 0.3), U(rng, 0.38, 0.45)
    tank_w, tank_h, tank_d = U(rng, 0.35, 0.5), U(rng, 0.3, 0.45), U(rng, 0.15, 0.22)
    return [(Ellipsoid((0, bowl_y, 0.05), (bowl_rx, bowl_ry, bowl_rz), y_range=(-1.0, 0.0)), 0),
            (Frustum((0, (bowl_y - bowl_ry * 0.5) / 2, 0.0), bowl_rx * 0.7, bowl_rx * 0.5, bowl_y - bowl_ry * 0.5), 0),
            (Torus((0, bowl_y + 0.02, 0.05), bowl_rx, 0.03, rot=rot_x(math.pi / 2)), 2),
            (Box((0, bowl_y + tank_h / 2, -bowl_rz - tank_d / 2 + 0.05), (tank_w, tank_h, tank_d)), 1)]


def build_sink(rng):
    radius, depth, height = U(rng, 0.2, 0.3), U(rng, 0.1, 0.18), U(rng, 0.75, 0.9)
    parts = [(Ellipsoid((0, height, 0), (radius * 1.2, depth, radius), y_range=(-1.0, 0.0)), 0),
             (Torus((0, height, 0), radius * 1.1, 0.03, rot=rot_x(math.pi / 2)), 0)]
    if rng.random() < 0.5:  # pedestal
        parts.append((Frustum((0, (height - depth) / 2, 0), radius * 0.5, radius * 0.3, height - depth), 1))
    else:  # vanity cabinet underneath
        parts.append((Box((0, (height - depth) / 2, 0), (radius * 2.6, height - depth, radius * 2.2)), 1))
    faucet_z = -radius - 0.05
    parts += [(Cylinder((0, height + 0.08, faucet_z), 0.015, 0.16), 2),
              (Cylinder((0, height + 0.16, faucet_z + 0.06), 0.012, 0.12, rot=ALONG_Z), 2)]
    return parts


def build_box(rng):
    w, h, d = U(rng, 0.3, 0.9), U(rng, 0.3, 0.9), U(rng, 0.3, 0.9)
    if rng.random() < 0.5:
        return [(Box((0, h / 2, 0), (w, h, d)), 0)]
    parts = [(Box((0, h / 2, 0), (w, h, d), faces=("+x", "-x", "-y", "+z", "-z")), 0)]  # open, flaps out
    for s in (-1, 1):
        flap = rot_z(-s * U(rng, 0.3, 1.2))
        hinge = np.array([s * w / 2, h, 0])
        parts.append((Box(hinge + flap @ np.array([s * w / 4, 0, 0]), (w / 2, 0.005, d), rot=flap), 1))
    return parts


def build_bin(rng):
    radius, height = U(rng, 0.15, 0.3), U(rng, 0.35, 0.8)
    if rng.random() < 0.3:  # square bin
        parts = [(Box((0, height / 2, 0), (2 * radius, height, 2 * radius), faces=("+x", "-x", "-y", "+z", "-z")), 0)]
    else:
        parts = [(Frustum((0, height / 2, 0), radius, radius * U(rng, 1.0, 1.25), height, top=False), 0)]
    if rng.random() < 0.3:  # swing lid
        parts.append((Ellipsoid((0, height, 0), (radius * 1.1, radius * 0.5, radius * 1.1), y_range=(0.0, 1.0)), 1))
    return parts


def build_bag(rng):
    w, h, d = U(rng, 0.3, 0.55), U(rng, 0.25, 0.45), U(rng, 0.1, 0.22)
    strap = U(rng, 0.15, 0.3) * w if rng.random() < 0.6 else U(rng, 0.4, 0.6)  # hand handle or shoulder strap
    return [(Box((0, h / 2, 0), (w, h, d)), 1),
            (Ellipsoid((0, h, 0), (w / 2, 0.04, d / 2), y_range=(0.0, 1.0)), 1),
            (Torus((0, h, 0), strap, 0.015, arc=(0.0, math.pi)), 0)]


def build_pillow(rng):
    rx, ry, rz = U(rng, 0.22, 0.4), U(rng, 0.05, 0.12), U(rng, 0.15, 0.28)
    parts = [(Ellipsoid((0, 0, 0), (rx, ry, rz)), 0)]
    # pinched corners make it a pillow rather than a plain ellipsoid
    parts += [(Ellipsoid((x, 0, z), (rx * 0.3, ry * 0.4, rz * 0.3)), 0) for x, z in corners(rx * 0.75, rz * 0.75)]
    return parts
