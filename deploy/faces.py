"""The face perception chain on the robot: detector -> square crops -> embeddings -> nearest gallery identity.

The same steps as :class:`perception.faces.pipeline.FacePipeline` (the simulator's pipeline, in torch or ONNX
Runtime), rewritten on NumPy and OpenCV so the runner needs neither torch nor the perception package: the
decoding settings, the gallery, the softmax temperature and the unknown threshold come from the bundle's
manifest, written at export by :meth:`FaceChain.describe`. Called with an RGB frame it returns the faces in it,
most confident first, exactly what the drone task's ``pipeline`` argument takes, so the simulator closed loop
(``vantage deploy --source sim:vantage/DroneFaceRecognition-v0``) runs the bundle's own models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from common.errors import InvalidArgumentError
from deploy.latency import LatencyStats

__all__ = ["Face", "FaceChain", "crop_face", "decode_centernet", "nms", "preprocess_images"]

UNKNOWN = "unknown"


@dataclass
class Face:
    """One face: box (x0, y0, x1, y1 px), detection score, identity (or ``unknown``), confidence, similarity."""

    box: np.ndarray
    score: float
    identity: str
    confidence: float
    similarity: float

    def record(self) -> dict[str, Any]:
        return {"box": [round(float(v), 1) for v in self.box], "score": round(self.score, 4),
                "identity": self.identity, "confidence": round(self.confidence, 4),
                "similarity": round(self.similarity, 4)}


def preprocess_images(images: list[np.ndarray], pre: Mapping[str, Any]) -> np.ndarray:
    """RGB uint8 images -> ``(N, 3, H, W)`` float32: resize, ``(x * scale - mean) / std`` (the perception
    models' :class:`perception.specs.ImagePreprocessing`, same interpolation rule)."""
    h, w = pre["size"]
    mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
    batch = np.empty((len(images), 3, h, w), np.float32)
    for i, img in enumerate(images):
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR)
        if pre.get("channels", "RGB") == "BGR":
            img = img[..., ::-1]
        batch[i] = ((img.astype(np.float32) * float(pre["scale"]) - mean) / std).transpose(2, 0, 1)
    return batch


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, best first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def decode_centernet(out: np.ndarray, frame_size: tuple[int, int], settings: Mapping[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (frame pixels) and scores from one ``(5, h, w)`` CenterNet output: heatmap peaks above the score
    threshold (3x3 local maxima), top-k, size and offset regression, then NMS."""
    stride, (in_h, in_w) = float(settings["stride"]), settings["input_size"]
    heat = out[0]
    padded = np.pad(heat, 1, constant_values=-np.inf)
    h, w = heat.shape
    pooled = np.max([padded[i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)
    ys, xs = np.nonzero((heat == pooled) & (heat >= settings["score_threshold"]))
    scores = heat[ys, xs]
    if len(scores) > settings["top_k"]:
        keep = np.argsort(-scores)[:settings["top_k"]]
        ys, xs, scores = ys[keep], xs[keep], scores[keep]
    cx, cy = (xs + out[3, ys, xs]) * stride, (ys + out[4, ys, xs]) * stride
    bw = np.exp(np.clip(out[1, ys, xs], -5, 6)) * stride
    bh = np.exp(np.clip(out[2, ys, xs], -5, 6)) * stride
    fh, fw = frame_size
    sx, sy = fw / in_w, fh / in_h
    boxes = np.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], -1)
    boxes = np.clip(boxes, 0, [fw, fh, fw, fh]).astype(np.float32)
    keep = nms(boxes, scores, settings["nms_iou"]) if len(scores) else np.zeros(0, np.int64)
    return boxes[keep], scores[keep].astype(np.float32)


def crop_face(image: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Square ``size`` px crop centred on ``box``, side ``margin`` x its longer side, border replicated."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0) * margin
    cx, cy, scale = (x0 + x1) / 2, (y0 + y1) / 2, size / side
    matrix = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]], np.float32)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


class FaceChain:
    """Detector and recogniser sessions with the manifest's settings; ``chain(frame) -> [Face, ...]``.

    Args:
        sessions: model name (``detector``, ``recognizer``) -> session.
        models: the manifest's perception model entries.
        stats: where the ``perception:<model>`` stage times go.
        record: keep every frame and face crop the models see (int8 calibration at export).
    """

    def __init__(self, sessions: Mapping[str, Any], models: list[Mapping[str, Any]],
                 stats: LatencyStats | None = None, record: bool = False) -> None:
        by_name = {m["name"]: m for m in models}
        missing = {"detector", "recognizer"} - set(by_name)
        if missing:
            raise InvalidArgumentError(f"the face chain needs models 'detector' and 'recognizer'; the bundle has "
                                       f"{sorted(by_name)}")
        self.sessions, self.stats = sessions, stats or LatencyStats()
        self.det, self.rec = by_name["detector"], by_name["recognizer"]
        decode = self.rec["decode"]
        self.gallery = np.asarray(decode["gallery"], np.float32)
        self.gallery_names = list(decode["gallery_names"])
        self.temperature, self.threshold = float(decode["temperature"]), float(decode["threshold"])
        self.recorded: dict[str, list[np.ndarray]] | None = {"detector": [], "recognizer": []} if record else None
        self.last_faces: list[Face] = []

    @staticmethod
    def describe(learners: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Each model's decoding settings for the manifest, read from the loaded perception learners (export
        side; the learners are duck-typed so this module never imports the perception package)."""
        det, rec = learners["detector"], learners["recognizer"]
        return {
            "detector": {"input_size": [int(v) for v in det.input_size], "stride": 4,
                         "score_threshold": float(det.score_threshold), "nms_iou": float(det.nms_iou), "top_k": 50,
                         "min_face": 8.0},
            "recognizer": {"crop_size": int(rec.crop_size),
                           "crop_margin": float(rec.preprocessing.extra.get("crop_margin", 1.15)),
                           "gallery_names": list(rec.gallery_names),
                           "gallery": np.asarray(rec.gallery, np.float32).round(7).tolist(),
                           "temperature": float(rec.temperature), "threshold": float(rec.threshold)},
        }

    def __call__(self, frame: np.ndarray) -> list[Face]:
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InvalidArgumentError(f"the face chain takes RGB uint8 (H, W, 3) frames, got "
                                       f"{getattr(frame, 'shape', type(frame).__name__)}")
        det, rec = self.det, self.rec
        with self.stats.stage("perception:detector"):
            x = preprocess_images([frame], det["preprocessing"])
            if self.recorded is not None:
                self.recorded["detector"].append(x)
            out = self.sessions["detector"].run({det["input"]["name"]: x})[det["output"]]
            boxes, scores = decode_centernet(out[0], frame.shape[:2], det["decode"])
            keep = (boxes[:, 3] - boxes[:, 1]) >= det["decode"]["min_face"]
            boxes, scores = boxes[keep], scores[keep]
        if not len(boxes):
            self.last_faces = []
            return []
        with self.stats.stage("perception:recognizer"):
            settings = rec["decode"]
            crops = [crop_face(frame, b, settings["crop_size"], settings["crop_margin"]) for b in boxes]
            x = preprocess_images(crops, rec["preprocessing"])
            if self.recorded is not None:
                self.recorded["recognizer"].append(x)
            emb = self.sessions["recognizer"].run({rec["input"]["name"]: x})[rec["output"]]
            sims = np.asarray(emb, np.float32) @ self.gallery.T
            logits = sims / self.temperature
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            faces = []
            for box, score, s, p in zip(boxes, scores, sims, probs):
                k = int(np.argmax(s))
                name = self.gallery_names[k] if s[k] >= self.threshold else UNKNOWN
                faces.append(Face(box, float(score), name, float(p[k]), float(s[k])))
        self.last_faces = faces
        return faces
