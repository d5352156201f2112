"""Evaluation from bags: the golden drive's ground truth against its recorded outputs (no ROS graph)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from bag_testing import GOLDEN

from perception.bag import BagError
from perception.eval.bags import evaluate_bags, load_ground_truth, load_outputs


def test_evaluate_golden_bags() -> None:
    metrics, samples = evaluate_bags(GOLDEN / "expected", GOLDEN / "drive", samples=3)
    assert metrics["coverage"] == {"gt_frames": 12, "answered": 12, "missing": 0, "loops": 1}
    s = metrics["summary"]
    assert 0.2 < s["mAP50"] <= 1.0 and 0.3 < s["mIoU"] <= 1.0 and 0.0 <= s["flicker"] <= 1.0
    lat = metrics["latency_ms"]
    assert lat["frames"] == 12 and 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert len(samples) == 3 and all(x.ndim == 3 and x.shape[2] == 3 and x.shape[1] >= 2 * 320 for x in samples)


def test_ground_truth_of_drive_bag() -> None:
    gt = load_ground_truth(GOLDEN / "drive")
    assert len(gt.gt) == len(gt.semantic) == 12
    assert sum(len(g) for g in gt.gt.values()) > 20


def test_eval_cli_writes_markdown_and_html(tmp_path: Path) -> None:
    from perception.cli import main

    assert main(["eval", "--bag", str(GOLDEN / "expected"), "--gt", str(GOLDEN / "drive"), "--out", str(tmp_path)]) == 0
    for name in ("report.md", "report.html", "metrics.json", "latency_hist.png", "ap_per_class.png", "sample_00.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    html = (tmp_path / "report.html").read_text()
    assert "<table>" in html and 'src="latency_hist.png"' in html
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert not math.isnan(saved["summary"]["mAP50"])


def test_input_bag_is_not_an_output_bag() -> None:
    with pytest.raises(BagError, match="no <camera>/detections"):
        load_outputs(GOLDEN / "drive")
    with pytest.raises(BagError, match="no <camera>/ground_truth"):
        load_ground_truth(GOLDEN / "expected")


# -- 3D objects from bags ---------------------------------------------------------------------------
BASE_T_CAM = np.array([[0, 0, 1, 0.5], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]], np.float64)


def _objects_bag(path: Path, shift: float = 0.0, tf: bool = True) -> None:
    """An output bag answering the golden drive with its own 3D ground truth moved to base_link
    (``shift`` m further ahead), ``id`` = track id, and /tf_static base_link -> camera_optical; the
    golden 2D outputs too."""
    from scipy.spatial.transform import Rotation

    from perception.bag import messages as bm
    from perception.bag.io import BagWriter, deserialize, read_messages
    from perception.bag.typestore import typestore

    T = typestore().types
    rows = []
    for _, msgtype, log_ns, raw in read_messages(GOLDEN / "drive", ["/camera/ground_truth/boxes3d"]):
        msg = deserialize(raw, msgtype)
        dets = []
        for d in msg.detections:
            p, q = d.bbox.center.position, d.bbox.center.orientation
            c = BASE_T_CAM[:3, :3] @ np.array([p.x, p.y, p.z]) + BASE_T_CAM[:3, 3] + np.array([shift, 0.0, 0.0])
            ry = 2 * math.atan2(q.y, q.w)  # optical-frame box x axis (cos ry, 0, -sin ry) -> base_link
            yaw = math.atan2(-math.cos(ry), -math.sin(ry))  # base x = optical z, base y = -optical x
            pose = T["geometry_msgs/msg/Pose"](position=T["geometry_msgs/msg/Point"](x=c[0], y=c[1], z=c[2]),
                                               orientation=T["geometry_msgs/msg/Quaternion"](
                                                   x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)))
            size = T["geometry_msgs/msg/Vector3"](x=d.bbox.size.x, y=d.bbox.size.z, z=d.bbox.size.y)
            hyp = d.results[0]
            hyp.hypothesis.score = 0.9
            dets.append(T["vision_msgs/msg/Detection3D"](header=bm.header(bm.stamp_ns(msg.header), "base_link"),
                                                          results=[hyp], bbox=T["vision_msgs/msg/BoundingBox3D"](
                                                              center=pose, size=size), id=d.id))
        rows.append((log_ns, T["vision_msgs/msg/Detection3DArray"](
            header=bm.header(bm.stamp_ns(msg.header), "base_link"), detections=dets)))
    q = Rotation.from_matrix(BASE_T_CAM[:3, :3]).as_quat()
    tr = T["geometry_msgs/msg/TransformStamped"](
        header=bm.header(0, "base_link"), child_frame_id="camera_optical",
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=0.5, y=0.0, z=1.5),
            rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))
    with BagWriter(path) as w:
        if tf:
            w.write("/tf_static", T["tf2_msgs/msg/TFMessage"](transforms=[tr]), rows[0][0])
        for log_ns, msg in rows:
            w.write("/camera/objects3d", msg, log_ns)
        for topic, msgtype, log_ns, raw in read_messages(GOLDEN / "expected", ["/camera/detections"]):
            w.write_raw(topic, msgtype, log_ns, raw)


def test_objects_scored_from_bags(tmp_path: Path) -> None:
    from perception.eval.bags import evaluate_objects_bags

    # the golden outputs are 2D only, and say so
    none = evaluate_objects_bags(GOLDEN / "expected", GOLDEN / "drive")
    assert not none["scored"] and "objects3d" in none["reason"]
    _objects_bag(tmp_path / "no_tf", tf=False)
    missing = evaluate_objects_bags(tmp_path / "no_tf", GOLDEN / "drive")
    assert not missing["scored"] and "/tf_static" in missing["reason"]
    _objects_bag(tmp_path / "perfect")
    ok = evaluate_objects_bags(tmp_path / "perfect", GOLDEN / "drive")
    assert ok["scored"] and ok["frames"] == 12 and ok["frame_ids"] == ["base_link", "camera_optical"]
    car = ok["detection"]["per_class"]["car"]
    assert car["num_gt"] > 0 and car["AP@0.5m"] == pytest.approx(1.0) and car["ATE"] < 1e-6 and car["AOE"] < 1e-6
    assert ok["tracking"]["IDF1"] == pytest.approx(1.0) and ok["tracking"]["IDSW"] == 0
    _objects_bag(tmp_path / "off", shift=3.0)  # every object 3 m too far: nothing within 2 m
    off = evaluate_objects_bags(tmp_path / "off", GOLDEN / "drive")
    assert off["detection"]["per_class"]["car"]["AP@2m"] == 0.0 and off["tracking"]["IDF1"] < 0.1  # a neighbour


def test_eval_bag_cli_reports_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perception.cli import main

    _objects_bag(tmp_path / "perfect")
    assert main(["eval", "--bag", str(tmp_path / "perfect"), "--gt", str(GOLDEN / "drive"),
                 "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "3D objects (12 frames): AP@2m {'car': 1.0" in out and "IDF1 1.000" in out
