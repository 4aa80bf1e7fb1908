"""Detection metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from perception.metrics import average_precision, box_iou, nms

FACE = [10.0, 10.0, 40.0, 50.0]  # 30 x 40 px
SMALL_FACE = [100.0, 100.0, 110.0, 112.0]  # 10 x 12 px


def test_box_iou_hand_computed() -> None:
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0.0]])


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.4).tolist() == [1, 2]


def test_ap_perfect_and_ranked_false_positive() -> None:
    gt = [(np.array([FACE]), np.array([False]))]
    assert average_precision([(np.array([FACE]), np.array([0.9]))], gt)["ap"] == pytest.approx(1.0)
    # A false positive ranked above the hit: precision 1/2 at recall 1.
    dets = [(np.array([[200, 200, 230, 240], FACE], float), np.array([0.9, 0.8]))]
    assert average_precision(dets, gt)["ap"] == pytest.approx(0.5)
    # Ranked below the hit it costs nothing.
    dets = [(np.array([[200, 200, 230, 240], FACE], float), np.array([0.7, 0.8]))]
    assert average_precision(dets, gt)["ap"] == pytest.approx(1.0)


def test_ap_ignored_faces_are_neither_hits_nor_misses() -> None:
    gt = [(np.array([FACE, SMALL_FACE]), np.array([False, True]))]
    dets = [(np.array([SMALL_FACE, FACE]), np.array([0.9, 0.8]))]
    result = average_precision(dets, gt)
    assert result["n_gt"] == 1
    assert result["ap"] == pytest.approx(1.0)


def test_ap_size_range_ignores_small_unmatched_detections_only() -> None:
    """COCO's size-range rule: an unmatched detection below the range is ignored, a large one still counts."""
    gt = [(np.array([FACE]), np.array([False]))]
    small_fp = [(np.array([[200, 200, 210, 212], FACE], float), np.array([0.9, 0.8]))]
    assert average_precision(small_fp, gt)["ap"] == pytest.approx(0.5)
    assert average_precision(small_fp, gt, min_height=24)["ap"] == pytest.approx(1.0)
    large_fp = [(np.array([[200, 200, 230, 240], FACE], float), np.array([0.9, 0.8]))]
    assert average_precision(large_fp, gt, min_height=24)["ap"] == pytest.approx(0.5)
    # A small detection that matches a counted face is still a hit.
    tiny_gt = [(np.array([SMALL_FACE]), np.array([False]))]
    hit = [(np.array([SMALL_FACE]), np.array([0.9]))]
    assert average_precision(hit, tiny_gt, min_height=24)["ap"] == pytest.approx(1.0)


def test_ap_misses_lower_recall() -> None:
    gt = [(np.array([FACE]), np.array([False])), (np.array([FACE]), np.array([False]))]
    dets = [(np.array([FACE]), np.array([0.9])), (np.zeros((0, 4)), np.zeros(0))]
    result = average_precision(dets, gt)
    assert result["ap"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(0.5)
