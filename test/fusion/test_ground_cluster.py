from __future__ import annotations

import numpy as np
import pytest

from perception.fusion import FusionError
from perception.fusion.cluster import voxel_clusters
from perception.fusion.ground import fit_ground, height_above


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A road tilted by 2 deg (pitch) and 1 deg (roll), 0.3 m below base_link, with boxes standing on it."""
    rng = np.random.default_rng(seed)
    plane = np.array([np.tan(np.deg2rad(2.0)), np.tan(np.deg2rad(1.0)), -0.3])
    xy = rng.uniform([2, -15], [60, 15], (4000, 2))
    ground = np.column_stack([xy, xy @ plane[:2] + plane[2] + rng.normal(0, 0.02, len(xy))])
    things = rng.uniform([10, -5, 0.3], [30, 5, 2.5], (1500, 3))
    things[:, 2] += things[:, :2] @ plane[:2] + plane[2]
    return np.concatenate([ground, things]).astype(np.float32), plane


@pytest.mark.parametrize("method", ["ransac", "open3d"])
def test_ground_plane_is_recovered_under_clutter(method: str) -> None:
    pts, plane = _scene()
    fit = fit_ground(pts, method)
    grid = np.array([[x, y, 0.0] for x in (5.0, 30.0, 60.0) for y in (-10.0, 10.0)])
    truth = grid[:, :2] @ plane[:2] + plane[2]
    assert np.abs(height_above(grid, fit) + truth).max() < 0.05  # height of z=0 above the plane is -truth
    h = height_above(pts, fit)
    assert np.abs(h[:4000]).max() < 0.15 and (h[4000:] > 0.2).all()


def test_flat_band_and_too_few_points_give_base_link_plane() -> None:
    pts, _ = _scene()
    assert fit_ground(pts, "band").tolist() == [0.0, 0.0, 0.0]
    assert fit_ground(pts[:10], "ransac").tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(FusionError, match="ground method"):
        fit_ground(pts, "grid")


def _blob(centre: tuple[float, float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(centre) + rng.uniform(-0.5, 0.5, (n, 3))


@pytest.mark.parametrize("method", ["kdtree", "open3d"])
def test_euclidean_clusters_split_at_the_tolerance(method: str) -> None:
    rng = np.random.default_rng(1)
    # blob surfaces 1.5 m apart (clusters), and 0.3 m apart (one cluster at 0.7 m tolerance)
    a, b, c = _blob((0, 0, 1), 300, rng), _blob((2.5, 0, 1), 300, rng), _blob((3.8, 0, 1), 300, rng)
    far = _blob((0, 10, 1), 50, rng)
    labels = voxel_clusters(np.concatenate([a, b, c, far]).astype(np.float32), 0.3, 0.7, method)
    la, lb, lc, lf = labels[:300], labels[300:600], labels[600:900], labels[900:]
    for part in (la, lb, lc, lf):
        assert len(set(part.tolist())) == 1
    assert la[0] != lb[0] and lb[0] == lc[0] and lf[0] not in (la[0], lb[0])
    assert len(voxel_clusters(np.zeros((0, 3), np.float32), 0.3, 0.7, method)) == 0


def test_kdtree_and_open3d_clusters_agree_on_a_random_cloud() -> None:
    pts = np.random.default_rng(2).uniform(0, 20, (3000, 3)).astype(np.float32) * [1, 1, 0.1]
    a = voxel_clusters(pts, 0.3, 0.7, "kdtree")
    b = voxel_clusters(pts, 0.3, 0.7, "open3d")
    # the same partition (labels may be numbered differently)
    pairs = set(zip(a.tolist(), b.tolist()))
    assert len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("method", ["ransac", "open3d"])
def test_a_crowded_horizontal_surface_above_the_road_is_no_ground(method: str) -> None:
    """Car bonnets and truck beds at ~0.9 m can outnumber road points; base_link sits on the road."""
    rng = np.random.default_rng(3)
    road = np.column_stack([rng.uniform([2, -10], [40, 10], (1800, 2)), rng.normal(0, 0.02, 1800)])
    deck = np.column_stack([rng.uniform([5, -3], [20, 3], (2200, 2)), 0.9 + rng.normal(0, 0.02, 2200)])
    fit = fit_ground(np.concatenate([road, deck]).astype(np.float32), method)
    assert abs(fit[2]) < 0.05
