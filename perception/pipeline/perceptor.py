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

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from perception.core.anchors import decode_box_list, num_anchors
from perception.core.decode import (
    attention_lowres,
    attention_scores_lowres,
    decode_detections,
    decode_segmentation,
    detections_from_peaks,
    lowres_grid,
    lowres_scale,
    segmentation_lowres,
    upsample_attention,
)
from perception.core.letterbox import MIN_SIDE, LetterboxMap, letterbox, letterbox_into
from perception.core.temporal import (
    ResetPolicy,
    ResetReason,
    StreamSteps,
    frame_signature,
    reset_reason,
    signature_from_thumbnail,
)
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
    vehicle_nms_iou: float = 0.7  # a car and a truck box overlapping more than this are one vehicle (1: never)
    segmentation: bool = True
    attention: bool = True
    reset: ResetPolicy = field(default_factory=ResetPolicy)
    # pre/post-processing on the network's device (backends offering ``device_prepost``: torch): "auto" on CUDA
    # only, "on" wherever offered (CPU tensors too), "off" never (numpy on the host)
    device_prepost: str = "auto"

    def __post_init__(self) -> None:
        if self.device_prepost not in ("auto", "on", "off"):
            raise ValueError(f"device_prepost must be auto, on or off, not {self.device_prepost!r}")


@dataclass(frozen=True)
class FrameInput:
    camera_id: str
    rgb: np.ndarray  # (H, W, 3) uint8 RGB
    stamp: float  # seconds
    scene_cut: bool = False  # caller knows a cut happened (e.g. bag loop)
    received: StreamSteps | None = None  # steps between received stamps since the last frame (frames dropped
    # by the caller included): time jumps are judged on these when given (core.temporal)


class InputResolutionMaps:
    """A result's segmentation and attention at INPUT resolution, made on first use (by ``make_*``, which keep
    what they need: the network's low-resolution outputs) and then kept. Shared by copies of the result;
    thread-safe."""

    def __init__(
        self,
        segmentation: np.ndarray | None = None,
        attention: np.ndarray | None = None,
        *,
        make_segmentation: Callable[[], np.ndarray | None] | None = None,
        make_attention: Callable[[], np.ndarray | None] | None = None,
    ) -> None:
        self._seg, self._att = segmentation, attention
        self._make_seg, self._make_att = make_segmentation, make_attention
        self._lock = threading.Lock()

    def segmentation(self) -> np.ndarray | None:
        with self._lock:
            if self._seg is None and self._make_seg is not None:
                self._seg, self._make_seg = self._make_seg(), None
            return self._seg

    def attention(self) -> np.ndarray | None:
        with self._lock:
            if self._att is None and self._make_att is not None:
                self._att, self._make_att = self._make_att(), None
            return self._att


def input_resolution_segmentation(seg_logits: np.ndarray, m: LetterboxMap) -> np.ndarray:
    """(S, h, w) logits -> (src_h, src_w) uint8: bilinear to the network input, argmax, back to the input image."""
    return m.mask_to_src(decode_segmentation(seg_logits, m.dst_h, m.dst_w), cv2.INTER_NEAREST)


def input_resolution_attention(att: np.ndarray, m: LetterboxMap) -> np.ndarray:
    """(1, h, w) attention -> (src_h, src_w) float32: bilinear to the network input, back to the input image."""
    return m.mask_to_src(upsample_attention(att, m.dst_h, m.dst_w), cv2.INTER_LINEAR)


@dataclass(frozen=True, init=False)
class PerceptionResult:
    """What the Perceptor returns for one frame.

    ``segmentation`` (H, W) uint8 and ``attention`` (H, W) float32 are at INPUT resolution, computed on
    first access (a consumer that never reads them never pays for them). ``segmentation_lowres`` /
    ``attention_lowres`` are the same maps on the network-output grid with the letterbox padding cut
    away: they cover the whole input image, each cell ``lowres_scale = (sx, sy)`` input pixels (cell
    (v, u) covers input pixels [u sx, (u + 1) sx) x [v sy, (v + 1) sy)). Constructed from input-resolution
    maps (the old positional form), the low-resolution ones are those maps with scale (1, 1).
    """

    camera_id: str
    stamp: float
    detections: Detections  # pixel coordinates of the input image
    reset: ResetReason  # why the temporal memory was reset before this frame (NONE: it was not)
    timings_ms: dict[str, float]
    segmentation_lowres: np.ndarray | None
    attention_lowres: np.ndarray | None
    lowres_scale: tuple[float, float]
    maps: InputResolutionMaps = field(repr=False, compare=False)
    tall_score: float = 0.0  # with Perceptor.tall_probe set: the best score of a candidate that tall (else 0)

    def __init__(
        self,
        camera_id: str,
        stamp: float,
        detections: Detections,
        segmentation: np.ndarray | None = None,
        attention: np.ndarray | None = None,
        reset: ResetReason = ResetReason.NONE,
        timings_ms: dict[str, float] | None = None,
        *,
        segmentation_lowres: np.ndarray | None = None,
        attention_lowres: np.ndarray | None = None,
        lowres_scale: tuple[float, float] | None = None,
        maps: InputResolutionMaps | None = None,
        tall_score: float = 0.0,
    ) -> None:
        if maps is None or segmentation is not None or attention is not None:
            # given maps win; with ``maps`` too (dataclasses.replace(r, segmentation=...)) the other one stays lazy
            maps = InputResolutionMaps(
                segmentation, attention,
                make_segmentation=maps.segmentation if maps is not None and segmentation is None else None,
                make_attention=maps.attention if maps is not None and attention is None else None)
        if segmentation_lowres is None and attention_lowres is None and lowres_scale is None:
            segmentation_lowres, attention_lowres, lowres_scale = segmentation, attention, (1.0, 1.0)
        values = {"camera_id": camera_id, "stamp": stamp, "detections": detections, "reset": reset,
                  "timings_ms": {} if timings_ms is None else timings_ms, "segmentation_lowres": segmentation_lowres,
                  "attention_lowres": attention_lowres, "lowres_scale": lowres_scale or (1.0, 1.0), "maps": maps,
                  "tall_score": float(tall_score)}
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def total_ms(self) -> float:
        """The frame's time in the Perceptor: the sum of its top-level stages ('preprocess', 'infer',
        'postprocess', a refinement's passes); dotted keys ('preprocess.letterbox', ...) break a stage down
        and are not added again."""
        return sum(v for k, v in self.timings_ms.items() if "." not in k)

    @property
    def segmentation(self) -> np.ndarray | None:
        """(H, W) uint8 semantic ids at input resolution (made on first access)."""
        return self.maps.segmentation()

    @property
    def attention(self) -> np.ndarray | None:
        """(H, W) float32 in [0, 1] at input resolution (made on first access)."""
        return self.maps.attention()


@dataclass
class _CameraState:
    stamp: float | None = None
    signature: np.ndarray | None = None
    memory: dict[str, np.ndarray] = field(default_factory=dict)


_INV255 = np.float32(1.0 / 255.0)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < MIN_SIDE:
        raise PipelineError(f"expected an (H, W, 3) uint8 RGB image of at least {MIN_SIDE}x{MIN_SIDE}, "
                            f"got {rgb.shape} {rgb.dtype}")


def network_input(rgb: np.ndarray, height: int, width: int) -> tuple[np.ndarray, LetterboxMap]:
    """An RGB image as the network takes it: letterboxed to ``height x width``, (3, H, W) float32 in [0, 1]."""
    _check_rgb(rgb)
    boxed, lmap = letterbox(rgb, width, height)
    chw = np.empty((3, height, width), np.float32)
    np.multiply(boxed.transpose(2, 0, 1), _INV255, out=chw)
    return chw, lmap


class _Buffers(threading.local):
    """Per thread: the batch's letterbox canvas (B, H, W, 3) uint8 and network input (B, 3, H, W) float32,
    reused from frame to frame (a thread's previous batch is done with them when it calls again)."""

    def __init__(self) -> None:
        self.canvas: np.ndarray | None = None
        self.image: np.ndarray | None = None

    def get(self, batch: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if self.canvas is None or self.image is None or self.canvas.shape != (batch, height, width, 3):
            self.canvas = np.empty((batch, height, width, 3), np.uint8)
            self.image = np.empty((batch, 3, height, width), np.float32)
        return self.canvas, self.image


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
        self._buffers = _Buffers()
        self._device: Any = None  # models.prepost.DevicePrePost when pre/post-processing runs on the device
        # (score floor, network pixels) or None: each result's ``tall_score`` is the best score of a candidate box at
        # least that tall, down to that floor -- below the output threshold (the refinement's zoom-out trigger)
        self.tall_probe: tuple[float, float] | None = None
        mode = self.config.device_prepost
        # anchor-head networks (boxes/scores) decode on the host: the device path decodes heatmaps
        self.anchor_head = any(s.name == "boxes" for s in backend.output_specs)
        # anchors of the six COCO levels; an output with more has the fine level after them (once, not per frame)
        self._coarse_anchors = num_anchors(self.input_h, self.input_w) if self.anchor_head else 0
        # the low-resolution maps' grid has the stride of the segmentation the network declares (4 network pixels)
        # whether or not a frame asks for it (``infer``'s ``skip``): results do not depend on who listens
        seg_rows = next(int(s.shape[2]) for s in backend.output_specs if s.name == "seg")
        self._grid_stride = max(1, round(self.input_h / seg_rows))
        make = None if self.anchor_head else getattr(backend, "device_prepost", None)
        if mode == "on" and make is None:
            raise PipelineError(f"device_prepost 'on', but the {backend.name} backend cannot run pre/post-processing "
                                "on its device (the torch backend can); use 'auto' or 'off'")
        if make is not None and (mode == "on" or (mode == "auto" and
                                                  str(getattr(backend, "torch_device", "")).startswith("cuda"))):
            self._device = make(self.input_h, self.input_w)

    @property
    def device_prepost(self) -> bool:
        """Whether pre/post-processing runs on the network's device (``PerceptorConfig.device_prepost``)."""
        return self._device is not None

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

    def _state_for(self, frame: FrameInput, signature: Callable[[], np.ndarray]) -> tuple[_CameraState, ResetReason]:
        """The camera's state for this frame; ``signature`` makes the scene-cut signature when one is needed."""
        cam = self._cameras.setdefault(frame.camera_id, _CameraState())
        policy = self.config.reset
        sig = signature() if (self.backend.is_temporal and policy.detect_scene_cuts) else None
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
        """One inference for frames of DIFFERENT cameras (a camera appears at most once).

        The batch is letterboxed straight into a reusable canvas and normalised in one step; the scene-cut
        signatures come from the letterboxed images. Results carry low-resolution maps; their
        input-resolution ones are made on first access (:class:`PerceptionResult`)."""
        ids = [f.camera_id for f in frames]
        if len(set(ids)) != len(ids):
            raise PipelineError(f"a batch holds at most one frame per camera, got {ids}")
        for f in frames:
            _check_rgb(f.rgb)
        if self._device is not None:
            return self._process_batch_device(frames)
        n = len(frames)
        t0 = time.perf_counter()
        canvas, image = self._buffers.get(n, self.input_h, self.input_w)
        lmaps = []
        for k, f in enumerate(frames):
            m = LetterboxMap.compute(f.rgb.shape[1], f.rgb.shape[0], self.input_w, self.input_h)
            letterbox_into(f.rgb, canvas[k], m)
            lmaps.append(m)
        t_box = time.perf_counter()
        np.multiply(canvas.transpose(0, 3, 1, 2), _INV255, out=image)
        t_norm = time.perf_counter()
        states = [self._state_for(f, functools.partial(_signature, canvas[k], lmaps[k])) for k, f in enumerate(frames)]
        inputs = {"image": image, **self._batch_state(states)}
        t1 = time.perf_counter()
        out = self.backend.infer(inputs, self._skip())
        t2 = time.perf_counter()
        pre = _pre_timings(n, t0, t_box, t_norm, t1, t2)
        bad = non_finite_outputs(out, n)
        for i, (cam, _) in enumerate(states):
            cam.memory = {name: out[o][i : i + 1] for name, o in self.backend.state_pairs.items()}
        results: list[PerceptionResult | None] = []
        for i, f in enumerate(frames):
            results.append(None if i in bad else self._postprocess(f, out, i, lmaps[i], states[i][1], dict(pre)))
        return self._finish(frames, results, bad)

    def _skip(self) -> frozenset[str]:
        """The outputs no result of this configuration reads: the segmentation when it is off."""
        return frozenset() if self.config.segmentation else frozenset({"seg"})

    def _batch_state(self, states: list[tuple[_CameraState, ResetReason]]) -> dict[str, np.ndarray]:
        return {name: np.concatenate([cam.memory[name] for cam, _ in states]) for name in self.backend.state_pairs}

    def _finish(self, frames: list[FrameInput], results: list[PerceptionResult | None],
                bad: dict[int, list[str]]) -> list[PerceptionResult]:
        for i in bad:
            self._cameras.pop(frames[i].camera_id, None)  # never feed a NaN state back: start afresh
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
        timings: dict[str, float],
    ) -> PerceptionResult:
        cfg = self.config
        t0 = time.perf_counter()
        if self.anchor_head:
            coarse = self._coarse_anchors
            det = decode_box_list(out["boxes"][i], out["scores"][i], score_thresh=cfg.score_thresh,
                                  max_det=cfg.max_det, nms_iou=cfg.nms_iou, image_size=(self.input_h, self.input_w),
                                  fine_from=coarse if out["boxes"].shape[1] > coarse else None,
                                  vehicle_nms_iou=cfg.vehicle_nms_iou)
        else:
            det = decode_detections(
                out["heatmap"][i], out["box"][i], stride=8, score_thresh=cfg.score_thresh, max_det=cfg.max_det,
                nms_iou=cfg.nms_iou,
            )
        tall = self._tall_score(det, out, i)
        t_dec = t_seg = t_att = time.perf_counter()
        grid = lowres_grid(lmap, self._grid_stride)
        seg_low = att_low = None
        make_seg = make_att = None
        if cfg.segmentation:
            seg_logits = np.array(out["seg"][i], dtype=np.float32)  # a copy: backends may reuse output buffers
            seg_low = segmentation_lowres(seg_logits, lmap, grid)
            make_seg = functools.partial(input_resolution_segmentation, seg_logits, lmap)
            t_seg = t_att = time.perf_counter()
        if cfg.attention:
            att_map = np.array(out["attention"][i], dtype=np.float32)
            att_low = attention_lowres(att_map, lmap, grid)
            make_att = functools.partial(input_resolution_attention, att_map, lmap)
            t_att = time.perf_counter()
        r = self._result(frame, reason, lmap, det, grid, seg_low, att_low,
                         InputResolutionMaps(make_segmentation=make_seg, make_attention=make_att), timings, tall)
        t1 = time.perf_counter()
        timings.update({"postprocess": 1e3 * (t1 - t0), "postprocess.decode": 1e3 * (t_dec - t0),
                        "postprocess.seg": 1e3 * (t_seg - t_dec), "postprocess.attention": 1e3 * (t_att - t_seg),
                        "postprocess.scores": 1e3 * (t1 - t_att)})
        return r

    def _tall_score(self, det: Detections, out: dict[str, np.ndarray] | None = None, i: int = 0) -> float:
        """Image ``i``'s best score of a candidate at least ``tall_probe[1]`` network pixels tall, down to
        ``tall_probe[0]`` (0 without a probe). From the raw outputs ``out`` where given -- anchor heads: every anchor's
        box (the decoder's threshold, top-k and NMS do not hide one); heatmap heads: their peaks decoded down to the
        floor --, else from the output detections ``det`` (network pixels)."""
        if self.tall_probe is None:
            return 0.0
        floor, height = self.tall_probe
        out = out or {}
        if self.anchor_head and "boxes" in out:
            b, s = out["boxes"][i], out["scores"][i]
            best = np.where(np.isfinite(s), s, 0.0).max(axis=1)
            seen = np.minimum(b[:, 3], self.input_h) - np.maximum(b[:, 1], 0.0)  # the part inside the input
            tall = np.isfinite(b).all(axis=1) & (seen >= height) & (best >= floor)
            return float(best[tall].max()) if tall.any() else 0.0
        if "heatmap" in out:
            det = decode_detections(out["heatmap"][i], out["box"][i], stride=8, score_thresh=floor,
                                    max_det=self.config.max_det, nms_iou=self.config.nms_iou)
        tall = (det.boxes[:, 3] - det.boxes[:, 1] >= height) & (det.scores >= floor)
        return float(det.scores[tall].max()) if tall.any() else 0.0

    def _result(self, frame: FrameInput, reason: ResetReason, lmap: LetterboxMap, det: Detections,
                grid: tuple[int, int], seg_low: np.ndarray | None, att_low: np.ndarray | None,
                maps: InputResolutionMaps, timings: dict[str, float], tall_score: float = 0.0) -> PerceptionResult:
        """A result from network-input detections and low-resolution maps: boxes and per-object attention
        (on the low-resolution map) in input pixels."""
        boxes = lmap.boxes_to_src(det.boxes)
        scale = lowres_scale(lmap, grid)
        scores_att = (attention_scores_lowres(att_low, boxes, scale, (lmap.src_h, lmap.src_w))
                      if att_low is not None else None)
        detections = Detections(boxes=boxes.astype(np.float32), scores=det.scores, class_ids=det.class_ids,
                                attention=scores_att)
        return PerceptionResult(frame.camera_id, frame.stamp, detections, reset=reason, timings_ms=timings,
                                segmentation_lowres=seg_low, attention_lowres=att_low, lowres_scale=scale, maps=maps,
                                tall_score=tall_score)

    def _process_batch_device(self, frames: list[FrameInput]) -> list[PerceptionResult]:
        """:meth:`process_batch` with pre/post-processing on the network's device (``models.prepost``): frames go
        up as uint8, the state and small results come back."""
        dev, cfg, n = self._device, self.config, len(frames)
        t0 = time.perf_counter()
        batch = dev.preprocess([f.rgb for f in frames])
        t_box = time.perf_counter()
        states = [self._state_for(f, functools.partial(signature_from_thumbnail, batch.thumbnails[k]))
                  for k, f in enumerate(frames)]
        state = self._batch_state(states)
        t1 = time.perf_counter()
        infer_tensors = getattr(self.backend, "infer_tensors")  # noqa: B009 (offered with device_prepost)
        dout = dev.infer(infer_tensors, batch, state, list(self.backend.state_pairs.values()))
        t2 = time.perf_counter()
        pre = _pre_timings(n, t0, t_box, t_box, t1, t2)
        for i, (cam, _) in enumerate(states):
            cam.memory = {name: dout.state[o][i : i + 1] for name, o in self.backend.state_pairs.items()}
        posts = dev.postprocess(dout.outputs, batch.maps, cfg.score_thresh, segmentation=cfg.segmentation,
                                attention=cfg.attention)
        t3 = time.perf_counter()
        results: list[PerceptionResult | None] = []
        for i, f in enumerate(frames):
            if i in dout.non_finite:
                results.append(None)
                continue
            p = posts[i]
            cls, rows, cols, scores, dist = p.peaks
            det = detections_from_peaks(cls, rows, cols, scores, dist, 8, cfg.max_det, cfg.nms_iou)
            grid = (p.segmentation_lowres if p.segmentation_lowres is not None else p.attention_lowres)
            shape = grid.shape if grid is not None else (1, 1)
            maps = InputResolutionMaps(make_segmentation=p.make_segmentation, make_attention=p.make_attention)
            timings = dict(pre)
            t_host = time.perf_counter()
            results.append(self._result(f, states[i][1], batch.maps[i], det, (shape[0], shape[1]),
                                        p.segmentation_lowres, p.attention_lowres, maps, timings,
                                        self._tall_score(det)))  # the device path: its output detections
            host_s = time.perf_counter() - t_host
            timings.update({"postprocess": 1e3 * ((t3 - t2) / n + host_s), "postprocess.device": 1e3 * (t3 - t2) / n,
                            "postprocess.decode": 1e3 * host_s})
        return self._finish(frames, results, dout.non_finite)


def _signature(boxed: np.ndarray, lmap: LetterboxMap) -> np.ndarray:
    """The scene-cut signature of a letterboxed frame (its image part)."""
    return frame_signature(lmap.crop_valid(boxed))


def _pre_timings(n: int, t0: float, t_box: float, t_norm: float, t1: float, t2: float) -> dict[str, float]:
    """timings_ms of a batch's pre-processing (shared out equally among its n frames) and inference."""
    return {"preprocess": 1e3 * (t1 - t0) / n, "preprocess.letterbox": 1e3 * (t_box - t0) / n,
            "preprocess.normalise": 1e3 * (t_norm - t_box) / n, "preprocess.signature": 1e3 * (t1 - t_norm) / n,
            "infer": 1e3 * (t2 - t1)}
