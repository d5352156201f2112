"""INT8 explicit quantisation: an fp32 ``perception export`` model -> a QDQ ONNX model.

The QDQ form (QuantizeLinear/DequantizeLinear pairs around weights and activations) is what both
runtimes accept: ONNX Runtime runs it with int8 kernels on the CPU here, TensorRT builds it as an
explicitly quantised INT8 engine on a GPU. Only the inputs of Conv / MatMul / Gemm are quantised
(TensorRT's recommended placement); the attention gates, softmax and heads' activations stay float.

Activations are ``s8`` by default: symmetric int8 with zero point 0, which TensorRT requires, so one
file runs in both runtimes. ``u8`` (asymmetric uint8) is ONNX Runtime's fast path on x86 CPUs but
TensorRT rejects it: use it for CPU-only deployments. Weights are symmetric int8 per output channel.

Calibration inputs are exactly what the pipeline feeds the network: frames (synthetic drives or a
list of RGB images from a bag) go through a :class:`~perception.pipeline.perceptor.Perceptor`
running the fp32 model, whose backend records every input, temporal state included.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from perception.deploy.errors import QuantizeError
from perception.runtime.base import Backend, WrappingBackend
from perception.runtime.model_info import METADATA_KEY, ModelInfo, read_model_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeConfig:
    calibration_seeds: tuple[int, int] = (900, 904)  # [first, last): never evaluation seeds (>= 1000)
    frames_per_seed: int = 24
    method: str = "percentile"  # "minmax" | "percentile" | "entropy" (onnxruntime calibrators)
    percentile: float = 99.999
    per_channel: bool = True
    activations: str = "s8"  # "s8": symmetric int8 (TensorRT + ONNX Runtime) | "u8": ONNX Runtime CPU only
    op_types: tuple[str, ...] = ("Conv", "MatMul", "Gemm")  # whose inputs get Q/DQ pairs
    sim_cache: str | None = None  # directory caching rendered calibration drives (None: render each time)

    def __post_init__(self) -> None:
        if self.method not in ("minmax", "percentile", "entropy"):
            raise QuantizeError(f"calibration method must be minmax, percentile or entropy, not {self.method!r}")
        if self.activations not in ("s8", "u8"):
            raise QuantizeError(
                f"activations must be s8 (TensorRT-compatible) or u8 (CPU only), not {self.activations!r}")


class _RecordingBackend(WrappingBackend):
    """Wraps a backend and keeps a copy of every input it is given (the calibration set)."""

    name = "recording"

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.recorded: list[dict[str, np.ndarray]] = []

    def load(self) -> None:
        self.inner.load()

    def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        self.recorded.append({k: np.array(v, copy=True) for k, v in inputs.items()})
        return self.inner.infer(inputs, skip)

    def close(self) -> None:
        self.inner.close()

    def wrapped(self) -> Backend:
        return self.inner


def synthetic_calibration_drives(cfg: QuantizeConfig, size: tuple[int, int]) -> Iterator[list[np.ndarray]]:
    """RGB frames of the synthetic drives named by ``cfg`` (one list per drive), rendered at ``size``."""
    from perception.sim.sequences import load_or_render

    h, w = size
    for seed in range(*cfg.calibration_seeds):
        seq = load_or_render(seed, cfg.frames_per_seed, {"width": w, "height": h}, cache_dir=cfg.sim_cache)
        yield list(seq.rgb)


def bag_calibration_drives(bag: str | Path, topic: str = "", max_frames: int = 96) -> Iterator[list[np.ndarray]]:
    """The frames of one camera of a rosbag2 bag as one drive (in order, so the temporal state is real)."""
    from perception.bag.io import rgb_frames

    frames = list(rgb_frames(bag, topic, max_frames))
    if frames:
        yield frames


def image_calibration_drives(folder: str | Path, max_frames: int = 96) -> Iterator[list[np.ndarray]]:
    """Real photos of a folder (sorted, at most ``max_frames``) as one "drive": calibration on the kind of image
    a real-eyed network will see (e.g. ``data/real_unlabelled`` from ``make data``)."""
    from perception.footage.source import Footage

    frames = [f.rgb for f in Footage(folder)][:max_frames]
    if frames:
        yield frames


def calibration_inputs(fp32_onnx: str | Path, drives: Iterable[list[np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Network inputs (image + temporal state) the pipeline produces when streaming ``drives``."""
    from perception.pipeline.perceptor import FrameInput, Perceptor
    from perception.runtime.onnx_backend import OnnxRuntimeBackend

    rec = _RecordingBackend(OnnxRuntimeBackend(fp32_onnx))
    with rec:
        perceptor = Perceptor(rec)
        for d, frames in enumerate(drives):
            perceptor.reset()
            for t, rgb in enumerate(frames):
                perceptor.process(FrameInput("calib", rgb, stamp=d * 1000.0 + t / 10.0, scene_cut=t == 0))
    if not rec.recorded:
        raise QuantizeError("no calibration frames: give at least one drive / one bag frame")
    return rec.recorded


def calibration_stride(n: int, most: int = 4) -> int:
    """Samples per calibration pass: the largest divisor of ``n`` up to ``most``. onnxruntime's calibrators
    keep every intermediate tensor of a pass in memory before folding it into their ranges/histograms:
    in one pass, 96 frames of the 384x640 SSD-MobileNetV2 (batch 4) took 24 GB and were OOM-killed;
    in passes of 4 the peak is one pass's tensors (histograms merge across passes)."""
    return max(d for d in range(1, min(most, n) + 1) if n % d == 0) if n > 0 else 1


def quantize_int8(fp32_onnx: str | Path, out: str | Path, samples: list[dict[str, np.ndarray]],
                  cfg: QuantizeConfig | None = None) -> ModelInfo:
    """Write the QDQ INT8 model of ``fp32_onnx`` to ``out``, calibrated on ``samples``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    cfg = cfg or QuantizeConfig()
    info = read_model_info(fp32_onnx)
    if info.precision != "fp32":
        raise QuantizeError(f"{fp32_onnx} is already {info.precision}; quantise the fp32 export")
    if not samples:
        raise QuantizeError("no calibration samples")

    class Reader(CalibrationDataReader):
        """Hands out ``samples[start:end]``; onnxruntime's strided calibration moves the range."""

        def __init__(self) -> None:
            self.set_range(0, len(samples))

        def __len__(self) -> int:
            return len(samples)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(samples[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    t0 = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # shape inference + graph clean-up first, as onnxruntime recommends before quantising
        quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
        symmetric = cfg.activations == "s8"
        method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy}[cfg.method]
        try:
            quantize_static(
                str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                per_channel=cfg.per_channel, calibrate_method=method, op_types_to_quantize=list(cfg.op_types),
                # biases stay float: TensorRT rejects int32 DequantizeLinear (it fuses fp32 biases itself)
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": False,
                               "CalibPercentile": cfg.percentile, "CalibMovingAverage": False,
                               "CalibStridedMinMax": calibration_stride(len(samples))},
            )
        except Exception as e:  # onnxruntime raises many types
            raise QuantizeError(f"quantising {fp32_onnx} failed: {e}") from e
    qinfo = replace(info, precision="int8", extra={
        **info.extra,
        "quantization": {"format": "QDQ", "activations": "int8 symmetric" if symmetric else "uint8 asymmetric",
                         "weights": "int8 symmetric" + (" per-channel" if cfg.per_channel else ""),
                         "method": cfg.method, "calibration_samples": len(samples), "op_types": list(cfg.op_types),
                         "tensorrt_compatible": symmetric},
    })
    qmodel = onnx.load(str(out))
    # the quantiser drops metadata_props: carry the fp32 model's over, with the INT8 record
    props = {p.key: p.value for p in onnx.load(str(fp32_onnx), load_external_data=False).metadata_props}
    props[METADATA_KEY] = qinfo.to_json()
    del qmodel.metadata_props[:]
    for k, v in props.items():
        entry = qmodel.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(qmodel, str(out))
    log.info("quantised %s -> %s (%d calibration inputs) in %.1f s", fp32_onnx, out, len(samples),
             time.perf_counter() - t0)
    return qinfo


def quantized_copy(fp32_onnx: str | Path, cfg: QuantizeConfig | None = None) -> Path:
    """``<fp32>-int8.onnx`` (``-int8u8`` for u8 activations) next to the fp32 model, calibrated on synthetic
    drives; made once and reused (on-demand INT8 for the runtime selection and the benchmarks)."""
    cfg = cfg or QuantizeConfig()
    fp32 = Path(fp32_onnx)
    out = fp32.with_name(fp32.stem + ("-int8.onnx" if cfg.activations == "s8" else "-int8u8.onnx"))
    if not out.is_file():
        log.warning("quantising %s to INT8 (synthetic-world calibration, once) -> %s", fp32, out)
        samples = calibration_inputs(fp32, synthetic_calibration_drives(cfg, read_model_info(fp32).input_size))
        tmp = out.with_suffix(".tmp.onnx")
        quantize_int8(fp32, tmp, samples, cfg)
        tmp.replace(out)
    return out
