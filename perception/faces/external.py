"""User-supplied ONNX face models behind the learner interface: OpenCV YuNet detectors and SFace recognisers.

Nothing is downloaded: the user gives the ONNX file (e.g. OpenCV Zoo's ``face_detection_yunet_2023mar.onnx``
or ``face_recognition_sface_2021dec.onnx``). These models are ONNX-only: ``fit`` is not available, ``export``
returns the file itself, inference runs on ``onnxruntime`` (or ``tensorrt`` after :meth:`optimize`).

YuNet format (OpenCV >= 4.8, ``FaceDetectorYN``): one input ``(1, 3, H, W)`` BGR ``float32`` 0..255 with H, W
multiples of 32; twelve outputs ``cls_{8,16,32}`` ``(1, N, 1)``, ``obj_{8,16,32}`` ``(1, N, 1)``,
``bbox_{8,16,32}`` ``(1, N, 4)`` and ``kps_{8,16,32}`` ``(1, N, 10)`` with ``N = (H/s) * (W/s)`` cells in
row-major order. Score ``sqrt(clip(cls) * clip(obj))``; box centre ``((col, row) + bbox[:2]) * s``, size
``exp(bbox[2:]) * s``; landmark k ``((col, row) + kps[2k:2k+2]) * s`` (as in OpenCV's ``face_detect.cpp``).

SFace format (``FaceRecognizerSF``): input ``(1, 3, 112, 112)`` RGB ``float32`` 0..255, output ``(1, 128)``
features compared by cosine similarity (OpenCV's default match threshold 0.363). Crops here are square crops
of the face box (no landmark alignment), which costs some accuracy against aligned crops.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import InvalidArgumentError, OnnxModelError
from perception.faces.detector import FaceDetections
from perception.faces.recognizer import FaceRecognizerLearner
from perception.learner import Learner
from perception.manifest import ONNX_FILE, _sha256, copy_file, validate_onnx
from perception.metrics import nms
from perception.specs import ImagePreprocessing, TensorSpec, check_image

YUNET_STRIDES = (8, 16, 32)
YUNET_OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES)


def _onnx_io(path: Path) -> tuple[list[tuple[str, list]], list[str]]:
    import onnx

    model = onnx.load(str(path))
    init = {i.name for i in model.graph.initializer}
    inputs = [(i.name, [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim])
              for i in model.graph.input if i.name not in init]
    return inputs, [o.name for o in model.graph.output]


class _OnnxOnly(Learner):
    """Shared plumbing of ONNX-only models: no torch network, the file travels with the saved model (and its
    SHA-256 with the manifest, checked at load)."""

    trainable = False

    def __init__(self, onnx_path: str | Path, **config: Any) -> None:
        path = Path(onnx_path)
        validate_onnx(path)
        self.onnx_path = path
        self.onnx_inputs, self.onnx_outputs = _onnx_io(path)
        # Explicit base call: in SFaceRecognizer's MRO super() would be FaceRecognizerLearner.__init__.
        Learner.__init__(self, onnx_path=str(path), **config)
        self.set_runtime("onnxruntime", path)

    def build_network(self) -> None:
        return None

    def fit(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        raise InvalidArgumentError(f"{self.name} wraps a user-supplied ONNX model and cannot be trained here")

    def export(self, path: str | Path, format: str = "onnx", opset: int | None = None,
               overwrite: bool = False) -> Path:
        """Copy the user's ONNX file to ``path`` (a ``.onnx`` file or a directory): it is the export.

        The same output checks as :meth:`Learner.export` apply (:meth:`Learner.check_output`).
        """
        path = Path(path)
        if path.suffix != ".onnx":
            path = path / ONNX_FILE
        self.check_output(path.parent, [path.name], overwrite, "ONNX export")
        copy_file(self.onnx_path, path)
        return path

    def _default_onnx(self) -> Path:
        return self.onnx_path

    def _graph_image_spec(self, pre: ImagePreprocessing, description: str | None = None) -> TensorSpec:
        """The image input spec under the graph's input name, with the graph's batch size (often fixed to 1)."""
        name, shape = self.onnx_inputs[0]
        spec = TensorSpec.image(name, pre, description)
        spec.shape[0] = shape[0] if shape and shape[0] > 0 else -1
        return spec

    def _write_extra_files(self, path: Path, manifest: dict[str, Any], stack: contextlib.ExitStack) -> None:
        copy_file(self.onnx_path, path / ONNX_FILE, stack)
        manifest["config"] = {**manifest["config"], "onnx_path": ONNX_FILE}
        manifest["onnx"] = {"file": ONNX_FILE, "sha256": _sha256(self.onnx_path)}


class YuNetDetector(_OnnxOnly):
    """Face detector from a YuNet-format ONNX file (see the module docstring).

    Args:
        onnx_path: the ONNX file.
        input_size: ``(height, width)`` the frame is resized to, multiples of 32; default: the model's fixed
            input size, or 320 x 320 for a dynamic model.
        score_threshold: minimum face score.
        nms_iou: NMS IoU threshold.

    Raises:
        OnnxModelError: the file is corrupt or lacks YuNet's outputs.
    """

    name = "yunet"
    version = "1"
    role = "face detector"

    def __init__(self, onnx_path: str | Path, input_size: tuple[int, int] | list[int] | None = None,
                 score_threshold: float = 0.6, nms_iou: float = 0.3) -> None:
        path = Path(onnx_path)
        validate_onnx(path)
        inputs, outputs = _onnx_io(path)
        missing = sorted(set(YUNET_OUTPUTS) - set(outputs))
        if missing or len(inputs) != 1:
            raise OnnxModelError(f"{path} is not a YuNet-format detector: missing outputs {missing} "
                                 f"(has {outputs}, inputs {[n for n, _ in inputs]})")
        shape = inputs[0][1]
        if input_size is None:
            fixed = len(shape) == 4 and shape[2] > 0 and shape[3] > 0
            input_size = (shape[2], shape[3]) if fixed else (320, 320)
        input_size = (int(input_size[0]), int(input_size[1]))
        if input_size[0] % 32 or input_size[1] % 32:
            raise InvalidArgumentError(f"YuNet input_size must be multiples of 32, got {input_size}")
        super().__init__(path, input_size=list(input_size), score_threshold=score_threshold, nms_iou=nms_iou)
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou

    def input_specs(self) -> list[TensorSpec]:
        return [self._graph_image_spec(ImagePreprocessing(size=tuple(self.config["input_size"]), mean=(0.0, 0.0, 0.0),
                                                          std=(1.0, 1.0, 1.0), channels="BGR", scale=1.0))]

    def output_spec(self) -> list[TensorSpec]:
        return [TensorSpec(n, [1, -1, 1 if n[:3] in ("cls", "obj") else (4 if n[:4] == "bbox" else 10)])
                for n in YUNET_OUTPUTS]

    def infer(self, inputs: np.ndarray | list[np.ndarray]) -> FaceDetections | list[FaceDetections]:
        """Faces (boxes, scores, 5 landmarks) in one RGB ``uint8`` frame or a list of frames."""
        single = isinstance(inputs, np.ndarray) and inputs.ndim == 3
        images = [inputs] if single else list(inputs)
        out = []
        for i, img in enumerate(images):
            check_image(img, f"image {i}")
            out.append(self.decode(self.run_network(self.preprocess([img])), img.shape[:2]))
        return out[0] if single else out

    def decode(self, outputs: dict[str, np.ndarray], frame_size: tuple[int, int]) -> FaceDetections:
        """YuNet outputs -> detections in the frame's pixels."""
        in_h, in_w = self.input_size
        boxes, scores, marks = [], [], []
        for s in YUNET_STRIDES:
            rows, cols = in_h // s, in_w // s
            cls = np.clip(outputs[f"cls_{s}"].reshape(-1), 0, 1)
            obj = np.clip(outputs[f"obj_{s}"].reshape(-1), 0, 1)
            if cls.size != rows * cols:
                raise OnnxModelError(f"YuNet output cls_{s} has {cls.size} cells, expected {rows} x {cols} for input "
                                     f"{self.input_size}; set input_size to the model's size")
            score = np.sqrt(cls * obj)
            keep = np.flatnonzero(score >= self.score_threshold)
            if not keep.size:
                continue
            bbox = outputs[f"bbox_{s}"].reshape(-1, 4)[keep]
            kps = outputs[f"kps_{s}"].reshape(-1, 10)[keep]
            col, row = (keep % cols).astype(np.float32), (keep // cols).astype(np.float32)
            cx, cy = (col + bbox[:, 0]) * s, (row + bbox[:, 1]) * s
            w, h = np.exp(bbox[:, 2]) * s, np.exp(bbox[:, 3]) * s
            boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1))
            marks.append(np.stack([(col[:, None] + kps[:, 0::2]) * s, (row[:, None] + kps[:, 1::2]) * s], -1))
            scores.append(score[keep])
        if not boxes:
            return FaceDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                  np.zeros((0, 5, 2), np.float32))
        b, sc, mk = np.concatenate(boxes), np.concatenate(scores), np.concatenate(marks)
        keep = nms(b, sc, self.nms_iou)
        fh, fw = frame_size
        scale = np.array([fw / in_w, fh / in_h], np.float32)
        b = (b[keep].reshape(-1, 2, 2) * scale).reshape(-1, 4)
        return FaceDetections(b.astype(np.float32), sc[keep].astype(np.float32), (mk[keep] * scale).astype(np.float32))

    def eval(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        """AP@0.5 on a face dataset (same protocol as :meth:`FaceDetectorLearner.eval`)."""
        from perception.faces.detector import FaceDetectorLearner

        return FaceDetectorLearner.eval(self, dataset, **kwargs)  # type: ignore[arg-type]

    def calibration_inputs(self, dataset: Any, samples: int) -> list[dict[str, np.ndarray]]:
        """Frames of a face dataset for int8 calibration (as :meth:`FaceDetectorLearner.calibration_inputs`)."""
        from perception.faces.detector import FaceDetectorLearner

        return FaceDetectorLearner.calibration_inputs(self, dataset, samples)  # type: ignore[arg-type]


class SFaceRecognizer(_OnnxOnly, FaceRecognizerLearner):
    """Face recogniser from an SFace-format ONNX file, with the same gallery, confidence and unknown rule.

    Args:
        onnx_path: the ONNX file (input ``(N, 3, 112, 112)`` RGB 0..255, output ``(N, D)`` features).
        threshold: cosine similarity below which a face is ``"unknown"`` (OpenCV's SFace default 0.363).
        temperature: softmax temperature of the confidence.

    Raises:
        OnnxModelError: the file is corrupt or its input is not ``(N, 3, 112, 112)``.
    """

    name = "sface"
    version = "1"

    def __init__(self, onnx_path: str | Path, threshold: float = 0.363, temperature: float = 0.05) -> None:
        path = Path(onnx_path)
        validate_onnx(path)
        inputs, outputs = _onnx_io(path)
        if len(inputs) != 1 or inputs[0][1][1:] != [3, 112, 112] or len(outputs) != 1:
            raise OnnxModelError(f"{path} is not an SFace-format recogniser: needs one input (N, 3, 112, 112) "
                                 f"and one output, has inputs {inputs} and outputs {outputs}")
        _OnnxOnly.__init__(self, path, threshold=threshold, temperature=temperature)
        self.gallery_names = []
        self.gallery = np.zeros((0, 0), np.float32)
        self.threshold = threshold
        self.temperature = temperature

    def input_specs(self) -> list[TensorSpec]:
        pre = ImagePreprocessing(size=(112, 112), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0,
                                 extra={"crop_margin": 1.15})
        return [self._graph_image_spec(pre, "RGB 0..255")]

    def output_spec(self) -> list[TensorSpec]:
        return [TensorSpec(self.onnx_outputs[0], [-1, -1], "float32", "face feature (normalised here)")]

    def embed(self, crops: list[np.ndarray] | np.ndarray, batch_size: int = 1) -> np.ndarray:
        crops = [crops] if isinstance(crops, np.ndarray) and crops.ndim == 3 else list(crops)
        feats = []
        for i, c in enumerate(crops):
            check_image(c, f"face crop {i}")
            feats.append(self.run_network(self.preprocess([c]))[self.onnx_outputs[0]].reshape(1, -1))
        if not feats:
            return np.zeros((0, max(1, self.gallery.shape[1])), np.float32)
        f = np.concatenate(feats).astype(np.float32)
        f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-9)
        if self.gallery.shape[1] == 0:
            self.gallery = np.zeros((0, f.shape[1]), np.float32)
        return f

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.gallery_names = list(state.get("gallery_names", []))
        self.gallery = np.asarray(state.get("gallery", []), np.float32)
        if self.gallery.size == 0:
            self.gallery = np.zeros((0, 0), np.float32)
        self.temperature = float(state.get("temperature", self.temperature))
        self.threshold = float(state.get("threshold", self.threshold))

    def eval(self, dataset: Any, **kwargs: Any) -> dict[str, Any]:
        return FaceRecognizerLearner.eval(self, dataset, **kwargs)
