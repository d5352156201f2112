"""Templates of the detectable objects ("things"): cars, trucks, pedestrians, cyclists, sign plates.

Each template is a Mesh in the object's local frame (x forward, y left, z up, origin on the
ground under the centre) plus its 3D box. Pedestrian limbs carry bone ids for animation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.core.classes import semantic_id

from .meshes import (
    FACE_POS_Z,
    MAT_CLOTH,
    MAT_GLASS,
    MAT_LAMP,
    MAT_METAL,
    MAT_PLAIN,
    Mesh,
    MeshBuilder,
    box,
    ngon,
    prism,
)

CAR = semantic_id("car")
TRUCK = semantic_id("truck")
PEDESTRIAN = semantic_id("pedestrian")
CYCLIST = semantic_id("cyclist")
SIGN = semantic_id("traffic_sign")

BONE_LEFT_LEG, BONE_RIGHT_LEG, BONE_LEFT_ARM, BONE_RIGHT_ARM = 1, 2, 3, 4

_CAR_PALETTE = np.array(
    [[0.85, 0.85, 0.85], [0.55, 0.56, 0.58], [0.06, 0.06, 0.07], [0.6, 0.05, 0.04], [0.08, 0.15, 0.45],
     [0.25, 0.26, 0.28], [0.1, 0.3, 0.12], [0.75, 0.6, 0.1], [0.45, 0.32, 0.2], [0.9, 0.9, 0.82]]
)  # fmt: skip
_CLOTH = np.array(
    [[0.1, 0.1, 0.12], [0.15, 0.2, 0.4], [0.5, 0.1, 0.1], [0.8, 0.8, 0.75], [0.3, 0.35, 0.2], [0.55, 0.45, 0.3],
     [0.7, 0.5, 0.1], [0.35, 0.15, 0.4], [0.2, 0.45, 0.5], [0.45, 0.45, 0.45]]
)  # fmt: skip
_SKIN = np.array([[0.85, 0.65, 0.5], [0.6, 0.42, 0.3], [0.35, 0.22, 0.15], [0.9, 0.75, 0.62]])
_TYRE = (0.04, 0.04, 0.04)


@dataclass(frozen=True)
class Template:
    mesh: Mesh
    size: tuple[float, float, float]  # length (x), width (y), height (z) of the 3D box
    semantic: int
    hip: float = 0.0  # pivot heights of animated limbs (pedestrians)
    shoulder: float = 0.0


def _vary(rng: np.random.Generator, c: np.ndarray, amount: float = 0.06) -> np.ndarray:
    return np.clip(c * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, amount / 3, 3), 0.0, 1.0)


def _wheels(b: MeshBuilder, ln: float, w: float, r: float, inst: int, sem: int, axles: tuple[float, ...]) -> None:
    for ax in axles:
        for side in (-1.0, 1.0):
            b.add(box((2 * r, 0.24, 2 * r), (ax, side * (w / 2 - 0.1), r)), sem, _TYRE, MAT_PLAIN, inst)


def _lights(b: MeshBuilder, ln: float, w: float, z: float, inst: int, sem: int) -> None:
    for side in (-1.0, 1.0):
        b.add(box((0.06, 0.28, 0.12), (ln / 2, side * (w / 2 - 0.25), z)), sem, (1.0, 0.95, 0.8), MAT_LAMP, inst)
        b.add(box((0.06, 0.25, 0.12), (-ln / 2, side * (w / 2 - 0.25), z)), sem, (0.8, 0.05, 0.03), MAT_LAMP, inst)


def car(rng: np.random.Generator, inst: int) -> Template:
    ln, w, h = rng.uniform(3.8, 4.9), rng.uniform(1.68, 1.9), rng.uniform(1.38, 1.62)
    color = _vary(rng, _CAR_PALETTE[rng.integers(len(_CAR_PALETTE))])
    b = MeshBuilder()
    body_top = rng.uniform(0.85, 1.0)
    b.add(box((ln, w, body_top - 0.25), (0, 0, (body_top + 0.25) / 2)), CAR, color, MAT_METAL, inst)
    cab_l = ln * rng.uniform(0.45, 0.58)
    cab_x = -ln * rng.uniform(0.02, 0.1)
    cab = b.add(box((cab_l, w * 0.86, h - body_top), (cab_x, 0, (h + body_top) / 2)), CAR, (0.05, 0.07, 0.1),
                MAT_GLASS, inst)  # fmt: skip
    cab[2 * FACE_POS_Z : 2 * FACE_POS_Z + 2] = color  # roof in body colour
    _wheels(b, ln, w, 0.32, inst, CAR, (ln / 2 - 0.8, -ln / 2 + 0.8))
    _lights(b, ln, w, body_top - 0.2, inst, CAR)
    return Template(b.build(), (ln + 0.06, w + 0.04, h), CAR)


def truck(rng: np.random.Generator, inst: int) -> Template:
    cab_l, w = rng.uniform(1.8, 2.4), rng.uniform(2.3, 2.5)
    box_l, h = rng.uniform(4.5, 8.5), rng.uniform(3.1, 3.9)
    cab_h = rng.uniform(2.5, 2.9)
    ln = cab_l + 0.3 + box_l
    color = _vary(rng, _CAR_PALETTE[rng.integers(len(_CAR_PALETTE))])
    cargo = _vary(rng, np.array([0.85, 0.85, 0.85]) if rng.random() < 0.6 else _CAR_PALETTE[rng.integers(10)], 0.1)
    b = MeshBuilder()
    x_cab = ln / 2 - cab_l / 2
    b.add(box((cab_l, w, cab_h - 0.45), (x_cab, 0, (cab_h + 0.45) / 2)), TRUCK, color, MAT_METAL, inst)
    b.add(box((0.05, w * 0.85, 0.8), (ln / 2 + 0.005, 0, cab_h - 0.6)), TRUCK, (0.05, 0.07, 0.1), MAT_GLASS, inst)
    x_box = -ln / 2 + box_l / 2
    b.add(box((box_l, w, h - 0.6), (x_box, 0, (h + 0.6) / 2)), TRUCK, cargo, MAT_PLAIN, inst)
    b.add(box((ln - 0.4, w * 0.6, 0.3), (0, 0, 0.6)), TRUCK, (0.1, 0.1, 0.1), MAT_METAL, inst)  # chassis
    _wheels(b, ln, w, 0.45, inst, TRUCK, (ln / 2 - 1.0, -ln / 2 + 1.2, -ln / 2 + 2.6))
    _lights(b, ln, w, 0.8, inst, TRUCK)
    return Template(b.build(), (ln + 0.06, w + 0.04, h), TRUCK)


def pedestrian(rng: np.random.Generator, inst: int) -> Template:
    h = rng.uniform(1.5, 1.92)
    k = h / 1.75
    shirt = _vary(rng, _CLOTH[rng.integers(len(_CLOTH))])
    pants = _vary(rng, _CLOTH[rng.integers(len(_CLOTH))])
    skin = _vary(rng, _SKIN[rng.integers(len(_SKIN))], 0.04)
    hip, shoulder = 0.88 * k, 1.42 * k
    wid = rng.uniform(0.36, 0.46) * k
    b = MeshBuilder()
    for bone, y in ((BONE_LEFT_LEG, 0.1 * k), (BONE_RIGHT_LEG, -0.1 * k)):
        b.add(box((0.16 * k, 0.14 * k, hip), (0, y, hip / 2)), PEDESTRIAN, pants, MAT_CLOTH, inst, bone=bone)
    b.add(box((0.24 * k, wid, shoulder + 0.06 * k - hip + 0.04), (0, 0, (shoulder + 0.06 * k + hip - 0.04) / 2)),
          PEDESTRIAN, shirt, MAT_CLOTH, inst)  # fmt: skip
    arm_l = 0.62 * k
    for bone, y in ((BONE_LEFT_ARM, wid / 2 + 0.05 * k), (BONE_RIGHT_ARM, -wid / 2 - 0.05 * k)):
        b.add(box((0.1 * k, 0.09 * k, arm_l), (0, y, shoulder - arm_l / 2 + 0.04)), PEDESTRIAN, shirt, MAT_CLOTH,
              inst, bone=bone)  # fmt: skip
    head = 0.22 * k
    b.add(box((head, head * 0.85, h - shoulder - 0.08 * k), (0, 0, (h + shoulder + 0.08 * k) / 2)), PEDESTRIAN,
          skin, MAT_PLAIN, inst)  # fmt: skip
    if rng.random() < 0.3:  # backpack or bag
        b.add(box((0.16, wid * 0.8, 0.4 * k), (-0.2 * k, 0, shoulder - 0.25 * k)), PEDESTRIAN,
              _vary(rng, _CLOTH[rng.integers(len(_CLOTH))]), MAT_CLOTH, inst)  # fmt: skip
    return Template(b.build(), (0.9 * k, wid + 0.3 * k, h), PEDESTRIAN, hip=hip, shoulder=shoulder)


def cyclist(rng: np.random.Generator, inst: int) -> Template:
    frame_col = _vary(rng, _CAR_PALETTE[rng.integers(len(_CAR_PALETTE))])
    shirt = _vary(rng, _CLOTH[rng.integers(len(_CLOTH))])
    pants = _vary(rng, _CLOTH[rng.integers(len(_CLOTH))])
    skin = _vary(rng, _SKIN[rng.integers(len(_SKIN))], 0.04)
    b = MeshBuilder()
    r = 0.34
    wheel = ngon(12, r)
    for x in (0.55, -0.55):
        v, t = prism(wheel, -0.025, 0.025)  # disc in xy, thin along z -> rotate to the xz plane
        v = v[:, [0, 2, 1]] + np.array([x, 0.0, r], np.float32)
        b.add((v, t), CYCLIST, _TYRE, MAT_PLAIN, inst)
    b.add(box((1.0, 0.05, 0.06), (0, 0, 0.6)), CYCLIST, frame_col, MAT_METAL, inst)
    b.add(box((0.06, 0.05, 0.5), (-0.15, 0, 0.65)), CYCLIST, frame_col, MAT_METAL, inst)
    b.add(box((0.06, 0.5, 0.04), (0.48, 0, 1.0)), CYCLIST, (0.1, 0.1, 0.1), MAT_METAL, inst)  # handlebar
    # rider: legs to the pedals, torso leaning forward, arms to the bar, head
    for y in (0.1, -0.1):
        b.add(box((0.14, 0.13, 0.75), (-0.1, y, 0.62)), CYCLIST, pants, MAT_CLOTH, inst)
    b.add(box((0.5, 0.38, 0.55), (0.05, 0, 1.25)), CYCLIST, shirt, MAT_CLOTH, inst)
    for y in (0.2, -0.2):
        b.add(box((0.45, 0.08, 0.09), (0.3, y, 1.2)), CYCLIST, shirt, MAT_CLOTH, inst)
    b.add(box((0.22, 0.19, 0.24), (0.22, 0, 1.67)), CYCLIST, skin, MAT_PLAIN, inst)
    if rng.random() < 0.5:  # helmet
        b.add(box((0.28, 0.22, 0.08), (0.22, 0, 1.82)), CYCLIST, _vary(rng, _CLOTH[rng.integers(10)]), MAT_PLAIN,
              inst)  # fmt: skip
    return Template(b.build(), (1.8, 0.6, 1.86), CYCLIST)


_SIGN_COLORS = {
    "red": (0.75, 0.05, 0.05),
    "blue": (0.05, 0.2, 0.6),
    "yellow": (0.9, 0.7, 0.05),
    "white": (0.9, 0.9, 0.88),
    "green": (0.05, 0.4, 0.15),
}


def sign_plate(rng: np.random.Generator, inst: int) -> Template:
    """A plate in the local yz plane facing +x (front colour), back and rim grey metal."""
    shape = rng.integers(4)
    if shape == 0:
        poly, colour = ngon(4, 0.42, np.pi / 4), "blue"  # square
    elif shape == 1:
        poly, colour = ngon(3, 0.5, np.pi / 2), ("red" if rng.random() < 0.5 else "white")  # triangle
    elif shape == 2:
        poly, colour = ngon(12, 0.32), ("red" if rng.random() < 0.6 else "blue")  # round
    else:
        poly, colour = np.array([[-0.55, -0.3], [0.55, -0.3], [0.55, 0.3], [-0.55, 0.3]]), "green"  # direction
    thick = 0.04
    v, t = prism(poly, -thick / 2, thick / 2)
    v = v[:, [2, 0, 1]]  # thickness along x, polygon in (y, z)
    zc = float(-poly[:, 1].min())
    v = v + np.array([0.0, 0.0, zc], np.float32)
    b = MeshBuilder()
    col = b.add((v, t), SIGN, (0.5, 0.5, 0.52), MAT_METAL, inst)
    k = len(poly)
    col[2 * k + (k - 2) :] = _vary(rng, np.array(_SIGN_COLORS[colour]), 0.05)  # top cap (+x) is the front
    height = float(poly[:, 1].max() - poly[:, 1].min())
    width = float(poly[:, 0].max() - poly[:, 0].min())
    return Template(b.build(), (thick, width, height), SIGN)

