"""The learner interface for every model: save/load, manifest checks, input checks, runtimes, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from envs.errors import UnknownNameError
from perception.errors import (
    CheckpointError,
    InvalidImageError,
    ManifestError,
    ModelExistsError,
    OnnxModelError,
)
from perception.faces.detector import FaceDetections, FaceDetectorLearner
from perception.faces.external import SFaceRecognizer, YuNetDetector
from perception.faces.recognizer import FaceRecognizerLearner, Recognition
from perception.learner import Learner, load_model
from tests.fakes import fake_model

FRAME = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
CROP = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(params=["face_detector", "face_recognizer", "yunet", "sface"])
def model(request: pytest.FixtureRequest, tiny_detector: FaceDetectorLearner,
          tiny_recognizer: FaceRecognizerLearner, tmp_path: Path) -> Learner:
    if request.param == "face_detector":
        return tiny_detector
    if request.param == "face_recognizer":
        return tiny_recognizer
    if request.param == "yunet":
        return YuNetDetector(fake_model("yunet", tmp_path / "yunet.onnx"), score_threshold=0.5)
    sface = SFaceRecognizer(fake_model("sface", tmp_path / "sface.onnx"))
    sface.enroll("alice", CROP)
    return sface


def _sample(model: Learner) -> np.ndarray:
    return FRAME if isinstance(model, FaceDetectorLearner | YuNetDetector) else CROP


def _same(a: object, b: object) -> None:
    if isinstance(a, FaceDetections):
        assert isinstance(b, FaceDetections)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    else:
        assert isinstance(a, Recognition) and isinstance(b, Recognition)
        assert a.identity == b.identity
        assert a.similarity == pytest.approx(b.similarity, abs=1e-5)


def test_save_load_round_trip(model: Learner, tmp_path: Path) -> None:
    out = model.save(tmp_path / "saved")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["manifest_version"] == 2
    for key in ("name", "version", "config", "inputs", "outputs", "training_data_hash"):
        assert key in manifest
    (entry,) = manifest["inputs"]
    assert entry["shape"][0] == (-1 if model.name != "yunet" else 1)  # the fake YuNet graph fixes batch 1
    assert entry["preprocessing"]["kind"] == "image" and len(entry["preprocessing"]["size"]) == 2
    loaded = load_model(out)
    assert type(loaded) is type(model)
    _same(model.infer(_sample(model)), loaded.infer(_sample(model)))


def test_nothing_is_overwritten_without_permission(model: Learner, tmp_path: Path) -> None:
    model.save(tmp_path / "m")
    with pytest.raises(ModelExistsError, match="overwrite"):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)


@pytest.mark.parametrize("bad", [
    np.zeros((240, 320, 3), np.float32),
    np.zeros((3, 240, 320), np.uint8),
    np.zeros((240, 320), np.uint8),
    np.zeros((240, 320, 4), np.uint8),
    np.zeros((0, 320, 3), np.uint8),
    [[1, 2, 3]],
])
def test_bad_images_get_clear_errors(model: Learner, bad: object) -> None:
    with pytest.raises(InvalidImageError):
        model.infer(bad)  # type: ignore[arg-type]


def test_unknown_runtime_is_named(model: Learner) -> None:
    with pytest.raises(UnknownNameError, match="onnxruntime"):
        model.set_runtime("tvm")


def test_manifest_that_does_not_match_weights(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    out = tiny_detector.save(tmp_path / "det")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["config"]["width"] = 8
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="do not match"):
        load_model(out)


def test_corrupted_weights_and_missing_manifest(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    out = tiny_detector.save(tmp_path / "det")
    with open(out / "weights.pt", "ab") as fh:
        fh.write(b"garbage")
    with pytest.raises(ManifestError, match="SHA-256"):
        load_model(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_model(out)
    (out / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        load_model(out)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent")


def test_load_checks_the_model_kind(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    out = tiny_detector.save(tmp_path / "det")
    with pytest.raises(ManifestError, match="not a FaceRecognizerLearner"):
        FaceRecognizerLearner.load(out)


def test_corrupt_onnx_files_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf")
    with pytest.raises(OnnxModelError):
        YuNetDetector(bad)
    with pytest.raises(OnnxModelError):
        SFaceRecognizer(bad)
    # A valid ONNX file of the wrong kind names what is missing.
    with pytest.raises(OnnxModelError, match="YuNet"):
        YuNetDetector(fake_model("sface", tmp_path / "s.onnx"))


def test_yunet_decoding(tmp_path: Path) -> None:
    det = YuNetDetector(fake_model("yunet", tmp_path / "y.onnx"), score_threshold=0.5)
    found = det.infer(np.zeros((64, 64, 3), np.uint8))
    assert len(found) == 1
    # cell (row 1, col 2) at stride 8 with offset 0.5: centre (20, 12); size exp(log 2)*8 x exp(log 2.5)*8
    np.testing.assert_allclose(found.boxes[0], [12.0, 2.0, 28.0, 22.0], atol=1e-4)
    assert found.landmarks is not None and found.landmarks.shape == (1, 5, 2)
    # Boxes scale back to the frame size.
    big = det.infer(np.zeros((128, 128, 3), np.uint8))
    np.testing.assert_allclose(big.boxes[0], [24.0, 4.0, 56.0, 44.0], atol=1e-4)
