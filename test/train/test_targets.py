"""Detection targets on hand-made boxes."""

from __future__ import annotations

import numpy as np
import pytest

from perception.train.targets import decode_ltrb, encode_targets, gaussian_radius, unsupervised_targets

H, W, C = 128, 192, 5


def test_peak_at_centre_and_ltrb_decodes_to_box() -> None:
    boxes = np.array([[40.0, 30.0, 100.0, 90.0], [120.0, 16.0, 150.0, 60.0]], np.float32)
    t = encode_targets(boxes, np.array([0, 2]), None, H, W, C)
    assert t["heatmap"].shape == (C, H // 8, W // 8) and t["box"].shape == (4, H // 8, W // 8)
    for (x1, y1, x2, y2), c in zip(boxes, (0, 2)):
        ci, cj = int((y1 + y2) / 2 // 8), int((x1 + x2) / 2 // 8)
        hm = t["heatmap"][c]
        assert hm[ci, cj] == 1.0 and np.unravel_index(hm.argmax(), hm.shape) == (ci, cj)
        assert t["reg_weight"][0, ci, cj] == 1.0
        np.testing.assert_allclose(decode_ltrb(t["box"], ci, cj), [x1, y1, x2, y2], atol=1e-4)
    # every weighted neighbour cell also decodes to its box
    for i, j in zip(*np.nonzero(t["reg_weight"][0])):
        dec = decode_ltrb(t["box"], int(i), int(j))
        assert any(np.allclose(dec, b, atol=1e-4) for b in boxes)
    assert t["heatmap"][1].max() == 0.0  # classes without objects are empty
    assert t["hm_ignore"].sum() == 0.0
    # heatmap decays away from the centre
    assert 0.0 < t["heatmap"][0][7, 9] < 1.0


def test_tiny_object_gets_a_positive_cell() -> None:
    t = encode_targets(np.array([[13.0, 13.0, 15.0, 16.0]]), np.array([3]), None, H, W, C)
    assert t["heatmap"][3, 1, 1] == 1.0 and t["heatmap"][3].sum() == 1.0
    assert t["reg_weight"][0, 1, 1] == 1.0
    assert (t["box"][:, 1, 1] >= 0).all()
    dec = decode_ltrb(t["box"], 1, 1)
    np.testing.assert_allclose(dec, [13.0, 13.0, 15.0, 16.0], atol=4.0)  # within half a stride


def test_ignored_boxes_mark_region_but_not_positives() -> None:
    boxes = np.array([[0.0, 0.0, 64.0, 64.0], [20.0, 20.0, 40.0, 40.0]], np.float32)
    t = encode_targets(boxes, np.array([0, 1]), np.array([True, False]), H, W, C)
    assert t["heatmap"][0].max() == 0.0  # ignored: no positive
    assert t["hm_ignore"][0, :8, :8].sum() == 63.0  # whole region except the real object's centre
    assert t["hm_ignore"][0, 3, 3] == 0.0 and t["heatmap"][1, 3, 3] == 1.0


def test_smaller_box_wins_shared_cells_and_boxes_are_clipped() -> None:
    big = [0.0, 0.0, 96.0, 96.0]
    small = [40.0, 40.0, 56.0, 56.0]  # same centre cell (6, 6)
    t = encode_targets(np.array([big, small]), np.array([0, 1]), None, H, W, C)
    np.testing.assert_allclose(decode_ltrb(t["box"], 6, 6), small, atol=1e-4)
    t = encode_targets(np.array([[-50.0, 100.0, 30.0, 400.0]]), np.array([0]), None, H, W, C)
    ci, cj = 114 // 8, 15 // 8
    np.testing.assert_allclose(decode_ltrb(t["box"], ci, cj), [0, 100, 30, 128], atol=1e-4)


def test_empty_and_unsupervised() -> None:
    t = encode_targets(np.zeros((0, 4)), np.zeros(0, np.int64), None, H, W, C)
    assert all(float(v.sum()) == 0.0 for v in t.values())
    u = unsupervised_targets(H, W, C)
    assert u["hm_ignore"].min() == 1.0 and u["reg_weight"].sum() == 0.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="class ids"):
        encode_targets(np.array([[0.0, 0, 10, 10]]), np.array([7]), None, H, W, C)
    with pytest.raises(ValueError, match="multiple of stride"):
        encode_targets(np.zeros((0, 4)), np.zeros(0), None, 100, W, C)
    with pytest.raises(ValueError, match="disagree"):
        encode_targets(np.zeros((2, 4)), np.zeros(1), None, H, W, C)


def test_gaussian_radius_grows_with_size() -> None:
    assert gaussian_radius(2, 2) < gaussian_radius(10, 10) < gaussian_radius(40, 40)


def test_objmask_is_the_cell_coverage_of_objects() -> None:
    from perception.train.targets import object_mask_target

    t = encode_targets(np.array([[8.0, 8.0, 24.0, 20.0]]), np.array([0]), None, H, W, C)
    m = t["objmask"][0]
    assert m.shape == (H // 8, W // 8)
    assert m[1, 1] == 1.0 and m[1, 2] == 1.0  # cells fully inside the box
    assert m[2, 1] == pytest.approx(0.5)  # rows 16..19 of the 16..23 cell row are covered
    assert m[0].sum() == 0.0 and m[:, 3:].sum() == 0.0
    # an ignored (tiny) object is still an object for the saliency target
    t = encode_targets(np.array([[8.0, 8.0, 16.0, 16.0]]), np.array([0]), np.array([True]), H, W, C)
    assert t["objmask"][0, 1, 1] == 1.0
    # images without detection labels carry no attention target
    assert (unsupervised_targets(H, W, C)["objmask"] == -1.0).all()
    pix = np.zeros((16, 16), bool)
    pix[0:4, 0:8] = True
    assert object_mask_target(pix).tolist() == [[[0.5, 0.0], [0.0, 0.0]]]
    with pytest.raises(ValueError, match="multiple of stride"):
        object_mask_target(np.zeros((10, 16), bool))
