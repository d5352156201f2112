from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from perception.core.classes import DETECTION_TO_SEMANTIC, NUM_DETECTION, NUM_SEMANTIC, semantic_id
from perception.core.types import CameraIntrinsics, Frame
from perception.sim.config import SimConfig
from perception.sim.drive import get_world
from perception.sim.render import build_things, camera_dirs, project_boxes, select_things, to_cam
from perception.sim.world import camera_pose

SMALL = SimConfig(width=160, height=96)  # as in conftest.py
MEDIUM = SimConfig(width=320, height=192)


def test_shapes_and_dtypes(small_seq: list[Frame]) -> None:
    f = small_seq[0]
    H, W = SMALL.height, SMALL.width
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.semantic is not None and f.semantic.shape == (H, W) and f.semantic.dtype == np.uint8
    assert f.instance is not None and f.instance.shape == (H, W) and f.instance.dtype == np.int32
    assert f.depth is not None and f.depth.shape == (H, W) and f.depth.dtype == np.float32
    assert f.world_T_cam is not None and f.world_T_cam.shape == (4, 4)
    gt = f.gt
    n = len(gt)
    assert gt.boxes.shape == (n, 4) and gt.boxes.dtype == np.float32
    assert gt.amodal_boxes.shape == (n, 4) and gt.boxes3d.shape == (n, 7) and gt.boxes3d.dtype == np.float32
    assert gt.class_ids.dtype == np.int64 and gt.track_ids.dtype == np.int64
    assert gt.visibility.dtype == np.float32 and gt.ignore.dtype == bool
    assert f.intrinsics == SMALL.intrinsics
    assert f.scene_cut and not any(x.scene_cut for x in small_seq[1:])
    assert [x.index for x in small_seq] == list(range(len(small_seq)))
    assert small_seq[1].stamp == pytest.approx(1.0 / SMALL.fps)


def test_labels_are_in_the_tables_and_sky_is_at_infinity(small_seq: list[Frame]) -> None:
    for f in small_seq[::5]:
        assert f.semantic is not None and f.depth is not None and f.instance is not None
        assert f.semantic.max() < NUM_SEMANTIC
        sky = f.semantic == semantic_id("sky")
        assert np.array_equal(sky, np.isinf(f.depth))
        assert np.all(f.depth[~sky] > 0)
        assert np.all((f.gt.class_ids >= 0) & (f.gt.class_ids < NUM_DETECTION))
        # instance pixels carry a thing class; stuff pixels carry no instance
        thing = f.instance > 0
        assert np.isin(f.semantic[thing], list(DETECTION_TO_SEMANTIC.values())).all()
        assert not np.isin(f.semantic[~thing], list(DETECTION_TO_SEMANTIC.values())).any()


def test_modal_boxes_are_the_extent_of_the_visible_pixels(small_seq: list[Frame]) -> None:
    checked = 0
    for f in small_seq:
        assert f.instance is not None and f.semantic is not None
        ids = set(np.unique(f.instance).tolist()) - {0}
        assert ids == set(f.gt.track_ids.tolist())  # every object with a visible pixel, and only those
        for box, tid, cls in zip(f.gt.boxes, f.gt.track_ids, f.gt.class_ids):
            ys, xs = np.nonzero(f.instance == tid)
            assert np.array_equal(box, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32))
            assert np.all(f.semantic[ys, xs] == DETECTION_TO_SEMANTIC[int(cls)])
            checked += 1
    assert checked > 50


def test_visibility_ignore_and_amodal_boxes(small_seq: list[Frame]) -> None:
    for f in small_seq:
        gt = f.gt
        assert np.all((gt.visibility > 0) & (gt.visibility <= 1))
        h = gt.boxes[:, 3] - gt.boxes[:, 1]
        assert np.array_equal(gt.ignore, (h < SMALL.min_box_height) | (gt.visibility < SMALL.min_visibility))
        # the visible box lies inside the projected 3D box (1 px tolerance for pixel rounding)
        a, m = gt.amodal_boxes, gt.boxes
        assert np.all(a[:, :2] <= m[:, :2] + 1.0) and np.all(a[:, 2:] >= m[:, 2:] - 1.0)
        assert np.all(gt.boxes3d[:, 2] > -3.0)  # at most partly behind the camera
        assert np.all(gt.boxes3d[:, 3:6] > 0)


def test_visibility_equals_an_independent_per_object_raycast() -> None:
    """visible pixels / pixels of the object cast alone over the whole image."""
    cfg = MEDIUM
    world = get_world(0, cfg)
    intr = cfg.intrinsics
    from perception.sim.drive import frame_at

    index = 25
    frame = frame_at(world, index)[0]
    t = index / cfg.fps
    pose = camera_pose(world, t)
    things = build_things(world, t, select_things(world, t, pose, intr, None))
    dirs = camera_dirs(intr) @ pose[:3, :3].T.astype(np.float32)
    rays = np.concatenate([np.broadcast_to(pose[:3, 3].astype(np.float32), dirs.shape), dirs], 1)
    rays_t = o3d.core.Tensor(np.ascontiguousarray(rays, np.float32))
    gt = frame.gt
    assert frame.instance is not None
    order = np.argsort(gt.visibility)  # the most occluded first
    checked = 0
    for i in order[:6]:
        tid = int(gt.track_ids[i])
        k = int(np.flatnonzero(things.agent_idx == tid - 1)[0])
        tri = np.flatnonzero(things.tri_obj == k)
        used, inv = np.unique(things.triangles[tri], return_inverse=True)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(
            o3d.core.Tensor(things.vertices[used]), o3d.core.Tensor(inv.reshape(-1, 3).astype(np.uint32))
        )
        alone = np.isfinite(scene.cast_rays(rays_t)["t_hit"].numpy()).sum()
        visible = (frame.instance == tid).sum()
        assert gt.visibility[i] == pytest.approx(min(visible / alone, 1.0), abs=0.02)
        checked += 1
    assert checked >= 3
    assert gt.visibility.min() < 0.9  # some object in this frame is occluded


def test_project_boxes_clips_to_the_near_plane_and_the_image() -> None:
    intr = CameraIntrinsics.from_fov(100, 50, 90.0)  # fx = 50
    unit = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    in_front = unit + np.array([0.0, 0.0, 5.0])
    boxes, valid = project_boxes(in_front[None], intr)
    # x from 50 * -0.5 / 4.5 + 50 to 50 * 0.5 / 4.5 + 50
    assert valid[0]
    assert boxes[0] == pytest.approx([50 - 50 * 0.5 / 4.5, 25 - 50 * 0.5 / 4.5, 50 + 50 * 0.5 / 4.5,
                                      25 + 50 * 0.5 / 4.5], abs=1e-4)  # fmt: skip
    behind = unit + np.array([0.0, 0.0, -5.0])
    straddling = unit * np.array([1.0, 1.0, 10.0]) + np.array([3.0, 0.0, 0.0])  # z in [-5, 5], right side
    boxes, valid = project_boxes(np.stack([behind, straddling]), intr)
    assert not valid[0]
    assert valid[1] and boxes[1][2] == pytest.approx(100.0) and boxes[1][0] >= 50.0


def test_to_cam_inverts_the_pose() -> None:
    world = get_world(0, SMALL)
    pose = camera_pose(world, 0.0)
    p_cam = np.array([[1.0, -2.0, 10.0]])
    p_world = p_cam @ pose[:3, :3].T + pose[:3, 3]
    assert to_cam(p_world, pose) == pytest.approx(p_cam)
