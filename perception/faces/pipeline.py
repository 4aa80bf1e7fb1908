"""Detect -> crop -> embed -> nearest gallery identity, on one frame: the perception step of the drone task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.faces.detector import FaceDetections
from perception.faces.recognizer import UNKNOWN, FaceRecognizerLearner
from perception.learner import Learner, load_model
from perception.specs import check_image


@dataclass
class FaceResult:
    """One face in a frame: box (x0, y0, x1, y1 px), detection score, identity and calibrated confidence."""

    box: np.ndarray
    score: float
    identity: str
    confidence: float
    similarity: float

    @property
    def known(self) -> bool:
        return self.identity != UNKNOWN


class FacePipeline:
    """A face detector and a face recogniser run together.

    Args:
        detector: any detector learner (``face_detector``, ``yunet``).
        recognizer: any recogniser learner with a gallery (``face_recognizer``, ``sface``).
        min_face: ignore detections shorter than this many pixels (too small to recognise).
    """

    def __init__(self, detector: Learner, recognizer: FaceRecognizerLearner, min_face: float = 8.0) -> None:
        self.detector = detector
        self.recognizer = recognizer
        self.min_face = min_face

    @classmethod
    def load(cls, detector_dir: str | Path, recognizer_dir: str | Path, runtime: str = "onnxruntime",
             threads: int = 0, precision: str | None = None) -> FacePipeline:
        """Load both saved models and select ``runtime`` (and ``precision``, e.g. ``int8``) for each."""
        det, rec = load_model(detector_dir), load_model(recognizer_dir)
        for model in (det, rec):
            if model.net is not None or runtime != "torch":
                model.set_runtime(runtime, threads=threads, precision=precision)
        return cls(det, rec)  # type: ignore[arg-type]

    def set_runtime(self, name: str, threads: int = 0, precision: str | None = None) -> FacePipeline:
        """Select the runtime (and precision) of both models."""
        self.detector.set_runtime(name, threads=threads, precision=precision)
        self.recognizer.set_runtime(name, threads=threads, precision=precision)
        return self

    def __call__(self, frame: np.ndarray) -> list[FaceResult]:
        """All faces in an RGB ``uint8`` frame, most confident detection first."""
        check_image(frame, "frame")
        dets: FaceDetections = self.detector.infer(frame)
        keep = (dets.boxes[:, 3] - dets.boxes[:, 1]) >= self.min_face
        boxes, scores = dets.boxes[keep], dets.scores[keep]
        if not len(boxes):
            return []
        recs = self.recognizer.recognize(frame, boxes)
        return [FaceResult(b, float(s), r.identity, r.confidence, r.similarity)
                for b, s, r in zip(boxes, scores, recs)]
