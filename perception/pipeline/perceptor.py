"""Perceptor: images in, detections + segmentation + attention out, per camera, with temporal state.

The same object serves the ROS node, evaluation, the demo and benchmarks:

    rgb (any size) ─► letterbox to the network input ─► Backend.infer (state fed back per camera)
                   ─► decode boxes / mask / attention ─► map back to the INPUT image's pixels

Each camera has its own temporal memory, reset on time jumps, time going backwards, scene cuts
(see ``core.temporal``) or on request. Frames of several cameras are batched into one inference.

A backend's outputs are checked before use: a frame whose outputs hold NaN or inf is not decoded
(:class:`InvalidOutputError` names it; its camera's memory is forgotten so the bad state is not fed
back), while the other frames of the batch are returned with the error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from perception.core.decode import attention_scores, decode_detections, decode_segmentation, upsample_attention
from perception.core.letterbox import LetterboxMap, letterbox
from perception.core.temporal import ResetPolicy, ResetReason, StreamSteps, frame_signature, reset_reason
from perception.core.types import Detections
from perception.runtime.base import Backend


class PipelineError(RuntimeError):
    """Bad input to the pipeline (wrong image shape or dtype); the frame is rejected."""


class InvalidOutputError(RuntimeError):
    """The backend returned non-finite outputs (NaN / inf) for some frames of a batch.

    ``results`` holds one entry per input frame: the result, or None for a frame whose outputs were
    invalid (``invalid`` names those cameras). The invalid cameras' temporal memory is forgotten.
    A backend that keeps doing this is broken (precision overflow, corrupt weights): fall back to
    another backend or precision.
    """

    def __init__(self, invalid: list[str], results: list[PerceptionResult | None], detail: str) -> None:
        super().__init__(f"backend returned non-finite outputs ({detail}) for cameras {invalid}: frames dropped, "
                         "their temporal memory reset")
        self.invalid = invalid
        self.results = results


@dataclass(frozen=True)
class PerceptorConfig:
    score_thresh: float = 0.3
    nms_iou: float = 0.6
    max_det: int = 100
    segmentation: bool = True
    attention: bool = True
    reset: ResetPolicy = field(default_factory=ResetPolicy)


@dataclass(frozen=True)
class FrameInput:
    camera_id: str
    rgb: np.ndarray  # (H, W, 3) uint8 RGB
    stamp: float  # seconds
    scene_cut: bool = False  # caller knows a cut happened (e.g. bag loop)
    received: StreamSteps | None = None  # steps between received stamps since the last frame (frames dropped
    # by the caller included): time jumps are judged on these when given (core.temporal)


@dataclass(frozen=True)
class PerceptionResult:
    camera_id: str
    stamp: float
    detections: Detections  # pixel coordinates of the input image
    segmentation: np.ndarray | None  # (H, W) uint8 semantic ids at input resolution
    attention: np.ndarray | None  # (H, W) float32 in [0, 1] at input resolution
    reset: ResetReason  # why the temporal memory was reset before this frame (NONE: it was not)
    timings_ms: dict[str, float]


@dataclass
class _CameraState:
    stamp: float | None = None
    signature: np.ndarray | None = None
    memory: dict[str, np.ndarray] = field(default_factory=dict)


def network_input(rgb: np.ndarray, height: int, width: int) -> tuple[np.ndarray, LetterboxMap]:
    """An RGB image as the network takes it: letterboxed to ``height x width``, (3, H, W) float32 in [0, 1]."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 8:
        raise PipelineError(f"expected an (H, W, 3) uint8 RGB image of at least 8x8, got {rgb.shape} {rgb.dtype}")
    boxed, lmap = letterbox(rgb, width, height)
    chw = np.ascontiguousarray(boxed.transpose(2, 0, 1), dtype=np.float32)
    chw *= 1.0 / 255.0
    return chw, lmap


def non_finite_outputs(out: dict[str, np.ndarray], batch: int) -> dict[int, list[str]]:
    """Batch index -> names of the outputs holding NaN or inf for that item (empty: all finite)."""
    bad: dict[int, list[str]] = {}
    for name, arr in out.items():
        a = np.asarray(arr)
        if a.dtype.kind != "f" or a.ndim == 0 or a.shape[0] != batch:
            continue
        finite = np.isfinite(a.reshape(batch, -1)).all(axis=1)
        for i in np.flatnonzero(~finite):
            bad.setdefault(int(i), []).append(name)
    return bad


class Perceptor:
    def __init__(self, backend: Backend, config: PerceptorConfig | None = None) -> None:
        self.backend = backend
        self.config = config or PerceptorConfig()
        image_spec = next(s for s in backend.input_specs if s.name == "image")
        self.input_h, self.input_w = int(image_spec.shape[2]), int(image_spec.shape[3])
        self._cameras: dict[str, _CameraState] = {}

    # -- state ---------------------------------------------------------------------------------
    def reset(self, camera_id: str | None = None) -> None:
        """Forget the temporal memory of one camera (or all)."""
        if camera_id is None:
            self._cameras.clear()
        else:
            self._cameras.pop(camera_id, None)

    def state(self, camera_id: str) -> dict[str, np.ndarray]:
        """A copy of the camera's temporal state (empty for stateless models or unseen cameras)."""
        cam = self._cameras.get(camera_id)
        return {k: v.copy() for k, v in cam.memory.items()} if cam else {}

    def _state_for(self, frame: FrameInput) -> tuple[_CameraState, ResetReason]:
        cam = self._cameras.setdefault(frame.camera_id, _CameraState())
        policy = self.config.reset
        sig = frame_signature(frame.rgb) if (self.backend.is_temporal and policy.detect_scene_cuts) else None
        if frame.scene_cut:
            reason = ResetReason.REQUESTED
        else:
            reason = reset_reason(cam.stamp, frame.stamp, cam.signature, sig, policy, frame.received)
        if self.backend.is_temporal and (reason is not ResetReason.NONE or not cam.memory):
            cam.memory = self.backend.initial_state(1)
        cam.stamp, cam.signature = frame.stamp, sig
        return cam, reason

    # -- processing ----------------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, LetterboxMap]:
        return network_input(rgb, self.input_h, self.input_w)

    def process(self, frame: FrameInput) -> PerceptionResult:
        return self.process_batch([frame])[0]

    def process_batch(self, frames: list[FrameInput]) -> list[PerceptionResult]:
        """One inference for frames of DIFFERENT cameras (a camera appears at most once)."""
        ids = [f.camera_id for f in frames]
        if len(set(ids)) != len(ids):
            raise PipelineError(f"a batch holds at most one frame per camera, got {ids}")
        t0 = time.perf_counter()
        pre = [self.preprocess(f.rgb) for f in frames]
        t_pre = time.perf_counter()
        states = [self._state_for(f) for f in frames]
        t_sig = time.perf_counter()
        inputs = {"image": np.stack([p[0] for p in pre])}
        for name in self.backend.state_pairs:
            inputs[name] = np.concatenate([cam.memory[name] for cam, _ in states])
        t1 = time.perf_counter()
        out = self.backend.infer(inputs)
        t2 = time.perf_counter()
        bad = non_finite_outputs(out, len(frames))
        for i, (cam, _) in enumerate(states):
            cam.memory = {name: out[o][i : i + 1] for name, o in self.backend.state_pairs.items()}
        results: list[PerceptionResult | None] = []
        for i, f in enumerate(frames):
            if i in bad:
                self._cameras.pop(f.camera_id, None)  # never feed a NaN state back: start afresh
                results.append(None)
                continue
            r = self._postprocess(f, out, i, pre[i][1], states[i][1], (t1 - t0) / len(frames), t2 - t1)
            r.timings_ms.update({"preprocess.letterbox": 1e3 * (t_pre - t0) / len(frames),
                                 "preprocess.signature": 1e3 * (t_sig - t_pre) / len(frames)})
            results.append(r)
        if bad:
            detail = "; ".join(f"{frames[i].camera_id}: {', '.join(names)}" for i, names in sorted(bad.items()))
            raise InvalidOutputError([frames[i].camera_id for i in sorted(bad)], results, detail)
        return [r for r in results if r is not None]

    def _postprocess(
        self,
        frame: FrameInput,
        out: dict[str, np.ndarray],
        i: int,
        lmap: LetterboxMap,
        reason: ResetReason,
        pre_s: float,
        infer_s: float,
    ) -> PerceptionResult:
        cfg = self.config
        t0 = time.perf_counter()
        det = decode_detections(
            out["heatmap"][i], out["box"][i], stride=8, score_thresh=cfg.score_thresh, max_det=cfg.max_det,
            nms_iou=cfg.nms_iou,
        )
        boxes = lmap.boxes_to_src(det.boxes)
        t_dec = t_seg = t_att = time.perf_counter()
        seg = None
        if cfg.segmentation:
            seg_in = decode_segmentation(out["seg"][i], self.input_h, self.input_w)
            seg = lmap.mask_to_src(seg_in, cv2.INTER_NEAREST)
            t_seg = t_att = time.perf_counter()
        att = None
        scores_att = None
        if cfg.attention:
            att_in = upsample_attention(out["attention"][i], self.input_h, self.input_w)
            att = lmap.mask_to_src(att_in.astype(np.float32), cv2.INTER_LINEAR)
            t_att = time.perf_counter()
            scores_att = attention_scores(att, boxes)
        detections = Detections(boxes=boxes.astype(np.float32), scores=det.scores, class_ids=det.class_ids,
                                attention=scores_att)
        t1 = time.perf_counter()
        timings = {"preprocess": 1e3 * pre_s, "infer": 1e3 * infer_s, "postprocess": 1e3 * (t1 - t0),
                   "postprocess.decode": 1e3 * (t_dec - t0), "postprocess.seg": 1e3 * (t_seg - t_dec),
                   "postprocess.attention": 1e3 * (t_att - t_seg), "postprocess.scores": 1e3 * (t1 - t_att)}
        return PerceptionResult(frame.camera_id, frame.stamp, detections, seg, att, reason, timings)
