"""Box utilities and detection metrics (IoU, NMS, VOC-style average precision)."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a (N, 4)`` and ``b (M, 4)`` given as ``x0, y0, x1, y1``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.4) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-np.asarray(scores))
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def average_precision(detections: list[tuple[np.ndarray, np.ndarray]],
                      ground_truth: list[tuple[np.ndarray, np.ndarray]], iou_threshold: float = 0.5,
                      min_height: float | None = None) -> dict:
    """VOC all-point average precision over images.

    Args:
        detections: per image ``(boxes (N, 4), scores (N,))``.
        ground_truth: per image ``(boxes (M, 4), ignore (M,) bool)``; a detection matched to an ignored
            box is neither a true nor a false positive, and ignored boxes are not counted as misses.
        iou_threshold: minimum IoU for a match.
        min_height: for AP over a size range (faces at least this tall, the rest marked ignored): an
            unmatched detection shorter than this is ignored too rather than counted as a false positive,
            COCO's rule for its size-range APs. ``None`` counts every unmatched detection.

    Returns:
        ``{"ap", "precision", "recall", "n_gt"}`` with precision/recall at the best-F1 operating point.
    """
    records: list[tuple[float, int]] = []  # (score, 1 true positive / 0 false positive)
    n_gt = 0
    for (boxes, scores), (gt, ignore) in zip(detections, ground_truth):
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        ignore = np.asarray(ignore, bool).reshape(-1)
        n_gt += int((~ignore).sum())
        matched = np.zeros(len(gt), bool)
        order = np.argsort(-np.asarray(scores))
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ious = box_iou(boxes, gt) if len(gt) else np.zeros((len(scores), 0))
        for i in order:
            if ious.shape[1]:
                # Prefer unmatched real faces, then ignored boxes.
                cand = np.where(~matched & ~ignore, ious[i], -1.0)
                j = int(np.argmax(cand))
                if cand[j] >= iou_threshold:
                    matched[j] = True
                    records.append((float(scores[i]), 1))
                    continue
                cand_ign = np.where(ignore, ious[i], -1.0)
                if cand_ign.max() >= iou_threshold:
                    continue
            if min_height is not None and boxes[i, 3] - boxes[i, 1] < min_height:
                continue
            records.append((float(scores[i]), 0))
    if n_gt == 0:
        return {"ap": float("nan"), "precision": float("nan"), "recall": float("nan"), "n_gt": 0}
    if not records:
        return {"ap": 0.0, "precision": 0.0, "recall": 0.0, "n_gt": n_gt}
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records])
    fp = np.cumsum([1 - r[1] for r in records])
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, 1e-9)
    # All-point interpolation: precision envelope integrated over recall.
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    ap = float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
    best = int(np.argmax(f1))
    return {"ap": ap, "precision": float(precision[best]), "recall": float(recall[best]), "n_gt": n_gt,
            "best_f1_score_threshold": records[best][0]}
