"""Triangle-mesh primitives and a builder that tags every triangle with render attributes.

Every triangle carries: semantic id, instance (track) id, albedo colour (linear RGB 0..1),
material kind (selects the procedural texture in the shader), two material parameters and the
index of the part it was added with (domain randomisation recolours whole parts). A pattern
(procedural texture over the albedo) is only present on domain-randomised meshes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# material kinds understood by the shader (render.py)
MAT_PLAIN = 0
MAT_ASPHALT = 1
MAT_PAINT = 2
MAT_PAVING = 3
MAT_FACADE = 4
MAT_FOLIAGE = 5
MAT_GRASS = 6
MAT_GLASS = 7
MAT_LAMP = 8
MAT_CLOTH = 9
MAT_METAL = 10
NUM_MATERIALS = 11

# procedural textures of domain randomisation (Mesh.pattern columns and kinds)
PAT_KIND, PAT_FREQ, PAT_COS, PAT_SIN, PAT_RATIO = 0, 1, 2, 3, 4  # ratio: 3 columns, second colour / albedo
PATTERN_COLS = 7
PAT_NONE, PAT_STRIPES, PAT_CHECKER, PAT_BLOTCH, PAT_NOISE = 0, 1, 2, 3, 4

# box faces in this order, two triangles each: -x, +x, -y, +y, -z, +z
FACE_NEG_X, FACE_POS_X, FACE_NEG_Y, FACE_POS_Y, FACE_NEG_Z, FACE_POS_Z = range(6)

_BOX_CORNERS = np.array(
    [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=np.float32
)
# corner index = 4*ix + 2*iy + iz
_BOX_TRIS = np.array(
    [
        [0, 1, 3], [0, 3, 2],  # -x
        [4, 6, 7], [4, 7, 5],  # +x
        [0, 4, 5], [0, 5, 1],  # -y
        [2, 3, 7], [2, 7, 6],  # +y
        [0, 2, 6], [0, 6, 4],  # -z
        [1, 5, 7], [1, 7, 3],  # +z
    ],
    dtype=np.int64,
)  # fmt: skip


def box(size: tuple[float, float, float], center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[
    np.ndarray, np.ndarray
]:
    """Axis-aligned box: (8, 3) vertices and (12, 2 per face in FACE_* order) triangles."""
    v = _BOX_CORNERS * np.asarray(size, np.float32) + np.asarray(center, np.float32)
    return v.astype(np.float32), _BOX_TRIS.copy()


def prism(polygon: np.ndarray, z0: float, z1: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertical prism over a convex polygon (k, 2) in the xy plane between heights z0 and z1."""
    k = len(polygon)
    bottom = np.column_stack([polygon, np.full(k, z0)])
    top = np.column_stack([polygon, np.full(k, z1)])
    v = np.concatenate([bottom, top]).astype(np.float32)
    tris = []
    for i in range(k):
        j = (i + 1) % k
        tris += [[i, j, k + j], [i, k + j, k + i]]
    for i in range(1, k - 1):
        tris += [[0, i + 1, i], [k, k + i, k + i + 1]]
    return v, np.array(tris, dtype=np.int64)


def ngon(k: int, radius: float, phase: float = 0.0) -> np.ndarray:
    a = phase + np.arange(k) * 2.0 * np.pi / k
    return np.column_stack([np.cos(a), np.sin(a)]) * radius


def icosphere(radius: tuple[float, float, float], jitter: float, rng: np.random.Generator) -> tuple[
    np.ndarray, np.ndarray
]:
    """Icosahedron scaled to an ellipsoid with random radial jitter (tree crowns, bushes)."""
    p = (1.0 + 5.0**0.5) / 2.0
    v = np.array(
        [[-1, p, 0], [1, p, 0], [-1, -p, 0], [1, -p, 0], [0, -1, p], [0, 1, p],
         [0, -1, -p], [0, 1, -p], [p, 0, -1], [p, 0, 1], [-p, 0, -1], [-p, 0, 1]],
        dtype=np.float64,
    )  # fmt: skip
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v *= 1.0 + jitter * rng.uniform(-1.0, 1.0, (12, 1))
    t = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=np.int64,
    )  # fmt: skip
    return (v * np.asarray(radius)).astype(np.float32), t


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotate(v: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """``v @ rot.T`` for (N, 3) points, float32, without BLAS.

    numpy's matmul hands these skinny products to a multithreaded BLAS whose spinning threads
    fight open3d's for the cores; elementwise products are both faster and contention-free."""
    r = np.asarray(rot, np.float32)
    v = np.asarray(v, np.float32)
    out = v[:, 0:1] * r[:, 0]
    out += v[:, 1:2] * r[:, 1]
    out += v[:, 2:3] * r[:, 2]
    return out


def dot3(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``v @ w`` for (N, 3) rows and one 3-vector, without BLAS."""
    w = np.asarray(w, np.float32)
    return v[:, 0] * w[0] + v[:, 1] * w[1] + v[:, 2] * w[2]


def transform(v: np.ndarray, rot: np.ndarray, t: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    return rotate(v, rot) + np.asarray(t, np.float32)


@dataclass(frozen=True)
class Mesh:
    """A triangle soup with per-triangle attributes (see module docstring)."""

    vertices: np.ndarray  # (V, 3) float32
    triangles: np.ndarray  # (T, 3) uint32
    semantic: np.ndarray  # (T,) uint8
    instance: np.ndarray  # (T,) int32
    color: np.ndarray  # (T, 3) float32
    material: np.ndarray  # (T,) uint8
    param: np.ndarray  # (T, 2) float32
    bone: np.ndarray  # (V,) uint8: animated part of each vertex (0 = rigid body)
    part: np.ndarray  # (T,) int32: index of the MeshBuilder.add call that made the triangle
    # (T, PATTERN_COLS) float32 procedural texture per triangle (randomize.py), None = plain albedo
    pattern: np.ndarray | None = None

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)


class MeshBuilder:
    """Accumulates parts; ``build()`` returns one Mesh."""

    def __init__(self) -> None:
        self._v: list[np.ndarray] = []
        self._t: list[np.ndarray] = []
        self._sem: list[np.ndarray] = []
        self._inst: list[np.ndarray] = []
        self._col: list[np.ndarray] = []
        self._mat: list[np.ndarray] = []
        self._par: list[np.ndarray] = []
        self._bone: list[np.ndarray] = []
        self._part: list[np.ndarray] = []
        self._nv = 0

    def add(
        self,
        vt: tuple[np.ndarray, np.ndarray],
        semantic: int,
        color: tuple[float, float, float] | np.ndarray,
        material: int = MAT_PLAIN,
        instance: int = 0,
        param: tuple[float, float] = (0.0, 0.0),
        bone: int = 0,
    ) -> np.ndarray:
        """Add a part; returns its per-triangle colour array (writable, to recolour faces)."""
        v, t = vt
        n = len(t)
        self._v.append(np.asarray(v, np.float32))
        self._t.append(np.asarray(t, np.int64) + self._nv)
        self._nv += len(v)
        self._sem.append(np.full(n, semantic, np.uint8))
        self._inst.append(np.full(n, instance, np.int32))
        col = np.tile(np.asarray(color, np.float32), (n, 1))
        self._col.append(col)
        self._mat.append(np.full(n, material, np.uint8))
        self._par.append(np.tile(np.asarray(param, np.float32), (n, 1)))
        self._bone.append(np.full(len(v), bone, np.uint8))
        self._part.append(np.full(n, len(self._part), np.int32))
        return col

    def build(self) -> Mesh:
        if not self._v:
            z = np.zeros
            return Mesh(z((0, 3), np.float32), z((0, 3), np.uint32), z(0, np.uint8), z(0, np.int32),
                        z((0, 3), np.float32), z(0, np.uint8), z((0, 2), np.float32), z(0, np.uint8),
                        z(0, np.int32))  # fmt: skip
        return Mesh(
            vertices=np.concatenate(self._v).astype(np.float32),
            triangles=np.concatenate(self._t).astype(np.uint32),
            semantic=np.concatenate(self._sem),
            instance=np.concatenate(self._inst),
            color=np.concatenate(self._col),
            material=np.concatenate(self._mat),
            param=np.concatenate(self._par),
            bone=np.concatenate(self._bone),
            part=np.concatenate(self._part),
        )


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals (T, 3) float32 of triangles (zero-area triangles get +z)."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), np.array([0.0, 0.0, 1.0], np.float32))
    return n.astype(np.float32)
