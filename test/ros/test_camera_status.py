"""The per-camera /diagnostics status of the perception node (pure: no ROS graph): levels only get worse, and
every reason is said."""

from __future__ import annotations

from perception.ros.nodes.diagnostics import camera_status


def status(values: dict | None = None, **kw: object) -> tuple[str, str, dict]:
    args: dict = {"state": "active", "node_level": "ok", "node_text": "", "serving": True, "busy_s": 0.0,
                  "stall_s": 2.0, "runtime": {}, "active": "onnxruntime", "objects_problem": "", "changed": [],
                  "extra": {"backend": "onnxruntime", "state": "active"}}
    args.update(kw)
    return camera_status(values if values is not None else {"level": "ok", "message": ""}, **args)


def test_a_healthy_camera_is_ok_and_says_its_state() -> None:
    level, text, values = status()
    assert (level, text) == ("ok", "active") and values["backend"] == "onnxruntime"


def test_problems_accumulate_and_the_worst_level_wins() -> None:
    level, text, _ = status({"level": "warn", "message": "62 % dropped stale"}, busy_s=3.5,
                            runtime={"backend.fallbacks": "1", "backend.last_error": "CUDA OOM"},
                            objects_problem="no odometry for 2 s", changed=["model.onnx"])
    assert level == "error"
    for part in ("running for 3.5 s", "62 % dropped stale", "fallback backend onnxruntime (CUDA OOM)",
                 "no odometry", "model.onnx changed on disk"):
        assert part in text


def test_the_node_wide_problem_comes_first_and_paused_cameras_do_not_warn_about_their_window() -> None:
    level, text, _ = status({"level": "warn", "message": "stale"}, node_level="error",
                            node_text="model failed to load: FileNotFoundError", serving=False,
                            objects_problem="no odometry")
    assert level == "error" and text == "model failed to load: FileNotFoundError"


def test_declared_shedding_is_said_without_raising_the_level() -> None:
    level, text, _ = status({"level": "ok", "message": "", "shedding": "shed 12 frames (rate cap 5 Hz)"})
    assert level == "ok" and "shed 12 frames" in text


def test_camera_values_override_node_facts() -> None:
    _, _, values = status({"level": "ok", "message": "", "state": "camera's own"})
    assert values["state"] == "camera's own" and values["backend"] == "onnxruntime"
