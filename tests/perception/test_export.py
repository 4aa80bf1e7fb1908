"""ONNX export parity with torch (100 random + 100 real inputs) and the TensorRT path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.faces.dataset import FaceDataset
from perception.faces.detector import FaceDetectorLearner
from perception.faces.recognizer import FaceRecognizerLearner, crop_face
from perception.learner import Learner
from perception.runtime import TOLERANCES, OnnxRuntime, tensorrt_available


def _real_inputs(model: Learner, dataset: FaceDataset, n: int = 100) -> np.ndarray:
    images = []
    for img, label in dataset:
        if isinstance(model, FaceDetectorLearner):
            images.append(img)
        else:
            images.extend(crop_face(img, f.box) for f in label.faces if f.visible)
    images = (images * (n // len(images) + 1))[:n]
    return model.preprocessing(images)


@pytest.mark.parametrize("which", ["detector", "recognizer"])
def test_onnxruntime_matches_torch(which: str, tiny_detector: FaceDetectorLearner,
                                   tiny_recognizer: FaceRecognizerLearner, tiny_dataset: FaceDataset,
                                   tmp_path: Path) -> None:
    model: Learner = tiny_detector if which == "detector" else tiny_recognizer
    path = model.export(tmp_path)
    ort = OnnxRuntime(path, threads=1, inputs=model.input_specs())
    shape = model.input_specs()[0].shape[1:]
    random = np.random.default_rng(0).normal(size=(100, *shape)).astype(np.float32)
    for x in (random, _real_inputs(model, tiny_dataset)):
        ref = model.run_network({"input": x})
        got = ort.run({"input": x})
        assert list(ref) == list(got) == [o.name for o in model.output_spec()]
        for name, a in ref.items():
            assert a.shape == got[name].shape
            assert np.abs(a - got[name]).max() <= TOLERANCES["onnxruntime"]


def test_runtime_switch_gives_same_results(tiny_detector: FaceDetectorLearner, tiny_dataset: FaceDataset,
                                           tmp_path: Path) -> None:
    frame = next(iter(tiny_dataset))[0]
    tiny_detector.set_runtime("torch")
    ref = tiny_detector.infer(frame)
    tiny_detector.set_runtime("onnxruntime", tiny_detector.export(tmp_path))
    try:
        got = tiny_detector.infer(frame)
    finally:
        tiny_detector.set_runtime("torch")
    np.testing.assert_allclose(ref.scores, got.scores, atol=1e-4)
    np.testing.assert_allclose(ref.boxes, got.boxes, atol=1e-2)


def test_exported_onnx_carries_the_manifest(tiny_recognizer: FaceRecognizerLearner, tmp_path: Path) -> None:
    import json

    import onnx

    model = onnx.load(str(tiny_recognizer.export(tmp_path / "rec.onnx")))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["vantage_manifest"])["name"] == "face_recognizer"


def test_tensorrt_fp16_matches_torch(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    ok, reason = tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT path not testable here: {reason}")
    from perception.runtime import TensorRTRuntime

    engine = tiny_detector.optimize(tmp_path, precision="fp16")
    x = np.random.default_rng(0).normal(size=(4, *tiny_detector.input_specs()[0].shape[1:])).astype(np.float32)
    ref = tiny_detector.run_network({"input": x})
    got = TensorRTRuntime(engine, inputs=tiny_detector.input_specs()).run({"input": x})
    assert np.abs(ref["output"] - got["output"]).max() <= TOLERANCES["tensorrt-fp16"]


def test_optimize_without_tensorrt_says_why(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available; the missing-TensorRT error cannot be exercised")
    from perception.errors import RuntimeNotAvailableError

    with pytest.raises(RuntimeNotAvailableError, match=r"TensorRT|CUDA"):
        tiny_detector.optimize(tmp_path, precision="fp16")
