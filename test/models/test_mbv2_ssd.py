"""The real-eyed network: the COCO SSD-MobileNetV2 converted into torch equals the original (run by OpenCV's
dnn module on real frames), its anchors follow any input that is a multiple of 32, and the grafted
attention starts as the identity."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from perception.core.anchors import decode_box_list, feature_shapes, num_anchors, ssd_anchors
from perception.core.classes import detection_id
from perception.models.mbv2_ssd import pretrained_weights_path
from perception.models.mbv2_ssd_convert import CONFIG, GRAPH, ConvertedSSD, convert, parity, parity_frames
from perception.models.registry import build_model


@pytest.fixture(scope="module")
def cv2_net(reference_model: Path) -> cv2.dnn.Net:
    return cv2.dnn.readNetFromTensorflow(str(reference_model / GRAPH), str(reference_model / CONFIG))


@pytest.fixture(scope="module")
def converted() -> ConvertedSSD:
    from safetensors.torch import load_file

    model = ConvertedSSD().eval()
    model.load_state_dict(load_file(str(pretrained_weights_path())))
    return model


def test_anchors_are_opencvs_priors_at_300(cv2_net: cv2.dnn.Net, vtest: Path) -> None:
    """At the network's training size our anchors are exactly the graph's PriorBox layers (normalised xyxy)."""
    rgb = parity_frames(vtest, (0,))[0]
    cv2_net.setInput(cv2.dnn.blobFromImage(rgb, size=(300, 300), swapRB=False, crop=False))
    priors = np.asarray(cv2_net.forward("PriorBox/concat")).reshape(2, -1, 4)[0]  # row 0: boxes, row 1: variances
    a = ssd_anchors(300, 300)
    ours = np.stack([a[:, 0] - a[:, 2] / 2, a[:, 1] - a[:, 3] / 2, a[:, 0] + a[:, 2] / 2, a[:, 1] + a[:, 3] / 2],
                    axis=1) / 300.0
    assert ours.shape == priors.shape == (1917, 4)
    np.testing.assert_allclose(ours, priors, atol=5e-4)  # the .pbtxt spells its sizes in rounded decimals


def test_converted_network_equals_the_original_on_real_frames(cv2_net: cv2.dnn.Net, converted: ConvertedSSD,
                                                               vtest: Path) -> None:
    """Raw class probabilities and decoded boxes of the torch network vs cv2.dnn on three real frames."""
    check = parity(cv2_net, converted, parity_frames(vtest))
    assert check["max_abs_score_diff"] < 1e-4, check
    assert check["max_abs_box_diff_px"] < 0.01, check


def test_final_detections_equal_the_reference_detector(converted: ConvertedSSD, reference_model: Path,
                                                       vtest: Path) -> None:
    """End to end, NMS included: the same people at the same places with the same scores."""
    from perception.footage.reference import ReferenceConfig, ReferenceDetector

    ref = ReferenceDetector(ReferenceConfig(model_dir=str(reference_model), min_score=0.3))
    for rgb in parity_frames(vtest):
        h, w = rgb.shape[:2]
        x = torch.from_numpy(cv2.resize(rgb, (300, 300))).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            out = converted(x)
        scale = np.array([w / 300, h / 300, w / 300, h / 300], np.float32)
        ours = decode_box_list(out.boxes[0].numpy() * scale, out.scores[0].numpy(), 0.3, image_size=(h, w))
        theirs = ref.detect(rgb)
        assert len(ours) == len(theirs) > 0
        assert (ours.class_ids == theirs.class_ids).all()
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=0.01)
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-4)
        assert (ours.class_ids == detection_id("pedestrian")).sum() >= 3  # a street full of people


def test_shipped_weights_are_the_reproducible_conversion(cv2_net: cv2.dnn.Net) -> None:
    from safetensors.torch import load_file

    shipped = load_file(str(pretrained_weights_path()))
    fresh = convert(cv2_net)
    assert shipped.keys() == fresh.keys()
    for k, v in fresh.items():
        assert torch.equal(shipped[k], v), k
    meta = json.loads(pretrained_weights_path().with_suffix(".json").read_text())
    assert meta["source"]["licence"].startswith("Apache-2.0")
    assert meta["parity_vs_cv2_dnn"]["max_abs_score_diff"] < 1e-4


@pytest.mark.parametrize("size", [(256, 448), (384, 640), (352, 1216)])
def test_priors_follow_any_multiple_of_32(size: tuple[int, int]) -> None:
    h, w = size
    shapes = feature_shapes(h, w)
    assert shapes[0] == (h // 16, w // 16) and shapes[1] == (h // 32, w // 32)
    model = build_model("stan_mbv2_noattn").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, h, w))
    n = num_anchors(h, w, fine=True)  # six COCO maps, then the stride-8 fine level
    assert n - num_anchors(h, w) == (h // 8) * (w // 8) * 3
    assert out["boxes"].shape == (1, n, 4) and out["scores"].shape == (1, n, 5)
    assert out["seg"].shape[-2:] == (h // 4, w // 4) and out["attention"].shape[-2:] == (h // 8, w // 8)
    a = ssd_anchors(h, w, fine=True)
    assert (a[:, 0] > 0).all() and (a[:, 0] < w).all() and (a[:, 1] > 0).all() and (a[:, 1] < h).all()
    np.testing.assert_array_equal(a[: num_anchors(h, w)], ssd_anchors(h, w))  # the COCO anchors do not move
    assert a[num_anchors(h, w):, 2:].max() < ssd_anchors(h, w)[:, 2:].min()  # fine anchors are the smallest


def test_an_untrained_fine_level_is_silent() -> None:
    """The fine level starts at a 1 % class prior: the network with it detects exactly what it detects without."""
    model = build_model("stan_mbv2").eval()
    assert model.det_head.fine is not None
    n = num_anchors(256, 448)
    x = torch.rand(2, 3, 256, 448)
    with torch.no_grad():
        out = model(x)
    assert float(out["scores"][:, n:].max()) < 0.2
    plain = build_model("stan_mbv2", fine_level=False).eval()
    with torch.no_grad():
        ref = plain(x)
    # equal up to summation order (oneDNN may pick another kernel for another allocation): ~1e-10 seen
    torch.testing.assert_close(out["boxes"][:, :n], ref["boxes"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out["scores"][:, :n], ref["scores"], rtol=0, atol=1e-6)


def test_grafted_attention_starts_as_the_identity() -> None:
    """Residual CBAM with gamma 0: the attention network detects exactly what the trunk detects, while its
    spatial map is already an output; moving gamma changes the detections."""
    grafted = build_model("stan_mbv2").eval()
    plain = build_model("stan_mbv2_noattn").eval()
    x = torch.rand(1, 3, 256, 448)
    n = num_anchors(256, 448)  # the COCO levels (the fine levels of the two are new, each its own init)
    with torch.no_grad():
        a, b = grafted(x), plain(x)
        torch.testing.assert_close(a["boxes"][:, :n], b["boxes"][:, :n], rtol=0, atol=1e-5)  # summation order only
        torch.testing.assert_close(a["scores"][:, :n], b["scores"][:, :n], rtol=0, atol=1e-6)
        assert grafted.has_attention_map and not plain.has_attention_map
        for m in grafted.backbone.attn:
            m.gamma.fill_(1.0)
        c = grafted(x)
    assert not torch.allclose(c["scores"], a["scores"])


def test_decode_box_list_thresholds_suppresses_and_drops_non_finite() -> None:
    boxes = np.array([[0, 0, 10, 20], [1, 0, 11, 20], [50, 50, 60, 60], [np.nan, 0, 1, 1]], np.float32)
    scores = np.zeros((4, 5), np.float32)
    scores[0, 2], scores[1, 2], scores[1, 0], scores[2, 0], scores[3, 0] = 0.9, 0.8, 0.7, 0.2, 0.99
    det = decode_box_list(boxes, scores, score_thresh=0.3, image_size=(40, 40))
    # box 1 as a pedestrian is suppressed by box 0; as a car it stands; box 2 is below threshold; box 3 is NaN
    got = sorted(zip(det.class_ids.tolist(), det.scores.tolist()))
    assert [c for c, _ in got] == [0, 2] and [s for _, s in got] == pytest.approx([0.7, 0.9])
    assert det.boxes[:, [1, 3]].max() <= 40


def test_where_the_levels_overlap_the_fine_box_stays() -> None:
    """Two boxes of one small object, one per level, overlapping below the NMS IoU: with ``fine_from`` the
    COCO-level one goes; another class, or no ``fine_from``, keeps both."""
    boxes = np.array([[10, 10, 30, 50], [12, 18, 34, 62], [100, 100, 120, 140]], np.float32)  # IoU(0, 1) ~0.45
    scores = np.zeros((3, 5), np.float32)
    ped, car = detection_id("pedestrian"), detection_id("car")
    scores[0, ped], scores[1, ped], scores[2, car] = 0.9, 0.6, 0.8  # anchor 0 coarse, 1 and 2 fine
    both = decode_box_list(boxes, scores, 0.3, nms_iou=0.6)
    assert len(both) == 3
    det = decode_box_list(boxes, scores, 0.3, nms_iou=0.6, fine_from=1)
    assert sorted(det.scores.tolist()) == pytest.approx([0.6, 0.8])  # the coarse pedestrian went
    scores[1, ped], scores[1, car] = 0.0, 0.6  # the fine box is another class now: nothing to merge
    assert len(decode_box_list(boxes, scores, 0.3, nms_iou=0.6, fine_from=1)) == 3
