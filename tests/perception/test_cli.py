"""The perception, data and bench commands with toy settings."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from perception.faces.detector import FaceDetectorLearner
from perception.runtime import tensorrt_available
from scripts.cli import main
from tests.fakes import fake_model

from .conftest import shipped


def _json(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def test_data_faces_command(tmp_path: Path) -> None:
    args = ["data", "faces", "--n", "4", "--seed", "1", "--out", str(tmp_path / "d"), "--identities", "5",
            "--heldout", "1", "--distance", "0.6", "2.0", "--shard-size", "2", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    first = _json(result.output)
    assert first["frames"] == 4
    again = CliRunner().invoke(main, args)  # resumes: nothing to do, same hash
    assert _json(again.output)["hash"] == first["hash"]


def test_fit_export_eval_and_overwrite(tiny_dataset, tmp_path: Path) -> None:
    out = tmp_path / "det"
    fit = ["perception", "fit", "face_detector", "--data", str(tiny_dataset.root), "--out", str(out), "--epochs", "1",
           "--batch-size", "8", "--config", "width=4", "--config", "input_size=[64, 80]"]
    result = CliRunner().invoke(main, fit)
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").is_file() and (out / "model.onnx").is_file()
    refused = CliRunner().invoke(main, fit)
    assert refused.exit_code != 0 and "--overwrite" in refused.output
    exported = CliRunner().invoke(main, ["perception", "export", str(out)])
    assert exported.exit_code == 0, exported.output
    assert _json(exported.output)["parity"] is True
    evaluated = CliRunner().invoke(main, ["perception", "eval", str(out), "--data", str(tiny_dataset.root),
                                          "--runtime", "onnxruntime"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "ap50" in _json(evaluated.output)["metrics"]
    optimized = CliRunner().invoke(main, ["perception", "optimize", str(out)])
    ok, _ = tensorrt_available()
    assert (optimized.exit_code == 0) == ok
    if not ok:
        assert "TensorRT" in optimized.output or "CUDA" in optimized.output
    assert FaceDetectorLearner.load(out).config["width"] == 4


def test_import_onnx(tmp_path: Path) -> None:
    onnx_file = fake_model("yunet", tmp_path / "y.onnx")
    result = CliRunner().invoke(main, ["perception", "import-onnx", "yunet", str(onnx_file), "--out",
                                       str(tmp_path / "yunet")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "yunet" / "model.onnx").is_file()


def test_bench_perception_json(tmp_path: Path) -> None:
    det, rec = shipped("face_detector"), shipped("face_recognizer")
    result = CliRunner().invoke(main, ["bench", "perception", "--json", "--iterations", "5", "--detector", str(det),
                                       "--recognizer", str(rec), "--threads", "1"])
    assert result.exit_code == 0, result.output
    data = _json(result.output)
    assert data["pipeline"]["fps"] > 0 and "device" in data
    assert {"torch", "onnxruntime"} <= set(data["models"][0])


def test_fit_init_fine_tunes_and_rejects_bad_options(tiny_dataset, tiny_detector: FaceDetectorLearner,
                                                     tmp_path: Path) -> None:
    base = tiny_detector.save(tmp_path / "base")
    out = tmp_path / "tuned"
    fit = ["perception", "fit", "face_detector", "--data", str(tiny_dataset.root), "--out", str(out), "--epochs", "1",
           "--batch-size", "8", "--init", str(base), "--option", "min_height=4", "--option", "crop=[32, 48]"]
    result = CliRunner().invoke(main, fit)
    assert result.exit_code == 0, result.output
    tuned = FaceDetectorLearner.load(out)
    assert tuned.config == tiny_detector.config  # --init carries the base model's config
    bad = CliRunner().invoke(main, [*fit[:-4], "--option", "no_such_option=1", "--overwrite"])
    assert bad.exit_code != 0 and "no_such_option" in bad.output
    wrong = CliRunner().invoke(main, ["perception", "fit", "face_recognizer", "--data", str(tiny_dataset.root),
                                      "--out", str(tmp_path / "rec"), "--init", str(base)])
    assert wrong.exit_code != 0 and "face_detector" in wrong.output
