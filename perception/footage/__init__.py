"""Real camera footage: video files and image folders as core Frames (no ground truth), and an
evaluation-only reference detector (SSD-MobileNetV2 COCO through cv2.dnn) whose detections serve as
pseudo-labels. Pure numpy/cv2: no torch, no rclpy.

Data fetched by ``scripts/get_real_data.sh`` lives under :func:`data_dir` (``$PERCEPTION_DATA``,
default ``data/`` in the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path


class FootageError(ValueError):
    """Real footage or the reference detector cannot be used; the message says what to do."""


GET_DATA = "bash scripts/get_real_data.sh"
REFERENCES = ("ssd",)  # reference detectors by --reference name (perception.footage.reference)


def data_dir() -> Path:
    """``$PERCEPTION_DATA``, or ``data/`` next to the ``perception`` package (the checkout's root)."""
    env = os.environ.get("PERCEPTION_DATA")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "data"


def vtest_path() -> Path:
    """Where ``scripts/get_real_data.sh`` puts OpenCV's ``vtest.avi`` (may not exist yet)."""
    return data_dir() / "footage" / "vtest.avi"
