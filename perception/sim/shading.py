"""Procedural shading, vectorised in float32.

Lighting is directional (sun) + hemispheric ambient and normals are per triangle, so the
lit colour of each triangle is precomputed once per world (static) or per frame (things), for
its side facing the camera. Per pixel there remain: one table gather, a world-anchored noise
texture (fine + coarse), facade windows and paving joints, specular glints on metal and glass,
haze, exposure and an sRGB lookup table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .lighting import Lighting
from .meshes import (
    MAT_ASPHALT,
    MAT_CLOTH,
    MAT_FACADE,
    MAT_FOLIAGE,
    MAT_GLASS,
    MAT_GRASS,
    MAT_LAMP,
    MAT_METAL,
    MAT_PAINT,
    MAT_PAVING,
    MAT_PLAIN,
    NUM_MATERIALS,
    PAT_BLOTCH,
    PAT_CHECKER,
    PAT_COS,
    PAT_FREQ,
    PAT_KIND,
    PAT_NONE,
    PAT_RATIO,
    PAT_SIN,
    dot3,
)

TEX_BITS = 9
TEX_SIZE = 1 << TEX_BITS
_MASK = TEX_SIZE - 1
COARSE_SHIFT = 3  # the smooth noise is sampled 8x slower than the fine noise

# per material: texels per metre, fine-noise amplitude, coarse-noise amplitude
TEX_SCALE = np.zeros(NUM_MATERIALS, np.float32)
TEX_AMP = np.zeros(NUM_MATERIALS, np.float32)
TEX_COARSE = np.zeros(NUM_MATERIALS, np.float32)
for _m, _s, _a, _c in (
    (MAT_PLAIN, 8, 0.08, 0.1), (MAT_ASPHALT, 24, 0.22, 0.3), (MAT_PAINT, 12, 0.12, 0.2),
    (MAT_PAVING, 10, 0.12, 0.2), (MAT_FACADE, 5, 0.1, 0.25), (MAT_FOLIAGE, 14, 0.5, 0.3),
    (MAT_GRASS, 8, 0.35, 0.45), (MAT_GLASS, 3, 0.05, 0.0), (MAT_LAMP, 1, 0.0, 0.0),
    (MAT_CLOTH, 18, 0.15, 0.0), (MAT_METAL, 6, 0.04, 0.0),
):  # fmt: skip
    TEX_SCALE[_m], TEX_AMP[_m], TEX_COARSE[_m] = _s, _a, _c

WINDOW_DARK = np.array([0.05, 0.06, 0.08], np.float32)
WINDOW_LIT = np.array([0.5, 0.45, 0.35], np.float32)


@lru_cache(maxsize=2)
def noise_texture(smooth: bool = False) -> np.ndarray:
    """Fixed multi-octave value noise in [-1, 1], flattened (TEX_SIZE**2,) float32; ``smooth``
    keeps only the low octaves (for the slowly varying stains and patches)."""
    import cv2

    rng = np.random.default_rng(12346 if smooth else 12345)
    acc = np.zeros((TEX_SIZE, TEX_SIZE), np.float32)
    amp, total = 1.0, 0.0
    for cells in (4, 8, 16, 32) if smooth else (8, 16, 32, 64, 128, 512):
        g = rng.standard_normal((cells, cells)).astype(np.float32)
        interp = cv2.INTER_CUBIC if cells < TEX_SIZE else cv2.INTER_NEAREST
        acc += amp * cv2.resize(g, (TEX_SIZE, TEX_SIZE), interpolation=interp)
        total += amp
        amp *= 0.7
    acc /= total
    return np.clip(acc / (3.0 * acc.std()), -1.0, 1.0).astype(np.float32).reshape(-1)


_PAT_NOISE = 128  # side of the procedural textures' noise (small: stays in cache)


@lru_cache(maxsize=1)
def pattern_noise() -> np.ndarray:
    """The smooth noise at 128x128 texels in [-1, 1], flattened, for domain-randomisation textures."""
    import cv2

    n = cv2.resize(noise_texture(True).reshape(TEX_SIZE, TEX_SIZE), (_PAT_NOISE, _PAT_NOISE),
                   interpolation=cv2.INTER_AREA)  # fmt: skip
    return np.clip(n / (2.0 * n.std()), -1.0, 1.0).astype(np.float32).reshape(-1)


@dataclass(frozen=True)
class TriTables:
    """Per-triangle shading data. ``tex`` rows: ax, ay, (unused), by, bz (texture coordinates
    a = ax*x + ay*y, b = bx*x + by*y + bz*z in texels), fine amp, coarse amp, window spacing and
    floor height as periods per texel. ``front``/``back``: lit colour of the side the normal points to /
    the other side, exposure applied."""

    tex: np.ndarray  # (9, T) float32
    front: np.ndarray  # (T, 3) float32
    back: np.ndarray  # (T, 3) float32
    normal: np.ndarray  # (T, 3) float32
    v0: np.ndarray  # (T, 3) float32
    material: np.ndarray  # (T,) uint8
    # (8, T) float32 procedural texture (domain randomisation) or None; rows: kind, the affine map
    # from texture to pattern coordinates (A, B, C, D: see pattern_table), second colour / albedo - 1
    # (3 rows)
    pattern: np.ndarray | None = None

    def facing(self, origin: np.ndarray) -> np.ndarray:
        """True where the camera at ``origin`` sees the side the normal points to."""
        return np.einsum("ij,ij->i", self.normal, origin[None].astype(np.float32) - self.v0) >= 0

    def oriented(self, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lit colour planes (3, T), normals (T, 3)) of the side of each triangle facing the camera."""
        f = self.facing(origin)
        return np.where(f[None], self.front.T, self.back.T), np.where(f[:, None], self.normal, -self.normal)


def tri_tables(
    vertices: np.ndarray,
    triangles: np.ndarray,
    normal: np.ndarray,
    color: np.ndarray,
    material: np.ndarray,
    param: np.ndarray,
    light: Lighting,
    pattern: np.ndarray | None = None,
    anchor: np.ndarray | None = None,
) -> TriTables:
    """Shading tables of T triangles. ``pattern`` (T, PATTERN_COLS): procedural textures of domain
    randomisation; ``anchor`` (T, 3): world point each triangle's pattern is fixed to (the object's
    ground point, so that textures move with their object; None = world origin)."""
    n = normal.astype(np.float32)
    scale = TEX_SCALE[material]
    horiz = np.abs(n[:, 2]) > 0.6
    hl = np.maximum(np.hypot(n[:, 0], n[:, 1]), 1e-6)
    tex = np.zeros((9, len(n)), np.float32)
    tex[0] = np.where(horiz, scale, -n[:, 1] / hl * scale)
    tex[1] = np.where(horiz, 0.0, n[:, 0] / hl * scale)
    tex[3] = np.where(horiz, scale, 0.0)
    tex[4] = np.where(horiz, 0.0, scale)
    tex[5] = TEX_AMP[material]
    tex[6] = TEX_COARSE[material]
    tex[7] = 1.0 / np.maximum(param[:, 0] * scale, 1e-3)  # windows per texel along the facade
    tex[8] = 1.0 / np.maximum(param[:, 1] * scale, 1e-3)  # floors per texel up the facade
    sun = light.sun_dir.astype(np.float32)
    amb = light.ambient.astype(np.float32)
    sun_c = light.sun_color.astype(np.float32)
    emit = np.where((material == MAT_LAMP)[:, None], color * 0.7, 0.0).astype(np.float32)

    def lit(nn: np.ndarray) -> np.ndarray:
        hemi = 0.65 + 0.35 * np.clip(nn[:, 2], 0.0, 1.0)
        ndl = np.clip(dot3(nn, sun), 0.0, None)
        return ((color * (amb[None] * hemi[:, None] + sun_c[None] * ndl[:, None]) + emit) * light.exposure).astype(
            np.float32
        )

    return TriTables(
        tex=tex,
        front=lit(n),
        back=lit(-n),
        normal=n,
        v0=vertices[triangles[:, 0]].astype(np.float32),
        material=material.astype(np.uint8),
        pattern=None if pattern is None else pattern_table(tex, scale, pattern, anchor),
    )


def pattern_table(tex: np.ndarray, scale: np.ndarray, pattern: np.ndarray, anchor: np.ndarray | None) -> np.ndarray:
    """TriTables.pattern rows from Mesh.pattern columns: the pattern coordinates of a hit at texture
    coordinates (a, b) are u = A a + B b + C, v = A b - B a + D (in pattern periods; rotated, and
    offset so that the pattern is fixed to ``anchor``)."""
    out = np.zeros((8, len(pattern)), np.float32)
    out[0] = pattern[:, PAT_KIND]
    f = pattern[:, PAT_FREQ] / np.maximum(scale, 1e-6)
    A, B = f * pattern[:, PAT_COS], f * pattern[:, PAT_SIN]
    out[1], out[2] = A, B
    if anchor is not None:
        a0 = tex[0] * anchor[:, 0] + tex[1] * anchor[:, 1]
        b0 = tex[3] * anchor[:, 1] + tex[4] * anchor[:, 2]
        out[3] = -(A * a0 + B * b0)
        out[4] = -(A * b0 - B * a0)
    out[5:8] = pattern[:, PAT_RATIO : PAT_RATIO + 3].T - 1.0
    return out


def apply_patterns(col: np.ndarray, gi: np.ndarray, a: np.ndarray, b: np.ndarray, table: np.ndarray) -> None:
    """Multiply the colour planes ``col`` (3, M) of hits on triangles ``gi`` at texture coordinates
    (a, b) by their procedural texture (TriTables.pattern rows ``table``): a mix m in [0, 1]
    between the albedo (m = 0) and the second colour (m = 1)."""
    kind = np.take(table[0], gi)
    q = np.flatnonzero(kind > 0)
    if not len(q):
        return
    full = len(q) > len(gi) // 2  # mostly textured: work on every hit (kind 0 gives m = 0)
    gq = gi if full else gi[q]
    k = kind if full else kind[q]
    aq, bq = (a, b) if full else (np.take(a, q), np.take(b, q))
    A, B = np.take(table[1], gq), np.take(table[2], gq)
    u = aq * A
    u += bq * B
    u += np.take(table[3], gq)
    v = bq * A
    v -= aq * B
    v += np.take(table[4], gq)
    fu = np.floor(u).astype(np.int32)
    m = np.where(k == PAT_CHECKER, fu + np.floor(v).astype(np.int32), fu) & 1
    m = m.astype(np.float32)
    m[k == PAT_NONE] = 0.0
    sel = np.flatnonzero(k >= PAT_BLOTCH)
    if len(sel):  # smooth noise, 16 texels of it per pattern period
        iu = (u[sel] * 16.0).astype(np.int32) & (_PAT_NOISE - 1)
        iv = (v[sel] * 16.0).astype(np.int32) & (_PAT_NOISE - 1)
        n = np.take(pattern_noise(), iv * _PAT_NOISE + iu)
        m[sel] = np.where(k[sel] == PAT_BLOTCH, (n > 0).astype(np.float32), 0.5 + 0.5 * n)
    for ch in range(3):
        mult = np.take(table[5 + ch], gq)
        mult *= m
        mult += 1.0
        if full:
            col[ch] *= mult
        else:
            col[ch, q] *= mult


def _pow(x: np.ndarray, k: int) -> np.ndarray:
    """x**k for a positive integer k by repeated squaring (much cheaper than np.power)."""
    out: np.ndarray | None = None
    base = x
    while k:
        if k & 1:
            out = base if out is None else out * base
        k >>= 1
        if k:
            base = base * base
    assert out is not None
    return out


def sky_colors(dirs_world: np.ndarray, dlen: np.ndarray, light: Lighting) -> np.ndarray:
    """Sky radiance (3, N) float32 planes (exposure applied): horizon-to-zenith gradient plus sun glow."""
    inv = 1.0 / dlen
    g = np.clip(dirs_world[:, 2] * inv * np.float32(3.0), 0.0, 1.0)
    g = np.sqrt(g) if light.sky_curve == 0.5 else np.power(g, np.float32(light.sky_curve))  # widen the horizon band
    expo = np.float32(light.exposure)
    hor = (light.sky_horizon * expo).astype(np.float32)
    zen = (light.sky_zenith * expo).astype(np.float32)
    sun = np.clip(dot3(dirs_world, light.sun_dir) * inv, 0.0, 1.0)
    s8 = _pow(sun, 8)
    glow = np.float32(0.15) * s8 + np.float32(0.6) * _pow(s8, 25)
    sun_c = (light.sun_color * expo).astype(np.float32)
    return np.stack([hor[c] + g * (zen[c] - hor[c]) + glow * sun_c[c] for c in range(3)])


def shade_hits(
    gi: np.ndarray,
    p: tuple[np.ndarray, np.ndarray, np.ndarray],
    view: np.ndarray,
    dist: np.ndarray,
    lit: np.ndarray,
    tex_table: np.ndarray,
    mat_table: np.ndarray,
    normal_table: np.ndarray,
    light: Lighting,
    fog: bool,
    pattern_tab: np.ndarray | None = None,
) -> np.ndarray:
    """Linear colour planes (3, M) of M hit points ``p`` (x, y, z arrays) on triangles ``gi``, seen
    along rays ``view`` (any length) at distance ``dist``. Tables are per triangle: lit colour
    (camera-facing side), texture data (TriTables.tex, one row per column), material and
    camera-facing normal; ``pattern_tab``: TriTables.pattern rows (domain randomisation) or None."""
    material = np.take(mat_table, gi)
    px, py, pz = p
    a = np.take(tex_table[0], gi)
    a *= px
    a += np.take(tex_table[1], gi) * py
    b = np.take(tex_table[3], gi)
    b *= py
    b += np.take(tex_table[4], gi) * pz
    ia = a.astype(np.int32)
    ib = b.astype(np.int32)
    noise = noise_texture()
    fine = np.take(noise, ((ib & _MASK) << TEX_BITS) | (ia & _MASK))
    ia >>= COARSE_SHIFT
    ib >>= COARSE_SHIFT
    coarse = np.take(noise_texture(True), ((ia & _MASK) << TEX_BITS) | (ib & _MASK))
    factor = np.take(tex_table[5], gi) * fine
    factor += np.take(tex_table[6], gi) * coarse
    factor += 1.0
    expo = np.float32(light.exposure)
    m = np.flatnonzero(material == MAT_PAVING)
    if len(m):
        joint = np.take(tex_table[4] + tex_table[0], gi[m])  # texels per metre on the ground
        am, bm = np.take(a, m), np.take(b, m)
        line = (np.mod(am, 0.6 * joint) < 0.035 * joint) | (np.mod(bm, 0.6 * joint) < 0.035 * joint)
        factor[m[line]] *= np.float32(0.65)
    haze_f = None
    if fog and np.isfinite(light.fog_dist):
        haze_f = np.exp(dist * np.float32(-1.0 / light.fog_dist))
        factor *= haze_f
    col = np.take(lit, gi, axis=1)  # (3, M): channel planes keep numpy's inner loops long
    col *= factor[None]
    if pattern_tab is not None:
        apply_patterns(col, gi, a, b, pattern_tab)
    m = np.flatnonzero(material == MAT_FACADE)
    if len(m):
        gm = gi[m]
        x = np.take(a, m) * np.take(tex_table[7], gm)  # facade coordinates in window periods
        z = np.take(b, m) * np.take(tex_table[8], gm)
        fu = x - np.floor(x)
        fz = z - np.floor(z)
        win = (np.abs(fu - 0.5) < 0.28) & (np.abs(fz - 0.565) < 0.285) & (z > 0.25) & (np.take(tex_table[4], gm) > 0)
        windows = m[win]
        is_lit = fine[windows] > 0.55
        sky_ref = (0.3 * (0.6 * light.sky_horizon + 0.4 * light.sky_zenith) * expo).astype(np.float32)
        dark = (WINDOW_DARK * light.ambient * expo).astype(np.float32) + sky_ref
        lit_w = (WINDOW_LIT * expo).astype(np.float32)
        hz = haze_f[windows] if haze_f is not None else np.ones(len(windows), np.float32)
        for c in range(3):
            col[c, windows] = np.where(is_lit, lit_w[c], dark[c]) * hz
    shiny = np.flatnonzero((material == MAT_METAL) | (material == MAT_GLASS))
    if len(shiny):
        gs = gi[shiny]
        refl = np.where(material[shiny] == MAT_METAL, np.float32(0.08), np.float32(0.25))
        n = [np.take(normal_table[:, c], gs) for c in range(3)]
        v = [view[shiny, c] for c in range(3)]
        inv = 1.0 / np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
        vn = (v[0] * n[0] + v[1] * n[1] + v[2] * n[2]) * inv
        r = [v[c] * inv - 2.0 * vn * n[c] for c in range(3)]
        sun = light.sun_dir.astype(np.float32)
        spec = _pow(np.clip(r[0] * sun[0] + r[1] * sun[1] + r[2] * sun[2], 0.0, 1.0), 40) * np.float32(0.8)
        up = np.clip(r[2], 0.0, 1.0)
        hz = haze_f[shiny] if haze_f is not None else np.float32(1.0)
        hor, zen = light.sky_horizon.astype(np.float32), light.sky_zenith.astype(np.float32)
        sun_c = light.sun_color.astype(np.float32)
        for c in range(3):
            col[c, shiny] += (spec * sun_c[c] + refl * (hor[c] + up * (zen[c] - hor[c]))) * (hz * expo)
    if haze_f is not None:
        haze = (light.sky_horizon * expo).astype(np.float32)
        inv_f = 1.0 - haze_f
        for c in range(3):
            col[c] += inv_f * haze[c]
    return col


def to_srgb8(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(3, H*W) linear planes -> (H, W, 3) uint8 with gamma 2 (close to sRGB), via OpenCV (SIMD)."""
    import cv2

    enc = cv2.convertScaleAbs(cv2.sqrt(np.maximum(planes, 0.0)), alpha=255.0)
    out: np.ndarray = cv2.merge([enc[0].reshape(height, width), enc[1].reshape(height, width),
                                 enc[2].reshape(height, width)])  # fmt: skip
    return out
