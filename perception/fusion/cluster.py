"""Euclidean clustering on a voxel grid (Autoware's euclidean_cluster: 0.3 m voxels, 0.7 m tolerance).

Points are binned in voxels; voxel centroids closer than the tolerance are linked (scipy cKDTree
pairs + connected components, or open3d's ``cluster_dbscan`` with ``min_points=1``, which is the same
relation); every point takes its voxel's cluster, so box fitting keeps the full resolution.
"""

from __future__ import annotations

import numpy as np

from .config import FusionError


def voxel_clusters(points: np.ndarray, voxel: float, tolerance: float, method: str = "kdtree") -> np.ndarray:
    """(N,) int64 cluster label of each point (0..K-1)."""
    if len(points) == 0:
        return np.zeros(0, np.int64)
    cell = np.floor(points / voxel).astype(np.int64)
    cell -= cell.min(0)
    span = cell.max(0) + 1
    key = (cell[:, 0] * span[1] + cell[:, 1]) * span[2] + cell[:, 2]
    _, inv = np.unique(key, return_inverse=True)
    counts = np.bincount(inv).astype(np.float64)
    cents = np.stack([np.bincount(inv, points[:, i]) / counts for i in range(3)], 1)
    if method == "kdtree":
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        from scipy.spatial import cKDTree

        pairs = cKDTree(cents).query_pairs(tolerance, output_type="ndarray")
        n = len(cents)
        graph = coo_matrix((np.ones(len(pairs), bool), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        _, vlab = connected_components(graph, directed=False)
    elif method == "open3d":
        import open3d as o3d

        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cents))
        vlab = np.asarray(pc.cluster_dbscan(tolerance, 1, print_progress=False))
    else:
        raise FusionError(f"cluster method {method!r}: use 'kdtree' or 'open3d'")
    out: np.ndarray = vlab.astype(np.int64)[inv]
    return out
