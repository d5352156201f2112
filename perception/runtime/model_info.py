"""What a deployed network needs to say about itself, embedded in the ONNX file (and engine sidecars).

An exported model must run without the checkpoint or the Python class that made it: the runtime
reads input size, normalisation, class names, the state contract (which input is fed by which
output, per-sample shapes), the batch range and the hash of the weights from here. The record is
stored as JSON under the ONNX ``metadata_props`` key :data:`METADATA_KEY`; nothing here imports
torch, so the ONNX Runtime and TensorRT backends stay light.

The tensor names are the networks' own (:mod:`perception.models.contract`: the model defines the
contract, the runtime reads it); this module is the runtime's record of them in a deployed file. The
deploy layer (``perception.deploy``) writes the record, the backends read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from perception.core.anchors import num_anchors
from perception.models.contract import IMAGE_INPUT, state_output_name
from perception.runtime.base import Backend, BackendError, TensorSpec

METADATA_KEY = "perception.model_info"
FORMAT_VERSION = 3  # 2: det_head (anchor-head networks); 3: fine_level (the anchor head's stride-8 level)


@dataclass(frozen=True)
class ModelInfo:
    name: str  # architecture name (registry), e.g. "stan_s_temporal"
    input_size: tuple[int, int]  # (H, W) the graph was exported for
    max_batch: int  # batch range is 1..max_batch
    det_classes: tuple[str, ...]
    seg_classes: tuple[str, ...]
    state_shapes: dict[str, tuple[int, ...]]  # state input -> per-sample shape (no batch axis)
    weights_sha256: str = ""  # hash of the checkpoint weights the graph was exported from
    precision: str = "fp32"  # "fp32" | "int8" (QDQ: explicit quantisation)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # mean/std are folded into the first convolution: feed RGB float32 in [0, 1], NCHW
    normalisation: str = "folded: feed RGB float32 in [0, 1], NCHW; mean/std applied inside the graph"
    opset: int = 18
    exporter: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. quantisation settings
    det_head: str = "centernet"  # "centernet" (heatmap, box) | "ssd" (boxes, scores over anchors)
    fine_level: bool = False  # ssd: the anchors of the stride-8 fine level follow the COCO levels'
    format_version: int = FORMAT_VERSION

    # -- derived I/O contract (computed once: the pipeline asks for it on every frame) ---------------
    @property
    def is_temporal(self) -> bool:
        return bool(self.state_shapes)

    @cached_property
    def state_pairs(self) -> dict[str, str]:
        return {name: state_output_name(name) for name in self.state_shapes}

    @cached_property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        h, w = self.input_size
        specs = [TensorSpec(IMAGE_INPUT, ("batch", 3, h, w))]
        specs += [TensorSpec(n, ("batch", *s)) for n, s in self.state_shapes.items()]
        return tuple(specs)

    @cached_property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        h, w = self.input_size
        specs = head_output_specs(self.det_head, h, w, len(self.det_classes), len(self.seg_classes),
                                  self.fine_level)
        specs += [TensorSpec(state_output_name(n), ("batch", *s)) for n, s in self.state_shapes.items()]
        return tuple(specs)

    # -- serialisation -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> ModelInfo:
        try:
            d = json.loads(text)
            if int(d.get("format_version", 0)) > FORMAT_VERSION:
                raise BackendError(
                    f"{source}: model info format {d['format_version']} is newer than this perception "
                    f"({FORMAT_VERSION}); upgrade perception or re-export with this version"
                )
            d["input_size"] = tuple(d["input_size"])
            d["det_classes"] = tuple(d["det_classes"])
            d["seg_classes"] = tuple(d["seg_classes"])
            d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
            d["state_shapes"] = {k: tuple(v) for k, v in d["state_shapes"].items()}
            return cls(**d)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise BackendError(
                f"{source}: its embedded '{METADATA_KEY}' record is unreadable ({e!r}); re-export the model with "
                "`perception export`"
            ) from e


def head_output_specs(det_head: str, h: int, w: int, det_classes: int, seg_classes: int,
                      fine: bool = False) -> list[TensorSpec]:
    """The head outputs of a network (``det_head`` "centernet" or "ssd", ``fine``: the anchor head has its
    stride-8 level) at input ``h x w``, in contract order."""
    if det_head == "ssd":
        n = num_anchors(h, w, fine)
        det = [TensorSpec("boxes", ("batch", n, 4)), TensorSpec("scores", ("batch", n, det_classes))]
    else:
        det = [TensorSpec("heatmap", ("batch", det_classes, h // 8, w // 8)),
               TensorSpec("box", ("batch", 4, h // 8, w // 8))]
    return [*det, TensorSpec("seg", ("batch", seg_classes, h // 4, w // 4)),
            TensorSpec("attention", ("batch", 1, h // 8, w // 8))]


def read_model_info(onnx_path: str | Path) -> ModelInfo:
    """The :class:`ModelInfo` embedded in an ONNX file by ``perception export`` (weights not loaded)."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise BackendError(f"ONNX model {path} does not exist; create it with `perception export`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / ValueError / OSError depending on the damage
        raise BackendError(f"ONNX model {path} cannot be parsed ({e}); the file is truncated or not ONNX") from e
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise BackendError(
            f"ONNX model {path} carries no '{METADATA_KEY}' metadata: it was not written by `perception export`; "
            "export it with `perception export --checkpoint ...`"
        )
    return ModelInfo.from_json(props[METADATA_KEY], source=str(path))


class ModelInfoBackend(Backend):
    """A backend whose I/O contract is the :class:`ModelInfo` it read on ``load`` (ONNX, TensorRT)."""

    info: ModelInfo | None = None

    def _info(self) -> ModelInfo:
        if self.info is None:
            raise BackendError(f"{self.name} backend: used before load() (or after close())")
        return self.info

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self._info().input_specs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self._info().output_specs

    @property
    def state_pairs(self) -> dict[str, str]:
        return self._info().state_pairs
