"""Shape families of vehicles, tools, instruments and small objects, built like those in furniture.py."""

from __future__ import annotations

import math

import numpy as np

from .primitives import ALONG_X, ALONG_Z, Box, Cylinder, Ellipsoid, Frustum, Torus, U, corners, rot_x, rot_y, rot_z


def build_airplane(rng):
    length, radius = U(rng, 1.6, 2.4), U(rng, 0.07, 0.14)
    span, chord, sweep = U(rng, 1.2, 2.4), U(rng, 0.2, 0.45), U(rng, 0.0, 0.5)
    wing_x = U(rng, -0.1, 0.15) * length
    parts = [(Ellipsoid((0, 0, 0), (length / 2, radius, radius)), 0)]
    for s in (-1, 1):  # swept half wings
        sweep_rot = rot_y(s * sweep)
        center = np.array([wing_x, -radius * 0.3, 0]) + sweep_rot @ np.array([0, 0, s * span / 4])
        parts.append((Box(center, (chord, 0.03, span / 2), rot=sweep_rot), 1))
    fin_h, tail_x = U(rng, 0.2, 0.4), -length / 2 + 0.12
    parts += [(Box((tail_x, radius * 0.5 + fin_h / 2, 0), (U(rng, 0.15, 0.3), fin_h, 0.02)), 2),
              (Box((tail_x, radius * 0.3, 0), (0.15, 0.02, U(rng, 0.4, 0.8))), 2)]
    if rng.random() < 0.85:
        per_side = int(rng.integers(1, 3))
        for s in (-1, 1):
            for k in range(per_side):
                z = s * span * (0.15 + 0.15 * k)
                x = wing_x + 0.1 - math.tan(sweep) * abs(z) * 0.5
                parts.append((Cylinder((x, -radius - 0.05, z), U(rng, 0.04, 0.07), U(rng, 0.2, 0.35), rot=ALONG_X), 3))
    return parts


def build_car(rng):
    length, width, body_h, wheel_r = U(rng, 1.6, 2.2), U(rng, 0.7, 0.9), U(rng, 0.3, 0.45), U(rng, 0.15, 0.22)
    cabin_l, cabin_h, cabin_x = length * U(rng, 0.35, 0.6), U(rng, 0.25, 0.4), U(rng, -0.2, 0.05) * length
    body_y = wheel_r * 0.8 + body_h / 2
    top = body_y + body_h / 2
    hood_l = length / 2 - (cabin_x + cabin_l / 2)
    parts = [(Box((0, body_y, 0), (length, body_h, width), faces=("+x", "-x", "-y", "+z", "-z")), 3),
             (Box((-(length / 2 - (length - hood_l) / 2), top, 0), (length - hood_l, 0.0, width), faces=("+y",)), 3),
             (Box((length / 2 - hood_l / 2, top + 0.01, 0), (hood_l, 0.02, width)), 1),
             (Box((cabin_x, top + cabin_h / 2, 0), (cabin_l, cabin_h, width * 0.85)), 0)]
    for x, z in corners(length / 2 - wheel_r * 1.4, width / 2):
        parts.append((Cylinder((x, wheel_r, z), wheel_r, U(rng, 0.1, 0.15), rot=ALONG_Z), 2))
    return parts


def build_lamp(rng):
    base_r, pole_h = U(rng, 0.1, 0.25), U(rng, 0.5, 1.4)
    shade_rb, shade_rt, shade_h = U(rng, 0.15, 0.3), U(rng, 0.06, 0.15), U(rng, 0.15, 0.3)
    parts = [(Cylinder((0, 0.02, 0), base_r, 0.04), 0)]
    if rng.random() < 0.35:  # desk lamp: bent arm, shade pointing down-forward
        lean = U(rng, 0.3, 0.8)
        arm = rot_z(-lean)
        parts.append((Cylinder((0, 0.04 + pole_h / 4, 0), 0.015, pole_h / 2, bottom=False, top=False), 1))
        elbow = np.array([0, 0.04 + pole_h / 2, 0])
        parts.append((Cylinder(elbow + arm @ np.array([0, pole_h / 4, 0]), 0.015, pole_h / 2, rot=arm,
                               bottom=False, top=False), 1))
        head = elbow + arm @ np.array([0, pole_h / 2, 0])
        tilt = rot_z(-lean - 2.2)
        parts.append((Frustum(head + tilt @ np.array([0, shade_h / 2, 0]), shade_rt, shade_rb, shade_h, rot=tilt,
                              bottom=False, top=False), 2))
        parts.append((Ellipsoid(head + tilt @ np.array([0, shade_h * 0.6, 0]), (0.04, 0.04, 0.04)), 3))
        return parts
    shade_y = 0.04 + pole_h
    parts += [(Cylinder((0, 0.04 + pole_h / 2, 0), U(rng, 0.01, 0.03), pole_h, bottom=False, top=False), 1),
              (Frustum((0, shade_y, 0), shade_rb, shade_rt, shade_h, bottom=False, top=False), 2),
              (Ellipsoid((0, shade_y - shade_h * 0.2, 0), (0.05, 0.06, 0.05)), 3)]
    return parts


def build_mug(rng):
    radius, height = U(rng, 0.25, 0.4), U(rng, 0.5, 0.9)
    loop = U(rng, 0.25, 0.4) * height
    return [(Frustum((0, height / 2, 0), radius, radius * U(rng, 1.0, 1.15), height, top=False), 1),
            (Torus((radius + loop * 0.5, height * 0.55, 0), loop, U(rng, 0.02, 0.04),
                   arc=(-math.pi / 2, math.pi / 2)), 0)]


def build_bottle(rng):
    radius, body_h = U(rng, 0.1, 0.2), U(rng, 0.4, 0.7)
    neck_r, shoulder_h, neck_h = U(rng, 0.03, 0.06), U(rng, 0.05, 0.15), U(rng, 0.08, 0.2)
    return [(Cylinder((0, body_h / 2, 0), radius, body_h, top=False), 0),
            (Frustum((0, body_h + shoulder_h / 2, 0), radius, neck_r, shoulder_h, bottom=False, top=False), 0),
            (Cylinder((0, body_h + shoulder_h + neck_h / 2, 0), neck_r, neck_h, bottom=False, top=False), 1),
            (Cylinder((0, body_h + shoulder_h + neck_h + 0.02, 0), neck_r * 1.2, 0.04), 1)]


def build_bowl(rng):
    radius, depth = U(rng, 0.4, 0.6), U(rng, 0.15, 0.35)
    parts = [(Ellipsoid((0, depth, 0), (radius, depth, radius), y_range=(-1.0, 0.0)), 0),
             (Torus((0, depth, 0), radius, 0.015, rot=rot_x(math.pi / 2)), 0)]
    if rng.random() < 0.6:
        parts.append((Cylinder((0, 0.01, 0), radius * U(rng, 0.3, 0.5), 0.03, top=False), 1))
    return parts


def build_cone(rng):
    radius, height = U(rng, 0.2, 0.5), U(rng, 0.4, 1.0)
    parts = [(Frustum((0, height / 2, 0), radius, radius * U(rng, 0.0, 0.1), height), 0)]
    if rng.random() < 0.5:  # traffic cone foot
        parts.append((Box((0, 0.01, 0), (radius * 2.4, 0.02, radius * 2.4)), 1))
    return parts


def build_guitar(rng):
    lower, upper, thick = U(rng, 0.17, 0.24), U(rng, 0.12, 0.17), U(rng, 0.04, 0.07)
    neck_l, head_l = U(rng, 0.45, 0.65), U(rng, 0.12, 0.2)
    body_top = 2 * lower * 0.95 + upper
    return [(Ellipsoid((0, lower, 0), (lower, lower * 1.1, thick)), 2),
            (Ellipsoid((0, 2 * lower * 0.95, 0), (upper, upper, thick)), 2),
            (Box((0, body_top + neck_l / 2 - 0.05, 0), (0.06, neck_l, 0.03)), 1),
            (Box((0, body_top + neck_l + head_l / 2 - 0.06, -0.015), (0.09, head_l, 0.025),
                 rot=rot_x(U(rng, 0.1, 0.3))), 0)]


def build_laptop(rng):
    width, depth, thick = U(rng, 0.3, 0.42), U(rng, 0.2, 0.3), U(rng, 0.012, 0.025)
    opening = math.radians(U(rng, 95, 130))
    screen_depth = depth * U(rng, 0.9, 1.0)
    hinge = np.array([0, thick, -depth / 2])
    direction = np.array([0, math.sin(opening), math.cos(opening)])  # from the hinge along the lid
    return [(Box((0, thick / 2, 0), (width, thick, depth)), 0),
            (Box(hinge + direction * screen_depth / 2, (width, 0.008, screen_depth), rot=rot_x(-opening)), 1)]


def build_loudspeaker(rng):
    width, height, depth = U(rng, 0.2, 0.4), U(rng, 0.3, 0.8), U(rng, 0.2, 0.35)
    parts = [(Box((0, height / 2, 0), (width, height, depth)), 0)]
    drivers = int(rng.integers(1, 4))
    for k in range(drivers):
        r = min(width * 0.4, height / drivers * 0.4) * (0.6 if k == 0 and drivers > 1 else 1.0)
        y = height * (drivers - k - 0.5) / drivers
        parts.append((Frustum((0, y, depth / 2 - 0.02), r * 0.3, r, 0.04, rot=ALONG_Z, bottom=True, top=False), 1))
    return parts


def build_rifle(rng):
    barrel_l, body_l, stock_l = U(rng, 0.35, 0.6), U(rng, 0.25, 0.4), U(rng, 0.25, 0.35)
    parts = [(Cylinder((body_l / 2 + barrel_l / 2, 0.02, 0), U(rng, 0.01, 0.018), barrel_l, rot=ALONG_X), 0),
             (Box((0, 0, 0), (body_l, U(rng, 0.06, 0.1), 0.045)), 1),
             (Box((-body_l / 2 - stock_l / 2, -0.02, 0), (stock_l, U(rng, 0.08, 0.13), 0.04),
                  rot=rot_z(U(rng, 0.0, 0.15))), 2),
             (Box((-body_l / 4, -0.08, 0), (0.04, 0.1, 0.035), rot=rot_z(-0.3)), 1)]
    if rng.random() < 0.7:
        parts.append((Box((body_l / 6, -0.08, 0), (0.05, U(rng, 0.08, 0.15), 0.03), rot=rot_z(0.15)), 1))
    if rng.random() < 0.5:  # scope
        parts.append((Cylinder((0, 0.08, 0), 0.02, body_l * 0.8, rot=ALONG_X), 1))
    return parts


def build_telephone(rng):
    if rng.random() < 0.65:  # smartphone standing up
        w, h, t = U(rng, 0.065, 0.09), U(rng, 0.12, 0.17), U(rng, 0.007, 0.012)
        return [(Box((0, h / 2, 0), (w, h, t)), 0),
                (Box((0, h / 2, t / 2 + 0.001), (w * 0.9, h * 0.85, 0.002)), 1),
                (Cylinder((-w * 0.25, h * 0.85, -t / 2 - 0.002), 0.008, 0.004, rot=ALONG_Z), 2)]
    w, d, h = U(rng, 0.15, 0.22), U(rng, 0.15, 0.22), U(rng, 0.05, 0.08)  # desk phone with handset
    return [(Box((0, h / 2, 0), (w, h, d)), 0),
            (Cylinder((0, h + 0.025, -d * 0.2), 0.022, w * 1.1, rot=ALONG_X), 2),
            (Box((0, h + 0.002, d * 0.15), (w * 0.6, 0.004, d * 0.45)), 1)]


def build_watercraft(rng):
    length, width, depth = U(rng, 1.5, 2.5), U(rng, 0.35, 0.7), U(rng, 0.15, 0.35)
    parts = [(Ellipsoid((0, 0, 0), (length / 2, depth, width / 2), y_range=(-1.0, 0.0)), 0),
             (Box((0, 0, 0), (length * 0.95, 0.0, width * 0.9), faces=("+y",)), 1)]
    if rng.random() < 0.4:  # sailboat
        mast_h = U(rng, 0.8, 1.6)
        parts += [(Cylinder((length * 0.1, mast_h / 2, 0), 0.015, mast_h), 2),
                  (Box((-length * 0.1, mast_h * 0.5, 0), (length * 0.35, mast_h * 0.8, 0.005)), 2)]
    else:  # motor ship: stacked cabins and a funnel
        levels = int(rng.integers(1, 3))
        for k in range(levels):
            cabin_l = length * U(rng, 0.2, 0.4) * (1 - 0.3 * k)
            cabin_h = U(rng, 0.1, 0.2)
            cabin_w = width * (0.6 - 0.1 * k)
            parts.append((Box((-length * 0.1, cabin_h / 2 + k * 0.18, 0), (cabin_l, cabin_h, cabin_w)), 2))
        parts.append((Cylinder((-length * 0.25, 0.25 + 0.1 * levels, 0), 0.05, 0.25), 2))
    return parts


def build_cap(rng):
    radius = U(rng, 0.25, 0.35)
    visor = U(rng, 0.15, 0.25)
    return [(Ellipsoid((0, 0, 0), (radius, radius * U(rng, 0.6, 0.9), radius), y_range=(0.0, 1.0)), 1),
            (Ellipsoid((0, radius * 0.75, 0), (0.03, 0.02, 0.03)), 1),
            (Box((0, 0.01, radius + visor / 2 - 0.05), (radius * 1.6, 0.01, visor), rot=rot_x(U(rng, 0.0, 0.25))), 0)]


def build_earphone(rng):
    radius, cup_r, cup_t = U(rng, 0.3, 0.45), U(rng, 0.1, 0.18), U(rng, 0.05, 0.1)
    cord_l = U(rng, 0.3, 0.6)
    return [(Torus((0, 0, 0), radius, U(rng, 0.015, 0.03), arc=(0.1, math.pi - 0.1)), 1),
            (Cylinder((radius, -cup_r * 0.5, 0), cup_r, cup_t, rot=ALONG_X), 0),
            (Cylinder((-radius, -cup_r * 0.5, 0), cup_r, cup_t, rot=ALONG_X), 0),
            (Cylinder((-radius, -cup_r * 1.5 - cord_l / 2, 0), 0.008, cord_l, bottom=False, top=False), 2)]


def build_knife(rng):
    blade_l, blade_w, handle_l = U(rng, 0.15, 0.3), U(rng, 0.025, 0.05), U(rng, 0.1, 0.14)
    parts = [(Box((blade_l * 0.4, 0, 0), (blade_l * 0.8, blade_w, 0.004)), 0),
             (Box((blade_l * 0.85, blade_w * 0.15, 0), (blade_l * 0.3, blade_w * 0.6, 0.004), rot=rot_z(0.25)), 0),
             (Box((-handle_l / 2, 0, 0), (handle_l, blade_w * 0.9, U(rng, 0.015, 0.025))), 1)]
    if rng.random() < 0.5:  # guard
        parts.append((Box((0, 0, 0), (0.01, blade_w * 1.6, 0.025)), 1))
    return parts


def build_motorbike(rng):
    wheelbase, wheel_r = U(rng, 1.2, 1.6), U(rng, 0.25, 0.35)
    front, rear = np.array([wheelbase / 2, wheel_r, 0]), np.array([-wheelbase / 2, wheel_r, 0])
    frame_y = wheel_r * 1.6
    parts = [(Torus(front, wheel_r, 0.05), 2), (Torus(rear, wheel_r, 0.05), 2),
             (Cylinder(front, wheel_r * 0.3, 0.06, rot=ALONG_Z), 2),
             (Cylinder(rear, wheel_r * 0.3, 0.06, rot=ALONG_Z), 2),
             (Box((0, frame_y - 0.1, 0), (wheelbase * 0.6, U(rng, 0.2, 0.3), 0.2)), 5),  # engine block
             (Box((-wheelbase * 0.3, frame_y, 0), (wheelbase * 0.45, 0.06, 0.08), rot=rot_z(0.2)), 5)]
    fork = rot_z(U(rng, 0.3, 0.5))
    fork_l = frame_y + 0.35 - wheel_r
    parts.append((Cylinder(front + fork @ np.array([0, fork_l / 2, 0]), 0.025, fork_l, rot=fork), 5))
    bar = front + fork @ np.array([0, fork_l, 0])
    parts += [(Ellipsoid((wheelbase * 0.12, frame_y + 0.15, 0), (0.25, 0.12, 0.14)), 0),
              (Box((-wheelbase * 0.18, frame_y + 0.1, 0), (0.4, 0.08, 0.22)), 1),
              (Cylinder(bar, 0.015, U(rng, 0.5, 0.7), rot=ALONG_Z), 3),
              (Ellipsoid(bar + np.array([0.08, -0.1, 0]), (0.05, 0.07, 0.07)), 4)]
    return parts


def build_pistol(rng):
    slide_l, slide_h = U(rng, 0.16, 0.24), U(rng, 0.03, 0.045)
    grip_l, grip_angle = U(rng, 0.1, 0.14), U(rng, 0.15, 0.35)
    grip = rot_z(grip_angle)
    grip_top = np.array([-slide_l * 0.35, -slide_h / 2, 0])
    return [(Box((0, 0, 0), (slide_l, slide_h, 0.03)), 0),
            (Cylinder((slide_l / 2 + 0.01, slide_h * 0.15, 0), 0.008, 0.03, rot=ALONG_X), 0),
            (Box(grip_top + grip @ np.array([0, -grip_l / 2, 0]), (0.035, grip_l, 0.028), rot=grip), 1),
            (Torus((-slide_l * 0.1, -slide_h / 2 - 0.012, 0), 0.02, 0.003, arc=(math.pi, 2 * math.pi)), 2),
            (Box((-slide_l * 0.12, -slide_h / 2 - 0.012, 0), (0.006, 0.02, 0.008), rot=rot_z(0.3)), 2)]


def build_rocket(rng):
    radius, height, nose_h = U(rng, 0.07, 0.14), U(rng, 0.8, 1.4), U(rng, 0.15, 0.35)
    fins, fin_h, fin_w = int(rng.integers(3, 5)), U(rng, 0.15, 0.3), U(rng, 0.08, 0.15)
    parts = [(Cylinder((0, height / 2, 0), radius, height, top=False), 0),
             (Frustum((0, height + nose_h / 2, 0), radius, 0.0, nose_h, bottom=False, top=False), 2)]
    for k in range(fins):
        spin = rot_y(2 * math.pi * k / fins)
        parts.append((Box(spin @ np.array([radius + fin_w / 2, fin_h / 2, 0]), (fin_w, fin_h, 0.01), rot=spin), 1))
    return parts


def build_skateboard(rng):
    length, width, deck_y = U(rng, 0.7, 0.85), U(rng, 0.18, 0.24), 0.1
    kick = U(rng, 0.2, 0.45)
    flat = length * 0.8
    parts = [(Box((0, deck_y, 0), (flat, 0.015, width)), 1)]
    for s in (-1, 1):
        tilt = rot_z(s * kick)
        parts.append((Box(np.array([s * flat / 2, deck_y, 0]) + tilt @ np.array([s * length * 0.06, 0, 0]),
                          (length * 0.12, 0.015, width), rot=tilt), 1))
        parts.append((Box((s * flat * 0.35, deck_y - 0.03, 0), (0.05, 0.04, width * 0.8)), 2))
        parts += [(Cylinder((s * flat * 0.35, 0.03, z * width * 0.42), 0.03, 0.03, rot=ALONG_Z), 0) for z in (-1, 1)]
    return parts
