"""Detect -> crop -> embed -> nearest gallery identity, on one frame: the perception step of the drone task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.errors import ModelRoleError
from perception.faces.detector import FaceDetections
from perception.faces.recognizer import UNKNOWN, FaceRecognizerLearner
from perception.learner import Learner, load_model, resolve_model_class
from perception.manifest import read_manifest
from perception.specs import check_image

DETECTOR_ROLE = "face detector"
RECOGNIZER_ROLE = "face recogniser"


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
        _check_roles([("detector", DETECTOR_ROLE, type(detector), detector.name, None),
                      ("recognizer", RECOGNIZER_ROLE, type(recognizer), recognizer.name, None)])
        self.detector = detector
        self.recognizer = recognizer
        self.min_face = min_face

    @staticmethod
    def check_folders(detector_dir: str | Path, recognizer_dir: str | Path) -> None:
        """Check from the manifests alone (no weights are read) that the folders hold a face detector and a face
        recogniser, in that order.

        Raises:
            ModelRoleError: a folder holds a model of another role; the message names both folders.
            CheckpointError: a folder is missing or holds no readable manifest.
        """
        entries = []
        for arg, role, folder in (("detector", DETECTOR_ROLE, detector_dir), ("recognizer", RECOGNIZER_ROLE,
                                                                                recognizer_dir)):
            name = read_manifest(folder)["name"]
            entries.append((arg, role, resolve_model_class(name), name, Path(folder)))
        _check_roles(entries)

    @classmethod
    def load(cls, detector_dir: str | Path, recognizer_dir: str | Path, runtime: str = "onnxruntime",
             threads: int = 0, precision: str | None = None) -> FacePipeline:
        """Load both saved models and select ``runtime`` (and ``precision``, e.g. ``int8``) for each.

        Raises:
            ModelRoleError: ``detector_dir`` does not hold a face detector or ``recognizer_dir`` a face recogniser
                (checked before any weights are loaded).
        """
        cls.check_folders(detector_dir, recognizer_dir)
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


def _check_roles(entries: list[tuple[str, str, type, str, Path | None]]) -> None:
    """Raise :class:`ModelRoleError` naming every ``(argument, role wanted, class, model name, folder)`` whose
    class does not play the role, and both models when they look swapped."""
    # A recogniser must also have the gallery methods the pipeline calls (recognize), hence the class check.
    wrong = [(arg, want, cls, name, folder) for arg, want, cls, name, folder in entries
             if getattr(cls, "role", "") != want
             or (want == RECOGNIZER_ROLE and not issubclass(cls, FaceRecognizerLearner))]
    if not wrong:
        return
    parts = [f"{arg} {'folder ' + str(folder) if folder is not None else 'model'} holds {name!r} "
             f"({getattr(cls, 'role', '') or 'no face role'}), not a {want}" for arg, want, cls, name, folder in wrong]
    roles = [getattr(e[2], "role", "") for e in entries]
    swapped = roles == [RECOGNIZER_ROLE, DETECTOR_ROLE]
    where = ", ".join(f"{arg}={folder}" for arg, _, _, _, folder in entries if folder is not None)
    raise ModelRoleError("; ".join(parts) + ("; the two look swapped" if swapped else "")
                         + f". The face pipeline takes a face detector (face_detector, yunet) and then a face "
                           f"recogniser (face_recognizer, sface){' (' + where + ')' if where else ''}")
