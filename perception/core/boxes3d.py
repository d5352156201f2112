"""One 3D box type for every layer: fused objects, tracker input, 3D ground truth and predictions.

:class:`Boxes3D` holds N yaw-only boxes of one frame in the named frame ``frame_id`` (base_link: x
forward, y left, z up; odom for the tracker). Every array has one entry per box and is checked and
converted on construction, so a consumer never meets NaN centres, negative sizes or arrays that
disagree; bad input raises :class:`~perception.core.boxes.CoreError` naming the array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from perception.core.boxes import CoreError

# where a box's position came from (Boxes3D.sources)
SOURCES: tuple[str, ...] = ("lidar", "camera")
_SOURCE_DTYPE = "<U6"


def _unset() -> np.ndarray:
    return np.zeros(0)


def _numbers(a: object, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.size and arr.dtype.kind not in "iuf":
        raise CoreError(f"Boxes3D.{name} must hold real numbers, got dtype {arr.dtype}")
    try:
        out = arr.astype(np.float64).reshape(shape)
    except ValueError:
        raise CoreError(f"Boxes3D.{name} must have shape {shape}, got {arr.shape}") from None
    if arr.shape != shape and not (arr.size == 0 and out.size == 0):
        raise CoreError(f"Boxes3D.{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(out).all():
        raise CoreError(f"Boxes3D.{name} holds NaN/inf: drop those boxes first")
    return out


def _integers(a: object, n: int, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.size and arr.dtype.kind not in "iu":
        raise CoreError(f"Boxes3D.{name} must hold integers, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise CoreError(f"Boxes3D.{name} must have shape ({n},), got {arr.shape}")
    return arr.astype(np.int64)


def _covariances(a: object, n: int) -> np.ndarray:
    """(N, 3, 3) from (N, 3, 3) covariances, (N, 3) variances (diagonal) or one variance for all."""
    var = np.asarray(a)
    if var.size and var.dtype.kind not in "iuf":
        raise CoreError(f"Boxes3D.position_covs must hold real numbers, got dtype {var.dtype}")
    if var.ndim == 0:
        var = np.full((n, 3), var, np.float64)
    if var.ndim == 2 and var.shape == (n, 3):
        var = np.einsum("ni,ij->nij", var.astype(np.float64), np.eye(3))
    covs = _numbers(var, (n, 3, 3), "position_covs")
    if not n:
        return covs
    scale = 1.0 + np.abs(covs).max(axis=(1, 2))
    if (np.abs(covs - covs.transpose(0, 2, 1)).max(axis=(1, 2)) > 1e-9 * scale).any():
        raise CoreError("Boxes3D.position_covs must be symmetric")
    if (np.linalg.eigvalsh(covs)[:, 0] < -1e-9 * scale).any():
        raise CoreError("Boxes3D.position_covs must be positive semi-definite (no negative variance)")
    return covs


@dataclass(frozen=True, kw_only=True, eq=False)
class Boxes3D:
    """N yaw-only 3D boxes of one frame in the frame ``frame_id``, one array entry per box (keywords only).

    - ``class_ids`` (N,) integer detection class ids (:mod:`perception.core.classes`);
    - ``centers`` (N, 3) box centres (mid-height), m;
    - ``sizes`` (N, 3) length, width, height (length along the heading), m, >= 0;
    - ``yaws`` (N,) headings about z, rad;
    - ``scores`` (N,) in [0, 1]; default 1 (ground truth);
    - ``position_covs`` (N, 3, 3) position covariances, m^2, symmetric positive semi-definite; also
      given as (N, 3) variances (diagonal covariances) or one variance for every axis of every box;
      default 0 (exact, as ground truth is);
    - ``sources`` (N,) where the position came from, one of :data:`SOURCES`; default "lidar";
    - ``detection_index`` (N,) the index of the 2D detection each box came from; default -1 (none);
    - ``ignore`` (N,) bool, ground truth only: a don't-care box (too small, occluded, out of range);
      default False.

    An optional array left out (or given empty) takes its default. Arrays are copied to float64 /
    int64 / bool / str on construction; the boxes are immutable by convention (do not write into them)."""

    class_ids: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    scores: np.ndarray = field(default_factory=_unset)
    position_covs: np.ndarray = field(default_factory=_unset)
    sources: np.ndarray = field(default_factory=_unset)
    detection_index: np.ndarray = field(default_factory=_unset)
    ignore: np.ndarray = field(default_factory=_unset)
    frame_id: str = "base_link"

    def __post_init__(self) -> None:
        n = int(np.asarray(self.class_ids).size)

        def given(name: str) -> object | None:
            a = getattr(self, name)
            return None if a is None or (np.ndim(a) > 0 and np.size(a) == 0 and n > 0) else a

        set_ = object.__setattr__
        set_(self, "class_ids", _integers(self.class_ids, n, "class_ids"))
        set_(self, "centers", _numbers(self.centers, (n, 3), "centers"))
        set_(self, "sizes", _numbers(self.sizes, (n, 3), "sizes"))
        if (self.sizes < 0).any():
            raise CoreError("Boxes3D.sizes must be >= 0 (length, width, height)")
        set_(self, "yaws", _numbers(self.yaws, (n,), "yaws"))
        scores = given("scores")
        set_(self, "scores", np.ones(n) if scores is None else _numbers(scores, (n,), "scores"))
        if ((self.scores < 0) | (self.scores > 1)).any():
            raise CoreError("Boxes3D.scores must lie in [0, 1]")
        covs = given("position_covs")
        set_(self, "position_covs", np.zeros((n, 3, 3)) if covs is None else _covariances(covs, n))
        sources = given("sources")
        if sources is None:
            set_(self, "sources", np.full(n, SOURCES[0], _SOURCE_DTYPE))
        else:
            src = np.asarray(sources)
            if src.size and src.dtype.kind != "U":
                raise CoreError(f"Boxes3D.sources must be strings from {SOURCES}, got dtype {src.dtype}")
            if src.shape != (n,):
                raise CoreError(f"Boxes3D.sources must have shape ({n},), got {src.shape}")
            unknown = sorted(set(src.tolist()) - set(SOURCES))
            if unknown:
                raise CoreError(f"Boxes3D.sources holds {unknown}: each must be one of {SOURCES}")
            set_(self, "sources", src.astype(_SOURCE_DTYPE))
        index = given("detection_index")
        set_(self, "detection_index", np.full(n, -1, np.int64) if index is None
             else _integers(index, n, "detection_index"))  # fmt: skip
        if (self.detection_index < -1).any():
            raise CoreError("Boxes3D.detection_index must be >= -1 (-1: no 2D detection)")
        ignore = given("ignore")
        if ignore is None:
            set_(self, "ignore", np.zeros(n, bool))
        else:
            ign = np.asarray(ignore)
            if ign.size and ign.dtype != bool:
                raise CoreError(f"Boxes3D.ignore must be bool, got dtype {ign.dtype}")
            if ign.shape != (n,):
                raise CoreError(f"Boxes3D.ignore must have shape ({n},), got {ign.shape}")
            set_(self, "ignore", ign.astype(bool))
        if not isinstance(self.frame_id, str) or not self.frame_id:
            raise CoreError(f"Boxes3D.frame_id must be a frame name, got {self.frame_id!r}")

    def __len__(self) -> int:
        return len(self.class_ids)

    @staticmethod
    def empty(frame_id: str = "base_link") -> Boxes3D:
        """No boxes, in ``frame_id``."""
        return Boxes3D(class_ids=np.zeros(0, np.int64), centers=np.zeros((0, 3)), sizes=np.zeros((0, 3)),
                       yaws=np.zeros(0), frame_id=frame_id)  # fmt: skip

    def select(self, keep: np.ndarray) -> Boxes3D:
        """The boxes that ``keep`` (a boolean mask or an index array) selects, in its order."""
        return Boxes3D(class_ids=self.class_ids[keep], centers=self.centers[keep], sizes=self.sizes[keep],
                       yaws=self.yaws[keep], scores=self.scores[keep], position_covs=self.position_covs[keep],
                       sources=self.sources[keep], detection_index=self.detection_index[keep],
                       ignore=self.ignore[keep], frame_id=self.frame_id)  # fmt: skip

    @staticmethod
    def concatenate(parts: Sequence[Boxes3D], frame_id: str | None = None) -> Boxes3D:
        """The boxes of ``parts`` one after the other; they must share one frame (``frame_id``, if
        given, names it; it is required when ``parts`` is empty)."""
        frames = {p.frame_id for p in parts} | ({frame_id} if frame_id is not None else set())
        if len(frames) != 1:
            raise CoreError(f"Boxes3D.concatenate needs boxes in one frame, got {sorted(frames) or 'none'}: "
                            "transform them first, or name the frame of an empty list")  # fmt: skip
        (frame,) = frames
        if not parts:
            return Boxes3D.empty(frame)

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return Boxes3D(class_ids=cat("class_ids"), centers=cat("centers"), sizes=cat("sizes"), yaws=cat("yaws"),
                       scores=cat("scores"), position_covs=cat("position_covs"), sources=cat("sources"),
                       detection_index=cat("detection_index"), ignore=cat("ignore"), frame_id=frame)  # fmt: skip

    def transformed(self, transform: np.ndarray, frame_id: str) -> Boxes3D:
        """The boxes expressed in another frame: ``transform`` (4x4) maps points of ``self.frame_id``
        into ``frame_id`` (e.g. odom_T_base). Centres, covariances (R C R^T) and yaws (the heading
        vector rotated, then projected onto the new x-y plane) follow; sizes are kept."""
        T = np.asarray(transform, np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise CoreError(f"transform must be a finite 4x4 matrix, got shape {T.shape}")
        R, t = T[:3, :3], T[:3, 3]
        heading = np.stack([np.cos(self.yaws), np.sin(self.yaws), np.zeros(len(self))], 1) @ R.T
        return Boxes3D(class_ids=self.class_ids, centers=self.centers @ R.T + t, sizes=self.sizes,
                       yaws=np.arctan2(heading[:, 1], heading[:, 0]), scores=self.scores,
                       position_covs=R @ self.position_covs @ R.T, sources=self.sources,
                       detection_index=self.detection_index, ignore=self.ignore, frame_id=frame_id)  # fmt: skip
