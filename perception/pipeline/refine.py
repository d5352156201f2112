"""Attention-guided refinement: a two-pass Perceptor that spends full resolution only where attention points.

    frame (e.g. 1280x720) ─► pass 1: the plain Perceptor on the letterboxed (downscaled) frame
                          ─► policy: attention map + small boxes (+ last frame's small boxes) -> up to K regions
                          ─► pass 2: those regions cropped at native resolution (crop = the network's input size,
                             e.g. 448x256 frame pixels), batched through the SAME backend
                          ─► zoom-out (when pass 1 has a large candidate, before the crops): the whole frame at
                             half pass 1's scale, for objects too large for pass 1 (its large boxes only)
                          ─► merge: crop boxes cut by an inner crop edge (or lying inside a pass-1 object that
                             crosses one: a part of it) dropped, pass-1 boxes a crop resolves (found again, or
                             unsure and not confirmed) superseded by it, large pass-1 boxes of a part of a
                             zoom-out object dropped, class-aware box fusion (score-weighted mean, best score),
                             one class per vehicle

The policy works on a 16-px grid of "need": attention above the frame's median by more than a share of
its peak (a flat map points nowhere), muted inside confident boxes pass 1 already resolves (large ones),
plus a bump at each small box of pass 1 and, when streaming, of the last frame. Greedy: the crop-sized
window holding the most need is taken (centred on that need), its interior cleared, until
``max_regions`` / ``max_pixels`` is spent or no window gains ``min_gain`` -- so a frame with nothing
attended costs pass 1 only. ``policy: uniform | band`` are the content-blind baselines of
``perception bench attention`` (a round-robin tiling; the tiling's middle row).

The policy (:func:`plan_regions`) and the merge (:mod:`perception.pipeline.refine_merge`) are pure numpy and know
nothing of the network. :class:`RefiningPerceptor` is a :class:`~perception.pipeline.perceptor.Perceptor` (same calls,
same :class:`PerceptionResult`, plus :attr:`RefinedResult.refinement`) built only on the Perceptor's public
API, so every backend (torch, ONNX Runtime, TensorRT) runs it unchanged.

Temporal networks: pass 1 streams with the camera's memory as usual. The crops are a different view
(another scale and place) that the memory was not built from, so each crop runs STATELESS: the
network's initial (empty) state, exactly like a camera's first frame (``scene_cut`` on every crop).

The zoom-out: the COCO-trained trunk was trained at 300 x 300, so at 384 x 640 an object taller than about 200
network pixels (a car within a few metres) loses its score, and crops only zoom further in. Pass 1 reports its best
candidate at least ``large_size`` tall down to ``large_score`` (:attr:`Perceptor.tall_probe`, below the output
threshold); such a frame also runs at ``zoom_out`` x pass 1's scale, centred on a grey canvas of the input size,
and the boxes at least ``large_size`` tall (in pass-1 network pixels) join. It runs stateless like a crop, is one
more pass besides ``max_regions`` (within ``max_pixels`` and the deadline, which serve it first), and is counted
in ``pixels_processed`` and ``refine.zoom_out_per_frame``.

Segmentation and the attention map of the result are pass 1's (at the input resolution); only the
detections are refined.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from perception.core.boxes import as_boxes, box_area, clip_boxes
from perception.core.decode import attention_scores_lowres
from perception.core.temporal import ResetPolicy, ResetReason
from perception.core.types import Detections
from perception.pipeline.perceptor import (
    FrameInput,
    InvalidOutputError,
    PerceptionResult,
    Perceptor,
    PerceptorConfig,
    PipelineError,
)
from perception.pipeline.refine_merge import merge_passes
from perception.runtime.base import Backend

POLICIES = ("attention", "uniform", "band")


class RefineError(PipelineError):
    """Bad refinement configuration; the message names the field and its valid range."""


@dataclass(frozen=True)
class RefineConfig:
    enabled: bool = True
    max_regions: int = 3  # crops per frame at most (K; the zoom-out, when it runs, is one more pass)
    max_pixels: int = 0  # network-input pixels per frame at most, pass 1 included; 0: no pixel cap
    crop_scale: float = 1.0  # crop resolution relative to the frame (1.0: native); window = input size / scale
    min_attention: float = 0.05  # peak attention less than this above the frame's median: nothing is attended
    relative_threshold: float = 0.55  # a cell is attended above median + this share of (peak - median)
    small_size: float = 16.0  # a box this tall or less in NETWORK pixels (pass 1) is small: worth a closer look
    supersede_size: float = 8.0  # pass-1 boxes this tall or less (network pixels) inside a crop give way to it
    supersede_iou: float = 0.2  # a pass-1 box inside a crop that the crop found again (a box of its class overlapping
    # it this much) gives way to the crop's box
    supersede_keep: float = 0.6  # a pass-1 box inside a crop that the crop did not find again stays when it scores at
    # least this (a confident object the crop's scale missed), else it goes (the crop looked closer and saw nothing)
    resolved_size: float = 32.0  # a pass-1 box at least this tall (network pixels) scoring at least supersede_keep
    # stays even when a crop found it again (pass 1 resolves it; the fusion merges the crop's box into it)
    partial_cover: float = 0.7  # a crop box lying this much inside a pass-1 box of its class that crosses an inner
    # edge of the crop is a part of that larger object, which pass 1 resolves: dropped (> 1: off)
    small_score: float = 0.1  # small boxes from pass 1 (and last frame) at or above this score steer the policy
    box_weight: float = 4.0  # need a small box adds (x its score), in units of one fully attended cell
    min_gain: float = 2.0  # a region must cover at least this much need (cell units) to be refined
    cell: int = 16  # policy grid in frame pixels
    edge_margin: float = 2.0  # a crop box within this many pixels of an inner crop edge is cut: dropped
    overlap: int = 32  # frame pixels along a crop's inner edges whose need a crop leaves to the next one
    fuse_iou: float = 0.55  # boxes of one class overlapping more than this are fused across scales
    batch: int = 4  # crops per inference call (keep <= the backend's max batch)
    use_previous: bool = True  # streaming: last frame's small detections also steer the policy
    deadline_ms: float = 0.0  # crops run only while the frame's processing (pass 1 included) is expected to end within
    # this: 0: no deadline (every planned crop runs, deterministic -- evaluations); > 0: milliseconds; -1: the camera's
    # frame period, from its header stamps (the node: refinement spends the time the camera leaves, best crop first)
    zoom_out: float = 0.5  # the zoom-out pass: the whole frame at this scale of pass 1 (0: none), for objects too large
    # for pass 1 (the COCO trunk loses a vehicle taller than about 200 network pixels: docs/refinement.md); it runs
    # when pass 1 has a candidate at least large_size tall scoring at least large_score
    large_size: float = 160.0  # network pixels (pass 1): a box this tall or taller is large (the zoom-out's band)
    large_score: float = 0.1  # a large pass-1 candidate at or above this score (below the output threshold too:
    # Perceptor.tall_probe reads the candidates before it) calls the zoom-out
    policy: str = "attention"  # attention | uniform (baseline: max_regions tiles of a fixed grid, round robin,
    # whatever the frame shows) | band (baseline: the grid's middle row, where a level road's horizon lies)

    def __post_init__(self) -> None:
        checks = [
            ("max_regions", 0 <= self.max_regions <= 64, "0..64"),
            ("max_pixels", self.max_pixels >= 0, ">= 0"),
            ("crop_scale", 0.1 <= self.crop_scale <= 4.0, "0.1..4"),
            ("relative_threshold", 0.0 <= self.relative_threshold < 1.0, "[0, 1)"),
            ("cell", 2 <= self.cell <= 128, "2..128"),
            ("fuse_iou", 0.0 < self.fuse_iou <= 1.0, "(0, 1]"),
            ("partial_cover", self.partial_cover > 0.0, "> 0 (above 1: off)"),
            ("supersede_iou", 0.0 < self.supersede_iou <= 1.0, "(0, 1]"),
            ("supersede_keep", 0.0 <= self.supersede_keep <= 1.0, "[0, 1]"),
            ("resolved_size", self.resolved_size > 0.0, "> 0 (network pixels)"),
            ("batch", 1 <= self.batch <= 256, "1..256"),
            ("deadline_ms", self.deadline_ms == -1.0 or 0.0 <= self.deadline_ms <= 1e6,
             "-1 (the camera's frame period), 0 (none) or milliseconds up to 1e6"),
            ("zoom_out", self.zoom_out == 0.0 or 0.1 <= self.zoom_out <= 0.9, "0 (off) or 0.1..0.9"),
            ("large_size", 8.0 <= self.large_size <= 4096.0, "8..4096"),
            ("large_score", 0.0 < self.large_score <= 1.0, "(0, 1]"),
            ("policy", self.policy in POLICIES, " | ".join(POLICIES)),
        ]
        for name, ok, valid in checks:
            if not ok:
                raise RefineError(f"refine.{name} = {getattr(self, name)!r} is out of range; use {valid}")


# What perception_node runs by default (its refine.* parameters take their defaults from here; `perception eval
# --labels` runs the same, without the deadline): on, 2 crops (measured as good as 3 on every real view), within the
# camera's frame period
NODE_REFINE = RefineConfig(enabled=True, max_regions=2, deadline_ms=-1.0)


@dataclass(frozen=True)
class RefinementInfo:
    """What pass 2 did for one frame."""

    regions: np.ndarray  # (K, 4) int32 xyxy crop windows in input-image pixels (K may be 0)
    reason: str  # "refined" | why not: "disabled", "native" (pass 1 already at crop resolution), "nothing attended",
    # "budget", "low gain", "deadline" (crops were planned, none fitted in refine.deadline_ms)
    pixels_processed: int  # network-input pixels run for this frame (pass 1 + crops)
    full_pixels: int  # pixels of the input image at full resolution
    added: int = 0  # detections kept from the crops (or the zoom-out) that pass 1 did not have
    zoom_out: bool = False  # the zoom-out pass ran (one more network input's pixels)

    @property
    def pixel_ratio(self) -> float:
        """Pixels processed / full-resolution pixels (a full-res single pass is ~1.0)."""
        return self.pixels_processed / max(1, self.full_pixels)


@dataclass(frozen=True, init=False)
class RefinedResult(PerceptionResult):
    """A :class:`PerceptionResult` with what refinement did to the frame."""

    refinement: RefinementInfo | None = None

    def __init__(self, *args: Any, refinement: RefinementInfo | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "refinement", refinement)


@dataclass(frozen=True)
class RegionPlan:
    regions: np.ndarray  # (K, 4) int32 xyxy
    reason: str
    gains: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # need covered by each region


def crop_window(frame_hw: tuple[int, int], input_hw: tuple[int, int], crop_scale: float) -> tuple[int, int]:
    """(h, w) of a crop in frame pixels: the network input seen at ``crop_scale``, at most the frame."""
    fh, fw = frame_hw
    return min(fh, round(input_hw[0] / crop_scale)), min(fw, round(input_hw[1] / crop_scale))


def pass1_scale(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> float:
    """Letterbox scale of pass 1 (network pixels per frame pixel)."""
    return min(input_hw[0] / frame_hw[0], input_hw[1] / frame_hw[1])


def region_budget(frame_hw: tuple[int, int], input_hw: tuple[int, int], cfg: RefineConfig,
                  spent: int = 0) -> tuple[int, str]:
    """(crops this frame may take, "" or why it takes none: "disabled", "native", "budget"); ``spent``: network
    inputs the frame already takes besides pass 1 (the zoom-out), against ``cfg.max_pixels``."""
    if not cfg.enabled or cfg.max_regions == 0:
        return 0, "disabled"
    if pass1_scale(frame_hw, input_hw) >= 0.9 * cfg.crop_scale:
        return 0, "native"  # pass 1 already sees the frame at (about) the crops' resolution
    crop_px = input_hw[0] * input_hw[1]
    budget = cfg.max_regions
    if cfg.max_pixels:
        budget = min(budget, max(0, (cfg.max_pixels - (1 + spent) * crop_px) // crop_px))  # pass 1: one input
    return budget, "" if budget else "budget"


def _need_map(attention: np.ndarray | None, frame_hw: tuple[int, int], cfg: RefineConfig) -> np.ndarray:
    fh, fw = frame_hw
    gh, gw = max(1, -(-fh // cfg.cell)), max(1, -(-fw // cfg.cell))
    if attention is None or attention.size == 0:
        return np.zeros((gh, gw), np.float32)
    grid = np.asarray(cv2.resize(np.nan_to_num(np.asarray(attention, np.float32), nan=0.0), (gw, gh),
                                 interpolation=cv2.INTER_AREA), np.float32)
    peak, typical = float(grid.max()), float(np.median(grid))
    if peak - typical < cfg.min_attention:  # a flat map points nowhere
        return np.zeros((gh, gw), np.float32)
    thr = typical + cfg.relative_threshold * (peak - typical)
    return np.clip((grid - thr) / max(peak - thr, 1e-6), 0.0, None).astype(np.float32)


def plan_regions(
    frame_hw: tuple[int, int],
    input_hw: tuple[int, int],
    attention: np.ndarray | None,
    small_boxes: np.ndarray,
    small_scores: np.ndarray,
    cfg: RefineConfig,
    large_boxes: np.ndarray | None = None,
    spent: int = 0,
) -> RegionPlan:
    """Crop windows (frame pixels) to re-run at ``cfg.crop_scale``, best first.

    ``attention`` is pass 1's map covering the whole frame, at any resolution (the Perceptor's low-resolution
    ``attention_lowres`` or the frame-resolution map; it is resampled to the planning grid); ``small_boxes`` /
    ``small_scores`` are candidates that pass 1 (or the last frame) saw too small; ``large_boxes`` are objects pass 1
    already resolves (their attention is not a reason to look again). Greedy: the window covering the
    most remaining need is taken, its need cleared, until the region / pixel budget is spent or no
    window gains ``cfg.min_gain``. ``spent``: network inputs the frame takes besides pass 1 (:func:`region_budget`).
    """
    empty = np.zeros((0, 4), np.int32)
    budget, why_not = region_budget(frame_hw, input_hw, cfg, spent)
    if why_not:
        return RegionPlan(empty, why_not)
    fh, fw = frame_hw
    ch, cw = crop_window(frame_hw, input_hw, cfg.crop_scale)
    need = _need_map(attention, frame_hw, cfg)
    c = cfg.cell
    if large_boxes is not None and len(large_boxes):
        for x0, y0, x1, y1 in as_boxes(large_boxes):
            need[int(y0 // c): int(np.ceil(y1 / c)), int(x0 // c): int(np.ceil(x1 / c))] = 0.0
    boxes = as_boxes(small_boxes)
    scores = np.asarray(small_scores, np.float32).reshape(-1)
    for (x0, y0, x1, y1), s in zip(boxes, scores):
        gy = int(np.clip((y0 + y1) * 0.5 // c, 0, need.shape[0] - 1))
        gx = int(np.clip((x0 + x1) * 0.5 // c, 0, need.shape[1] - 1))
        need[gy, gx] += cfg.box_weight * float(s)
    if not need.any():
        return RegionPlan(empty, "nothing attended")
    wh, ww = max(1, ch // c), max(1, cw // c)  # window in whole cells (inside the crop)
    regions: list[list[int]] = []
    gains: list[float] = []
    while len(regions) < budget:
        integral = cv2.integral(need.astype(np.float64))
        sums = (integral[wh:, ww:] - integral[:-wh, ww:] - integral[wh:, :-ww] + integral[:-wh, :-ww])
        best = np.unravel_index(int(np.argmax(sums)), sums.shape)
        gy, gx = int(best[0]), int(best[1])
        gain = float(sums[gy, gx])
        if gain <= 0.0 or gain < cfg.min_gain:
            break
        # centre the crop on the need it covers (many windows tie when the need is smaller than a crop; the
        # first of them would leave it at the crop's bottom-right edge), inside the frame
        sub = need[gy: gy + wh, gx: gx + ww]
        yy, xx = np.mgrid[gy: gy + sub.shape[0], gx: gx + sub.shape[1]]
        cy, cx = (float((yy * sub).sum() / sub.sum()) + 0.5) * c, (float((xx * sub).sum() / sub.sum()) + 0.5) * c
        y0 = int(np.clip(round(cy - ch / 2.0), 0, fh - ch))
        x0 = int(np.clip(round(cx - cw / 2.0), 0, fw - cw))
        regions.append([x0, y0, x0 + cw, y0 + ch])
        gains.append(gain)
        # the crop resolves what lies well inside it; near an inner edge an object may be cut (the merge drops
        # such boxes), so that need stays for the next crop, which then overlaps this one
        my, mx = min(cfg.overlap, ch // 4), min(cfg.overlap, cw // 4)  # a small crop keeps its middle half at least
        ya, yb = (y0 + my if y0 > 0 else 0), (y0 + ch - my if y0 + ch < fh else fh)
        xa, xb = (x0 + mx if x0 > 0 else 0), (x0 + cw - mx if x0 + cw < fw else fw)
        need[-(-ya // c): yb // c, -(-xa // c): xb // c] = 0.0
    return RegionPlan(np.asarray(regions, np.int32).reshape(-1, 4), "refined" if regions else "low gain",
                      np.asarray(gains, np.float32))


def tile_grid(frame_hw: tuple[int, int], input_hw: tuple[int, int], crop_scale: float) -> np.ndarray:
    """(N, 4) int32 crop windows tiling the frame (fewest columns x rows that cover it, evenly spaced), row-major."""
    fh, fw = frame_hw
    ch, cw = crop_window(frame_hw, input_hw, crop_scale)
    ys = np.linspace(0, fh - ch, max(1, -(-fh // ch))).round().astype(np.int32)
    xs = np.linspace(0, fw - cw, max(1, -(-fw // cw))).round().astype(np.int32)
    return np.asarray([[x, y, x + cw, y + ch] for y in ys for x in xs], np.int32).reshape(-1, 4)


def fixed_regions(frame_hw: tuple[int, int], input_hw: tuple[int, int], cfg: RefineConfig, counter: int,
                  spent: int = 0) -> RegionPlan:
    """The content-blind baselines: ``uniform`` takes the next ``max_regions`` tiles of :func:`tile_grid` (round
    robin from ``counter``, so every tile gets its turn); ``band`` the middle row's tiles."""
    n, why_not = region_budget(frame_hw, input_hw, cfg, spent)
    if why_not:
        return RegionPlan(np.zeros((0, 4), np.int32), why_not)
    grid = tile_grid(frame_hw, input_hw, cfg.crop_scale)
    if cfg.policy == "band":
        rows = np.unique(grid[:, 1])
        grid = grid[grid[:, 1] == rows[len(rows) // 2]]
    n = min(n, len(grid))
    idx = (counter + np.arange(n)) % len(grid)
    return RegionPlan(grid[idx], "refined" if n else "budget")


def wants_zoom_out(tall_score: float, input_hw: tuple[int, int], cfg: RefineConfig) -> bool:
    """Whether a frame gets the zoom-out pass (besides its crops, before them): on, within ``cfg.max_pixels`` (pass 1
    and the zoom-out), and pass 1 had a candidate at least ``cfg.large_size`` network pixels tall scoring at least
    ``cfg.large_score`` (``tall_score``: the best such score, :attr:`PerceptionResult.tall_score`) -- an object the
    network may see too large to score."""
    if not cfg.enabled or cfg.zoom_out == 0.0:
        return False
    if cfg.max_pixels and cfg.max_pixels < 2 * input_hw[0] * input_hw[1]:
        return False
    return tall_score >= cfg.large_score


def zoom_out_view(rgb: np.ndarray, input_hw: tuple[int, int], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The zoom-out pass's input: ``rgb`` resized by ``scale`` (network pixels per frame pixel, below pass 1's)
    and centred on a grey canvas of the network's input size; and the window (x0, y0, x1, y1) of frame pixels
    (float32) the canvas covers -- beyond the frame where it is padding. A box on the canvas is ``box / scale +
    (x0, y0)`` in the frame."""
    from perception.core.letterbox import PAD_VALUE

    ih, iw = input_hw
    fh, fw = rgb.shape[:2]
    w, h = min(iw, max(1, round(fw * scale))), min(ih, max(1, round(fh * scale)))
    canvas = np.full((ih, iw, 3), PAD_VALUE, np.uint8)
    ox, oy = (iw - w) // 2, (ih - h) // 2
    canvas[oy:oy + h, ox:ox + w] = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    sx, sy = w / fw, h / fh
    window = np.array([-ox / sx, -oy / sy, (iw - ox) / sx, (ih - oy) / sy], np.float32)
    return canvas, window


def zoom_out_boxes(det: Detections, window: np.ndarray, input_hw: tuple[int, int],
                   frame_hw: tuple[int, int]) -> Detections:
    """The zoom-out pass's detections (network-input pixels of :func:`zoom_out_view`'s canvas) in frame pixels,
    clipped to the frame; boxes lying wholly in the padding go."""
    x0, y0, x1, y1 = (float(v) for v in window)
    sx, sy = input_hw[1] / (x1 - x0), input_hw[0] / (y1 - y0)
    b = as_boxes(det.boxes) / np.array([sx, sy, sx, sy], np.float32) + np.array([x0, y0, x0, y0], np.float32)
    b = clip_boxes(b, frame_hw[1], frame_hw[0]).astype(np.float32)
    keep = box_area(b) > 0
    return Detections(b[keep], det.scores[keep], det.class_ids[keep])


def frame_period(intervals: list[float]) -> float | None:
    """A camera's frame period (s) from its recent stamp intervals: the median of those in (0, 2] s (a bag loop or
    time jump gives none of them); None when there are none."""
    ok = [d for d in intervals if 0.0 < d <= 2.0]
    return float(np.median(ok)) if ok else None


def crops_that_fit(remaining_s: float, crop_s: float, wanted: int) -> int:
    """How many of ``wanted`` crops, at ``crop_s`` seconds each, end within ``remaining_s``."""
    if wanted <= 0 or remaining_s <= 0.0:
        return 0
    return min(wanted, int(remaining_s / max(crop_s, 1e-6)))


def small_detections(det: Detections, scale: float, cfg: RefineConfig) -> tuple[Detections, Detections]:
    """(small, large) confident detections of pass 1 (small: at most ``cfg.small_size`` tall in network pixels)."""
    conf = det.scores >= cfg.small_score
    tall = (det.boxes[:, 3] - det.boxes[:, 1]) * scale if len(det) else np.zeros(0, np.float32)
    small = conf & (tall <= cfg.small_size)
    return det.select(small), det.select(conf & ~small)


class RefiningPerceptor(Perceptor):
    """A Perceptor whose detections are refined by native-resolution crops where attention points.

    Same calls and result type as :class:`Perceptor`; each result is a :class:`RefinedResult` carrying
    its :class:`RefinementInfo`. :attr:`totals` sums pixels over every frame (diagnostics).
    """

    def __init__(self, backend: Backend, config: PerceptorConfig | None = None,
                 refine: RefineConfig | None = None) -> None:
        super().__init__(backend, config)
        self.refine = refine or RefineConfig()
        crop_cfg = replace(self.config, segmentation=False, attention=False,
                           reset=ResetPolicy(max_gap_s=self.config.reset.max_gap_s, detect_scene_cuts=False))
        self._crops = Perceptor(backend, crop_cfg)
        self._previous: dict[str, Detections] = {}
        self._counters: dict[str, int] = {}  # content-blind policies: where each camera's round robin stands
        # crops planned but left out by refine.deadline_ms ("deadline_cut")
        self.totals = {"frames": 0, "regions": 0, "zoom_out": 0, "pixels_processed": 0, "full_pixels": 0,
                       "deadline_cut": 0}
        self.camera_totals: dict[str, dict[str, int]] = {}  # the same per camera
        self._stamps: dict[str, tuple[float, list[float]]] = {}  # camera -> (last stamp, recent intervals)
        self._crop_s: float | None = None  # seconds per crop (running mean of the crops run so far)
        if self.refine.enabled and self.refine.zoom_out > 0.0:  # pass 1 reports its best large candidate
            self.tall_probe = (self.refine.large_score, self.refine.large_size)

    def reset(self, camera_id: str | None = None) -> None:
        super().reset(camera_id)
        if camera_id is None:
            self._previous.clear()
        else:
            self._previous.pop(camera_id, None)

    @property
    def pixel_ratio(self) -> float:
        """Pixels processed / full-resolution pixels over every frame so far (0 before the first)."""
        return self.totals["pixels_processed"] / self.totals["full_pixels"] if self.totals["full_pixels"] else 0.0

    def process_batch(self, frames: list[FrameInput]) -> list[PerceptionResult]:
        start = time.perf_counter()
        deadline = self._deadline(frames)
        try:
            results = super().process_batch(frames)
        except InvalidOutputError as e:  # refine the valid frames; the error still reports the invalid ones
            by_cam = {f.camera_id: f for f in frames}
            valid = [r for r in e.results if r is not None]
            refined = iter(self._refine([by_cam[r.camera_id] for r in valid], valid, start, deadline))
            e.results[:] = [None if r is None else next(refined) for r in e.results]
            raise
        return list(self._refine(frames, results, start, deadline))

    def _deadline(self, frames: list[FrameInput]) -> float | None:
        """Seconds this batch may take, pass 1 included (refine.deadline_ms), or None: every planned crop runs.
        -1: the shortest frame period among the batch's cameras, learnt from their stamps (None until known): the
        smallest step between the frames the caller RECEIVED (``FrameInput.received``: the node's, dropped frames
        included) where given, else the step since the last frame processed here -- never the node's own rate, which
        the crops would slow down and so lengthen their own deadline."""
        if self.refine.deadline_ms >= 0:  # none (0) or fixed: no period to learn
            return self.refine.deadline_ms / 1e3 if self.refine.deadline_ms > 0 else None
        periods = []
        for f in frames:
            last, intervals = self._stamps.get(f.camera_id, (None, []))
            step = f.received.min_step if f.received is not None else None if last is None else f.stamp - last
            if step is not None:
                intervals = [*intervals, step][-8:]
            self._stamps[f.camera_id] = (f.stamp, intervals)
            periods.append(frame_period(intervals))
        known = [p for p in periods if p is not None]
        return min(known) if len(known) == len(periods) else None

    def _refine(self, frames: list[FrameInput], results: list[PerceptionResult], start: float,
                deadline: float | None) -> list[RefinedResult]:
        t0 = time.perf_counter()
        by_cam = {f.camera_id: f for f in frames}
        in_hw = (self.input_h, self.input_w)
        plans: list[RegionPlan] = []
        zoom: list[bool] = []  # frames that get the zoom-out pass
        for r in results:
            f = by_cam[r.camera_id]
            fh, fw = f.rgb.shape[:2]
            scale = pass1_scale((fh, fw), in_hw)
            zoom.append(wants_zoom_out(r.tall_score, in_hw, self.refine))
            small, large = small_detections(r.detections, scale, self.refine)
            if r.reset is not ResetReason.NONE:
                self._previous.pop(r.camera_id, None)
            prev = self._previous.get(r.camera_id) if self.refine.use_previous else None
            sb, ss = small.boxes, small.scores
            if prev is not None and len(prev):
                sb, ss = np.concatenate([sb, prev.boxes]), np.concatenate([ss, prev.scores])
            if self.refine.policy == "attention":
                plans.append(plan_regions((fh, fw), in_hw, r.attention_lowres, sb, ss, self.refine, large.boxes,
                                          int(zoom[-1])))
            else:
                count = self._counters.get(r.camera_id, 0)
                plans.append(fixed_regions((fh, fw), in_hw, self.refine, count, int(zoom[-1])))
                self._counters[r.camera_id] = count + len(plans[-1].regions)
        t1 = time.perf_counter()
        # every frame's zoom-out first (a near vehicle pass 1 cannot score), then its best crop, then the second
        # best, ...: a deadline leaves out the least needed ones. Job (i, -1) is frame i's zoom-out, (i, k) its crop k
        jobs = sorted([(i, -1) for i, z in enumerate(zoom) if z]
                      + [(i, k) for i, p in enumerate(plans) for k in range(len(p.regions))],
                      key=lambda j: (j[1], j[0]))
        crops: dict[tuple[int, int], Detections] = {}  # in crop pixels; the zoom-out's in frame pixels
        tried: set[tuple[int, int]] = set()
        per_crop = self._crop_s if self._crop_s is not None else (t0 - start) / max(1, len(frames))
        while len(tried) < len(jobs):
            chunk = jobs[len(tried): len(tried) + self.refine.batch]
            if deadline is not None:
                chunk = chunk[:crops_that_fit(start + deadline - time.perf_counter(), per_crop, len(chunk))]
                if not chunk:
                    break
            tried.update(chunk)
            tc = time.perf_counter()
            inputs = []
            windows: dict[int, np.ndarray] = {}  # frame -> the zoom-out's window
            for i, k in chunk:
                f = by_cam[results[i].camera_id]
                if k < 0:
                    view, windows[i] = zoom_out_view(f.rgb, in_hw, pass1_scale(f.rgb.shape[:2], in_hw)
                                                     * self.refine.zoom_out)
                    inputs.append(FrameInput(f"{f.camera_id}#zoom", view, f.stamp, scene_cut=True))
                    continue
                x0, y0, x1, y1 = plans[i].regions[k]
                inputs.append(FrameInput(f"{f.camera_id}#refine{k}", np.ascontiguousarray(f.rgb[y0:y1, x0:x1]),
                                         f.stamp, scene_cut=True))  # stateless: the initial state
            try:
                outs = self._crops.process_batch(inputs)
            except InvalidOutputError as e:  # a crop with bad outputs adds nothing; the frame stands
                outs = [r for r in e.results if r is not None]
                chunk = [job for job, r in zip(chunk, e.results) if r is not None]
            for job, out in zip(chunk, outs):
                d = out.detections
                if job[1] < 0:  # the zoom-out: to frame pixels, inside the frame
                    fh, fw = by_cam[results[job[0]].camera_id].rgb.shape[:2]
                    d = zoom_out_boxes(d, windows[job[0]], (self.input_h, self.input_w), (fh, fw))
                crops[job] = d
            took = (time.perf_counter() - tc) / max(1, len(inputs))
            self._crop_s = took if self._crop_s is None else 0.7 * self._crop_s + 0.3 * took
            per_crop = self._crop_s
        # a frame's crops left out are its least needed (the tail of its plan): the plan keeps what was tried
        cut = [sum((i, k) not in tried for k in range(len(p.regions))) for i, p in enumerate(plans)]
        zoom_cut = [z and (i, -1) not in tried for i, z in enumerate(zoom)]
        plans = [p if not c else RegionPlan(p.regions[:len(p.regions) - c], p.reason if c < len(p.regions)
                                            else "deadline", p.gains[:len(p.regions) - c])
                 for p, c in zip(plans, cut)]
        if self.refine.policy != "attention":  # the round robin goes on from the first tile left out
            for r, c in zip(results, cut):
                self._counters[r.camera_id] -= c
        t2 = time.perf_counter()
        refined: list[RefinedResult] = []
        crop_px = self.input_h * self.input_w
        for i, (r, plan) in enumerate(zip(results, plans)):
            f = by_cam[r.camera_id]
            fh, fw = f.rgb.shape[:2]
            ran = [k for k in range(len(plan.regions)) if (i, k) in crops]  # a failed crop adds and supersedes nothing
            zoomed = crops.get((i, -1))
            det, src = merge_passes(r.detections, plan.regions[ran], [crops[(i, k)] for k in ran], (fh, fw),
                                    pass1_scale((fh, fw), in_hw), self.refine, self.config.vehicle_nms_iou,
                                    self.config.max_det, zoomed)
            if (ran or zoomed is not None) and r.attention_lowres is not None:
                det = Detections(det.boxes, det.scores, det.class_ids,
                                 attention_scores_lowres(r.attention_lowres, det.boxes, r.lowres_scale, (fh, fw)))
            scale = pass1_scale((fh, fw), (self.input_h, self.input_w))
            self._previous[r.camera_id] = small_detections(det, scale, self.refine)[0]
            info = RefinementInfo(plan.regions, plan.reason, crop_px * (1 + len(plan.regions) + (zoomed is not None)),
                                  fh * fw, int((src > 0).sum()), zoomed is not None)
            for totals in (self.totals, self.camera_totals.setdefault(r.camera_id, dict.fromkeys(self.totals, 0))):
                totals["frames"] += 1
                totals["deadline_cut"] += cut[i] + zoom_cut[i]
                totals["regions"] += len(plan.regions)
                totals["zoom_out"] += zoomed is not None
                totals["pixels_processed"] += info.pixels_processed
                totals["full_pixels"] += info.full_pixels
            share = 1e3 / max(1, len(results))
            timings = {**r.timings_ms, "refine_plan": (t1 - t0) * share, "refine_infer": (t2 - t1) * share,
                       "refine_merge": 0.0}
            refined.append(RefinedResult(r.camera_id, r.stamp, det, reset=r.reset, timings_ms=timings,
                                         segmentation_lowres=r.segmentation_lowres,
                                         attention_lowres=r.attention_lowres, lowres_scale=r.lowres_scale,
                                         maps=r.maps, tall_score=r.tall_score, refinement=info))
        t3 = time.perf_counter()
        for res in refined:
            res.timings_ms["refine_merge"] = (t3 - t2) * 1e3 / max(1, len(refined))
        return refined

    def diagnostics(self, camera_id: str | None = None) -> dict[str, str]:
        """Key/values for /diagnostics (one camera's, or over all): regions per frame and pixels processed
        against the full-resolution frame."""
        t = self.totals if camera_id is None else self.camera_totals.get(camera_id, dict.fromkeys(self.totals, 0))
        ratio = t["pixels_processed"] / t["full_pixels"] if t["full_pixels"] else 0.0
        return {"refine.enabled": str(self.refine.enabled).lower(),
                "refine.regions_per_frame": f"{t['regions'] / max(1, t['frames']):.2f}",
                "refine.zoom_out_per_frame": f"{t['zoom_out'] / max(1, t['frames']):.2f}",
                "refine.deadline_cut_per_frame": f"{t['deadline_cut'] / max(1, t['frames']):.2f}",
                "refine.pixel_ratio": f"{ratio:.3f}"}


def draw_regions(rgb: np.ndarray, regions: np.ndarray, color: tuple[int, int, int] = (0, 255, 255),
                 thickness: int = 2) -> np.ndarray:
    """A copy of ``rgb`` with the refined crop windows outlined (debug overlays)."""
    out = np.ascontiguousarray(rgb).copy()
    for x0, y0, x1, y1 in np.asarray(regions, np.int64).reshape(-1, 4).tolist():
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, thickness)
    return out
