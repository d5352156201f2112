"""The shipped network behind the ROS node finds the synthetic camera's objects, across processes.

synthetic_camera and perception_node run as separate processes (localhost DDS, private domain);
this process matches each frame's Detection2DArray with the ground truth published for the same
stamp. Boxes must be in the source image's pixels for the match to work at all.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from ros_testing import Client, needs_model
from vision_msgs.msg import Detection2DArray

from perception.core.boxes import iou_matrix
from perception.ros import convert
from perception.ros.tools.node_process import NodeProcess


def _by_stamp(msgs: list[Detection2DArray]) -> dict[float, Detection2DArray]:
    return {round(convert.stamp_to_seconds(m.header.stamp), 6): m for m in msgs}


def test_detections_in_source_pixels_agree_with_ground_truth(
    client: Client, node_factory: Callable[..., NodeProcess]
) -> None:
    needs_model()
    pytest.importorskip("perception.sim.drive")
    from perception.weights import shipped_checkpoints

    assert "stan_s_temporal" in shipped_checkpoints()
    dets = client.collect(Detection2DArray, "/simcam/detections")
    gts = client.collect(Detection2DArray, "/simcam/ground_truth")
    perception = node_factory("perception.ros.nodes.perception_node", "perception_gt_test", {
        "autostart": True, "cameras": ["simcam"], "model.name": "stan_s_temporal", "model.threads": 1,
        "detection.score_threshold": 0.3, "output.segmentation_color": False, "output.attention": False,
    })
    camera = node_factory("perception.ros.nodes.synthetic_camera", "synthetic_camera_gt_test", {
        "camera": "simcam", "seed": 2030, "width": 640, "height": 384, "fps": 4.0, "num_frames": 12,
        "max_frames": 400,  # stopped by pid
        "wait_for_subscribers": 1,  # the perception node, once its model is loaded (first use exports ONNX)
    })

    def matched_frames() -> list[float]:
        g = _by_stamp(gts)
        return [s for s in _by_stamp(dets) if s in g]

    ok = client.spin_until(lambda: len(matched_frames()) >= 8 or not (perception.alive() and camera.alive()), 90.0)
    assert ok and perception.alive() and camera.alive(), perception.output()[-3000:] + camera.output()[-2000:]
    det_by, gt_by = _by_stamp(dets), _by_stamp(gts)
    found = total = 0
    for s in matched_frames():
        d, g = convert.msg_to_detections(det_by[s]), convert.msg_to_detections(gt_by[s])
        assert (d.boxes[:, [0, 2]] >= 0).all() and (d.boxes[:, [0, 2]] <= 640).all()
        assert (d.boxes[:, [1, 3]] >= 0).all() and (d.boxes[:, [1, 3]] <= 384).all()
        large = (g.boxes[:, 3] - g.boxes[:, 1]) >= 40  # objects this network reliably sees (~95 % offline)
        for box, cls in zip(g.boxes[large], g.class_ids[large]):
            total += 1
            same = d.class_ids == cls
            found += bool(same.any() and iou_matrix(box[None], d.boxes[same]).max() >= 0.5)
    assert total >= 10, f"only {total} large ground-truth objects in {len(matched_frames())} frames"
    assert found / total >= 0.7, f"{found} of {total} large objects detected (IoU >= 0.5, same class)"
