"""incident_recorder on a real graph (its own process, loopback DDS, private domain): a 30 Hz compressed camera,
detections, a latched /tf_static and /diagnostics from this process; snapshots triggered by the service, the
trigger topic and a /diagnostics status turning ERROR; each holds exactly its window with no missing frame;
the byte budget holds with a message far larger than allowed on the wire and a topic that never appears;
the quota deletes the oldest; kill -9 while a snapshot is being written leaves the finished ones readable
(every CRC checked) and the next start removes the unfinished one. Invalid parameters: exit 2, each named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import TransformStamped
from ros_testing import DOMAIN_ID, ROOT, Client, compressed_msg, diag_values, rgb_image, start_node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray

from perception.bag.cdr import header_stamp_ns
from perception.bag.io import open_bag, read_messages
from perception.ros import convert
from perception.ros.qos import latched, qos_profile
from perception.ros.tools.node_process import NodeProcess
from perception.vehicle.snapshots import PARTIAL, completed

PERIOD_NS = 33_333_333  # 30 Hz
BASE_NS = 1_700_000_000 * 1_000_000_000
CAM, DET, ATT, HUGE = "/rt/front/image_raw/compressed", "/rt/front/detections", "/rt/front/attention", "/rt/huge"
TOPICS = [CAM, DET, ATT, "/tf_static", "/diagnostics", HUGE, "/rt/never"]


class Feed:
    """30 Hz camera + detections (header stamp = BASE + seq x period), /tf_static once, /diagnostics at 2 Hz
    (a status ``rt_camera`` whose level can be set), ``huge`` 3 MB messages at 1 Hz, driven by the client."""

    def __init__(self, client: Client) -> None:
        n = client.node
        self.cam = n.create_publisher(CompressedImage, CAM, qos_profile("best_effort", 5))
        self.det = n.create_publisher(Detection2DArray, DET, qos_profile("reliable", 10))
        self.att = n.create_publisher(Image, ATT, qos_profile("reliable", 10))
        yy, xx = np.mgrid[0:24, 0:40]
        self.att_map = np.exp(-((xx - 20) ** 2 + (yy - 12) ** 2) / 40.0).astype(np.float32)
        self.huge = n.create_publisher(CompressedImage, HUGE, qos_profile("reliable", 2))
        self.diag = n.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.trigger = n.create_publisher(String, "/rt_recorder/trigger", 10)
        tf = TransformStamped()
        tf.header.frame_id, tf.child_frame_id = "base_link", "rt_front_optical"
        self.tf_static = n.create_publisher(TFMessage, "/tf_static", latched())
        self.tf_static.publish(TFMessage(transforms=[tf]))
        self.image = compressed_msg(rgb_image(96, 160), 0.0, "rt_front_optical")
        self.huge_msg = CompressedImage(format="jpeg", data=bytes(3_000_000))
        self.seq = 0
        self.level = DiagnosticStatus.OK
        n.create_timer(PERIOD_NS * 1e-9, self._frame)

    def _frame(self) -> None:
        self.seq += 1
        stamp = BASE_NS + self.seq * PERIOD_NS
        header = convert.make_header(stamp * 1e-9, "rt_front_optical")
        header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        self.image.header = header
        self.cam.publish(self.image)
        self.det.publish(Detection2DArray(header=header))
        self.att.publish(convert.array_to_image(self.att_map, header, "32FC1"))
        if self.seq % 15 == 0:
            text = "ok" if self.level == DiagnosticStatus.OK else "camera stalled"
            self.diag.publish(DiagnosticArray(status=[DiagnosticStatus(level=self.level, name="rt_camera",
                                                                       message=text)]))
        if self.seq % 30 == 0:
            self.huge.publish(self.huge_msg)


def params(directory: Path, **kw: Any) -> dict[str, Any]:
    return {"directory": str(directory), "topics": TOPICS, "before_s": 2.0, "after_s": 1.0, "max_snapshot_s": 3.0,
            "budget_mb": 4.0, "max_message_mb": 1.0, "quota_gb": 1.0, "min_free_gb": 0.0,
            "trigger_topic": "~/trigger", **kw}


def start_recorder(client: Client, tmp: Path, directory: Path, **kw: Any) -> NodeProcess:
    proc = start_node("perception.ros.nodes.recorder", "rt_recorder", params(directory, **kw), tmp)
    diags = client.collect(DiagnosticArray, "/diagnostics")
    ok = client.spin_until(lambda: not proc.alive() or any(
        (v := diag_values(m, "rt_recorder: recorder")) and v["topics_recording"] == "6" for m in diags), 60.0)
    client.spin_for(2.6)  # a full before-window of every topic
    if not (ok and proc.alive()):
        out = proc.output()
        proc.stop()
        raise AssertionError(out)
    return proc


def last_values(client: Client, diags: list[Any]) -> dict[str, str]:
    n = len(diags)
    assert client.spin_until(lambda: len(diags) > n + 2, 10.0)
    return next(v for m in reversed(diags) if (v := diag_values(m, "rt_recorder: recorder")))


def wait_snapshots(client: Client, directory: Path, n: int, timeout: float = 30.0) -> list[Path]:
    assert client.spin_until(lambda: len(completed(directory)) >= n, timeout), completed(directory)
    return completed(directory)


def check_window(path: Path) -> dict[str, Any]:
    """Every CRC checked, the log times inside the window and reaching both ends, no camera frame missing."""
    index = json.loads((path / "incident.json").read_text())
    info = open_bag(path)  # verifies the MCAP file
    assert set(info.topics) == {CAM, DET, ATT, "/tf_static", "/diagnostics"}  # no huge message, no /rt/never
    start, end = index["start_ns"], index["end_ns"]
    seqs, dets, logs = [], [], []
    for topic, _, log_ns, raw in read_messages(path, check_order=False):  # /diagnostics: many publishers
        if topic == "/tf_static":
            continue  # latched: the last ones before the window are carried into every snapshot
        assert start <= log_ns <= end, (topic, log_ns - start, end - log_ns)
        if topic == CAM:
            seqs.append(round((header_stamp_ns(raw) - BASE_NS) / PERIOD_NS))
            logs.append(log_ns)
        elif topic == DET:
            dets.append(round((header_stamp_ns(raw) - BASE_NS) / PERIOD_NS))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a camera frame is missing from the window"
    assert dets == list(range(dets[0], dets[0] + len(dets)))
    slack = 3 * PERIOD_NS + 50_000_000  # one frame period either side, plus scheduling on a loaded machine
    assert logs[0] - start < slack and end - logs[-1] < slack, (logs[0] - start, end - logs[-1])
    assert 0.9 * (end - start) / PERIOD_NS <= len(seqs) <= (end - start) / PERIOD_NS + 1
    return index


def test_three_triggers_exact_windows_budget_and_adversarial_topics(client: Client, tmp_path: Path) -> None:
    feed = Feed(client)
    diags = client.collect(DiagnosticArray, "/diagnostics")
    out = tmp_path / "incidents"
    rec = start_recorder(client, tmp_path, out)
    try:
        answer = client.call(Trigger, "/rt_recorder/snapshot", Trigger.Request())
        assert answer.success and "snapshot " in answer.message
        wait_snapshots(client, out, 1)
        client.spin_for(0.5)
        feed.trigger.publish(String(data="planner braked hard"))
        wait_snapshots(client, out, 2)
        client.spin_for(0.5)
        feed.level = DiagnosticStatus.ERROR
        snaps = wait_snapshots(client, out, 3)
        feed.level = DiagnosticStatus.OK
        indexes = [check_window(p) for p in snaps]
        assert [i["trigger"] for i in indexes] == ["service", "topic", "diagnostics"]
        assert indexes[1]["triggers"][0]["reason"] == "planner braked hard"
        assert "rt_camera ERROR" in indexes[2]["triggers"][0]["reason"]
        for i in indexes:
            assert i["duration_s"] == pytest.approx(3.0) and i["before_held_s"] > 1.9 and not i["cut_short"]
        values = last_values(client, diags)
        assert values["topics_missing"] == "/rt/never" and int(values["dropped_too_large"]) >= 2
        assert float(values["ring_mb"]) <= float(values["budget_mb"])
        assert values["triggers_service"] == values["triggers_topic"] == values["triggers_diagnostics"] == "1"
        assert rec.alive()
    finally:
        assert rec.stop() == 0, rec.output()
    # `perception vehicle incidents`: the list, every window checked, one rendered with its attention panel
    proc = subprocess.run([sys.executable, "-m", "perception.cli", "vehicle", "incidents", "--dir", str(out), "--check",
                           "--render", "latest", "--out", str(tmp_path / "overlay.mp4"), "--json"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [i["trigger"] for i in report["incidents"]] == ["service", "topic", "diagnostics"]
    assert all(r["missing"] == 0 for rows in report["checks"].values() for r in rows)
    rendered = report["rendered"]
    assert rendered["camera"] == "rt/front" and 85 <= rendered["frames"] <= 92
    # the window cuts by receive time: an image's detections or attention may fall just outside at either end
    n = rendered["frames"]
    assert rendered["with_detections"] >= n - 2 and rendered["with_attention"] >= n - 2
    import cv2

    video = cv2.VideoCapture(rendered["video"])
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    assert int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 2 * 160  # image | attention
    video.release()


def test_quota_and_kill_minus_nine_mid_write(client: Client, tmp_path: Path) -> None:
    Feed(client)
    out = tmp_path / "incidents"
    # one snapshot is ~1.7 MB here: a 4.2 MB quota keeps two
    rec = start_recorder(client, tmp_path, out, quota_gb=4.2 / 1024, budget_mb=3.0)
    killed = False
    try:
        names = []
        for _ in range(3):
            names.append(client.call(Trigger, "/rt_recorder/snapshot", Trigger.Request()).message.split()[1])
            wait_snapshots(client, out, 1)
            assert client.spin_until(lambda: names[-1] in [p.name for p in completed(out)], 20.0)
            client.spin_for(0.3)
        kept = [p.name for p in completed(out)]
        assert kept == names[1:], (kept, names)  # the oldest went first
        # a fourth one, killed while its after-window is being written
        name = client.call(Trigger, "/rt_recorder/snapshot", Trigger.Request()).message.split()[1]
        assert client.spin_until(lambda: (out / PARTIAL / name).is_dir(), 10.0)
        client.spin_for(0.3)
        os.kill(rec.proc.pid, signal.SIGKILL)
        rec.proc.wait(10)
        killed = True
    finally:
        if not killed:
            rec.stop()
    assert (out / PARTIAL / name).is_dir() and [p.name for p in completed(out)] == kept
    for p in completed(out):  # the finished ones are intact: every CRC, every message
        check_window(p)
    rec = start_recorder(client, tmp_path, out, quota_gb=4.2 / 1024, budget_mb=3.0)
    try:
        assert "removed unfinished snapshot(s) of an earlier run: " + name in rec.output()
        assert not (out / PARTIAL / name).exists()
    finally:
        assert rec.stop() == 0


def test_invalid_parameters_exit_2_naming_each(tmp_path: Path) -> None:
    from perception.ros.env import localhost_env

    pfile = tmp_path / "bad.yaml"
    pfile.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "directory": "relative", "before_s": "ten", "budget_mb": 2.0, "max_message_mb": 5.0,
        "topics": ["/ok", "no_slash"]}}}))
    env = localhost_env(DOMAIN_ID)
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "perception.ros.nodes.recorder", "--ros-args", "--params-file",
                           str(pfile)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    for part in ("directory: 'relative' must be an absolute path", "before_s: must be float",
                 "max_message_mb: 5 is more than half the budget", "topics[1]: 'no_slash'"):
        assert part in proc.stderr, (part, proc.stderr)
    blocked = tmp_path / "a_file"
    blocked.write_text("not a directory")
    pfile.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"directory": str(blocked / "incidents")}}}))
    proc = subprocess.run([sys.executable, "-m", "perception.ros.nodes.recorder", "--ros-args", "--params-file",
                           str(pfile)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "cannot use the snapshot directory" in proc.stderr, proc.stderr


def test_the_installed_unit_runs_the_recorder(client: Client, tmp_path: Path) -> None:
    """``perception vehicle install`` with recording enabled writes the recorder's unit; its ExecStart= run with
    its Environment= (this session's domain) and a bound NOTIFY_SOCKET: READY=1, WATCHDOG=1 pings, a snapshot
    of the rig's default topics on the service call, STOPPING=1 and exit 0 on SIGTERM."""
    import socket

    from perception.ros.tools.node_process import stop_processes
    from perception.vehicle.config import rig_from_dict
    from perception.vehicle.install import localhost_profile_source, write_recorder
    from perception.vehicle.units import InstallLayout, dds_environment, unit_command, unit_environment

    out = tmp_path / "incidents"
    rig = rig_from_dict({"name": "unit_car", "cameras": [{"name": "tu_front", "transport": "compressed"}],
                         "service": {"watchdog_sec": 2},
                         "recording": {"enabled": True, "directory": str(out), "before_s": 2, "after_s": 1,
                                       "budget_mb": 64, "min_free_gb": 0}})
    layout = InstallLayout(tmp_path / "prefix")
    text = write_recorder(rig, layout, sys.executable, dds_environment(rig, localhost_profile_source())).read_text()
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
    env = {**os.environ, **unit_environment(text), "ROS_DOMAIN_ID": str(DOMAIN_ID), "NOTIFY_SOCKET": str(sock_path),
           "WATCHDOG_USEC": "2000000", "PYTHONPATH": str(ROOT)}
    cam = client.node.create_publisher(CompressedImage, "/tu_front/image_raw/compressed",
                                       qos_profile("best_effort", 5))
    image = compressed_msg(rgb_image(96, 160), 0.0, "tu_front_optical_frame")
    client.node.create_timer(PERIOD_NS * 1e-9, lambda: cam.publish(image))
    diags = client.collect(DiagnosticArray, "/diagnostics")
    log = (tmp_path / "recorder.log").open("wb")
    proc = subprocess.Popen(unit_command(text), env=env, stdout=log, stderr=subprocess.STDOUT)
    said: list[str] = []

    def receive() -> None:  # every datagram waiting, without blocking (the client must keep publishing)
        while True:
            try:
                said.append(sock.recv(4096).decode())
            except BlockingIOError:
                return

    try:
        assert client.spin_until(lambda: receive() or any("READY=1" in s for s in said), 30.0), said
        assert client.spin_until(lambda: receive() or any((v := diag_values(m, "incident_recorder: recorder")) and
                                                          "/tu_front/image_raw/compressed" not in v["topics_missing"]
                                                          for m in diags), 30.0)
        client.spin_until(lambda: bool(receive()), 3.0)  # a full before-window of the camera
        answer = client.call(Trigger, "/incident_recorder/snapshot", Trigger.Request())
        assert answer.success
        assert client.spin_until(lambda: receive() or len(completed(out)) == 1, 20.0)
        assert client.spin_until(lambda: receive() or any("WATCHDOG=1" in s for s in said), 5.0), said
    finally:
        codes = stop_processes([NodeProcess("recorder", [], proc)], timeout=20.0)
        receive()
        sock.close()
        log.close()
    assert codes["recorder"] == 0 and any("STOPPING=1" in s for s in said), (codes, said)
    assert any("STATUS=recording " in s for s in said), said
    index = json.loads((completed(out)[0] / "incident.json").read_text())
    assert index["topics"]["/tu_front/image_raw/compressed"]["count"] >= 85
