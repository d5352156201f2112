"""The networks' tensor contract: the names of what goes in and what comes out. No torch here.

Every network of :mod:`perception.models` takes and returns these tensors, and every runtime runs
them under the same names (the torch backend, ONNX Runtime and TensorRT alike), so the pipeline
never knows which one runs::

    inputs : image (B, 3, H, W) float32 RGB in [0, 1]   [+ memory (B, K, Cm, H/s, W/s), memory_valid (B, K)]
             (s = the network's memory_stride, 32 or 16)
    outputs: heatmap, box, seg, attention               [+ memory_next, memory_valid_next]
             (anchor-head networks: boxes, scores, seg, attention: ``boxes`` (B, N, 4) xyxy input
             pixels and ``scores`` (B, N, classes) in [0, 1] over N anchors, decoded in the graph)

The model defines the contract; the runtime reads it (``perception.runtime.model_info`` records it
in each exported file). A state output is named after its state input + :data:`STATE_SUFFIX`, as ONNX
forbids an output named like an input. This module stays free of torch so light runtimes
(ONNX Runtime, TensorRT) can import it.
"""

from __future__ import annotations

IMAGE_INPUT = "image"
STATE_INPUTS = ("memory", "memory_valid")  # temporal networks only
HEAD_OUTPUTS = ("heatmap", "box", "seg", "attention")  # centre-heatmap detection head (the stan family)
ANCHOR_HEAD_OUTPUTS = ("boxes", "scores", "seg", "attention")  # anchor (SSD) detection head
DET_HEADS = ("centernet", "ssd")
STATE_SUFFIX = "_next"


def state_output_name(state_input: str) -> str:
    """The output carrying the next value of ``state_input`` (``memory`` -> ``memory_next``)."""
    return state_input + STATE_SUFFIX


def head_outputs(det_head: str = "centernet") -> tuple[str, ...]:
    """The head outputs of a network whose detection head is ``det_head`` (one of :data:`DET_HEADS`)."""
    return ANCHOR_HEAD_OUTPUTS if det_head == "ssd" else HEAD_OUTPUTS
