"""The one 3D box type: defaults, checks on construction (adversarial inputs), selection, concatenation,
frame changes."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from perception.core.boxes import CoreError
from perception.core.boxes3d import SOURCES, Boxes3D


def make(n: int = 2, **kw: Any) -> Boxes3D:
    args: dict[str, Any] = dict(class_ids=np.arange(n), centers=np.arange(3 * n, dtype=float).reshape(n, 3),
                                sizes=np.tile([4.5, 1.9, 1.5], (n, 1)), yaws=np.linspace(0.0, 1.0, n))  # fmt: skip
    args.update(kw)
    return Boxes3D(**args)


def test_defaults_and_dtypes() -> None:
    b = make(2, class_ids=np.array([0, 2], np.int32), scores=np.array([0.5, 1.0], np.float32))
    assert len(b) == 2 and b.frame_id == "base_link"
    assert b.class_ids.dtype == np.int64 and b.centers.dtype == np.float64 and b.scores.dtype == np.float64
    assert b.scores.tolist() == [0.5, 1.0]
    assert b.position_covs.shape == (2, 3, 3) and not b.position_covs.any()  # exact unless given
    assert b.sources.tolist() == ["lidar", "lidar"] and b.detection_index.tolist() == [-1, -1]
    assert b.ignore.dtype == bool and not b.ignore.any()
    assert make(2).scores.tolist() == [1.0, 1.0]  # ground truth: score 1
    e = Boxes3D.empty("odom")
    assert len(e) == 0 and e.frame_id == "odom" and e.centers.shape == (0, 3) and e.position_covs.shape == (0, 3, 3)
    # empty lists are boxes too (numpy makes them float64)
    assert len(Boxes3D(class_ids=[], centers=[], sizes=[], yaws=[], sources=[], ignore=[])) == 0


def test_covariances_from_variances() -> None:
    one = make(2, position_covs=0.04)
    np.testing.assert_allclose(one.position_covs, np.stack([np.eye(3) * 0.04] * 2))
    diag = make(2, position_covs=[[0.04, 0.09, 0.01], [0.1, 0.2, 0.3]])
    np.testing.assert_allclose(diag.position_covs[1], np.diag([0.1, 0.2, 0.3]))
    full = np.stack([[[0.5, 0.1, 0.0], [0.1, 0.4, 0.0], [0.0, 0.0, 0.01]]] * 2)
    np.testing.assert_allclose(make(2, position_covs=full).position_covs, full)


def test_keyword_only_frozen_and_copied() -> None:
    with pytest.raises(TypeError):
        Boxes3D(np.zeros(1, np.int64), np.zeros((1, 3)), np.ones((1, 3)), np.zeros(1))  # type: ignore[misc]
    centers = np.zeros((1, 3))
    b = make(1, centers=centers)
    centers[0, 0] = 99.0
    assert b.centers[0, 0] == 0.0  # the caller's array is not shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.frame_id = "odom"  # type: ignore[misc]
    # replace() checks again
    with pytest.raises(CoreError, match="scores"):
        dataclasses.replace(b, scores=np.array([2.0]))


@pytest.mark.parametrize(("kw", "match"), [
    ({"centers": [[0.0, np.nan, 0.0], [1.0, 1.0, 1.0]]}, "centers holds NaN"),
    ({"centers": [[0.0, np.inf, 0.0], [1.0, 1.0, 1.0]]}, "centers holds NaN/inf"),
    ({"yaws": [0.0, np.nan]}, "yaws holds NaN"),
    ({"sizes": [[4.0, -1.0, 1.5], [1.0, 1.0, 1.0]]}, "sizes must be >= 0"),
    ({"sizes": [[4.0, 1.0, np.inf], [1.0, 1.0, 1.0]]}, "sizes holds NaN"),
    ({"centers": np.zeros((3, 3))}, r"centers must have shape \(2, 3\)"),
    ({"centers": np.zeros((2, 2))}, r"centers must have shape \(2, 3\)"),
    ({"centers": np.zeros((3, 2))}, r"centers must have shape \(2, 3\)"),  # same size, wrong shape
    ({"yaws": [0.0]}, r"yaws must have shape \(2,\)"),
    ({"scores": [0.5, 0.5, 0.5]}, r"scores must have shape \(2,\)"),
    ({"scores": [0.5, 1.5]}, r"scores must lie in \[0, 1\]"),
    ({"scores": [-0.1, 0.5]}, r"scores must lie in \[0, 1\]"),
    ({"scores": [np.nan, 0.5]}, "scores holds NaN"),
    ({"class_ids": [0.0, 2.5]}, "class_ids must hold integers"),
    ({"class_ids": np.zeros((2, 1), np.int64)}, "class_ids must have shape"),
    ({"centers": np.array([["a", "b", "c"], ["d", "e", "f"]])}, "centers must hold real numbers"),
    ({"centers": np.zeros((2, 3), complex)}, "centers must hold real numbers"),
    ({"yaws": np.array([True, False])}, "yaws must hold real numbers"),
    ({"sources": [0, 1]}, "sources must be strings"),
    ({"sources": ["lidar", "radar"]}, "radar"),
    ({"sources": ["lidar"]}, r"sources must have shape \(2,\)"),
    ({"detection_index": [0]}, r"detection_index must have shape \(2,\)"),
    ({"detection_index": [0.0, 1.0]}, "detection_index must hold integers"),
    ({"detection_index": [0, -2]}, "detection_index must be >= -1"),
    ({"ignore": [0, 1]}, "ignore must be bool"),
    ({"ignore": [True]}, r"ignore must have shape \(2,\)"),
    ({"position_covs": -0.1}, "positive semi-definite"),
    ({"position_covs": [[0.1, 0.1, 0.1]]}, r"position_covs must have shape \(2, 3, 3\)"),
    ({"position_covs": np.stack([[[1.0, 0.5, 0], [0.0, 1.0, 0], [0, 0, 1.0]]] * 2)}, "symmetric"),
    ({"position_covs": np.stack([[[1.0, 2.0, 0], [2.0, 1.0, 0], [0, 0, 1.0]]] * 2)}, "positive semi-definite"),
    ({"position_covs": np.full((2, 3, 3), np.nan)}, "position_covs holds NaN"),
    ({"position_covs": "0.1"}, "position_covs must hold real numbers"),
    ({"frame_id": ""}, "frame_id"),
])  # fmt: skip
def test_bad_input_is_refused_naming_the_array(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(CoreError, match=match):
        make(2, **kw)


def test_select_and_concatenate() -> None:
    b = make(3, scores=[0.9, 0.5, 0.1], sources=["lidar", "camera", "lidar"], detection_index=[4, -1, 0],
             ignore=np.array([False, True, False]), position_covs=[[1.0, 2, 3], [4, 5, 6], [7, 8, 9]],
             frame_id="odom")  # fmt: skip
    for keep in (np.array([False, True, True]), np.array([2, 1])):
        s = b.select(keep)
        assert s.frame_id == "odom" and s.class_ids.tolist() == b.class_ids[keep].tolist()
        for name in ("centers", "sizes", "yaws", "scores", "position_covs", "sources", "detection_index", "ignore"):
            np.testing.assert_array_equal(getattr(s, name), getattr(b, name)[keep])
    assert len(b.select(np.zeros(3, bool))) == 0
    c = Boxes3D.concatenate([b.select([0]), Boxes3D.empty("odom"), b.select([1, 2])])
    assert c.frame_id == "odom"
    for name in ("class_ids", "centers", "sizes", "yaws", "scores", "position_covs", "sources", "detection_index",
                 "ignore"):  # fmt: skip
        np.testing.assert_array_equal(getattr(c, name), getattr(b, name))
    assert len(Boxes3D.concatenate([], frame_id="map")) == 0
    with pytest.raises(CoreError, match="one frame"):
        Boxes3D.concatenate([b, make(1)])
    with pytest.raises(CoreError, match="one frame"):
        Boxes3D.concatenate([])


def test_transformed_moves_centres_headings_and_covariances() -> None:
    b = make(2, centers=[[1.0, 0, 0], [0, 2.0, 0]], yaws=[0.0, 0.5],
             position_covs=[[0.04, 0.09, 0.01], [0.01, 0.01, 0.01]], sources=["camera", "lidar"])  # fmt: skip
    T = np.eye(4)
    T[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]  # 90 deg about z
    T[:2, 3] = 10.0, 0.0
    o = b.transformed(T, "odom")
    assert o.frame_id == "odom" and o.sources.tolist() == ["camera", "lidar"]
    np.testing.assert_allclose(o.centers[:, :2], [[10.0, 1.0], [8.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(o.yaws, [np.pi / 2, 0.5 + np.pi / 2])
    np.testing.assert_allclose(np.diagonal(o.position_covs[0]), [0.09, 0.04, 0.01])
    np.testing.assert_array_equal(o.sizes, b.sizes)
    with pytest.raises(CoreError, match="4x4"):
        b.transformed(np.eye(3), "odom")


def test_sources_are_the_documented_names() -> None:
    assert SOURCES == ("lidar", "camera")
