"""INT8 by explicit quantization: the Q/DQ graph (checked on ONNX Runtime on the CPU) and the TensorRT build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from perception.errors import InvalidArgumentError, QuantizationError, RuntimeNotAvailableError
from perception.faces.dataset import FaceDataset
from perception.faces.detector import FaceDetectorLearner
from perception.faces.recognizer import FaceRecognizerLearner
from perception.learner import load_model
from perception.manifest import INT8_ONNX_FILE, MODEL_REGISTRY
from perception.metrics import box_iou
from perception.quantization import _split, compare_onnx, convert_float16, qdq_node_counts, quantize_learner
from perception.runtime import TOLERANCES, OnnxRuntime, build_tensorrt_engine, tensorrt_available
from scripts.cli import main
from tests.fakes import FUSION_TEST_ENTRY, FusionTestLearner

from .conftest import shipped


def _graph(path: Path) -> onnx.GraphProto:
    return onnx.load(str(path)).graph


def test_qdq_graph_is_tensorrt_form_and_close_to_fp32(tiny_detector: FaceDetectorLearner, tiny_dataset: FaceDataset,
                                                      tmp_path: Path) -> None:
    summary = quantize_learner(tiny_detector, tiny_dataset, samples=16, check_samples=8, path=tmp_path)
    int8 = tmp_path / INT8_ONNX_FILE
    assert summary["int8_onnx"] == str(int8) and summary["checked_on"] == "held-out samples"
    counts = qdq_node_counts(int8)
    assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > 0 and counts == summary["qdq_nodes"]
    graph = _graph(int8)
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    zero_points = [init[n.input[2]] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    # Symmetric signed int8 everywhere: zero point 0 (the only one TensorRT takes).
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)
    conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv"}
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in conv_weights]
    assert weight_dq, "convolution weights are not quantized"
    for node in weight_dq:  # int8 weights with one scale per output channel
        weights, scale = init[node.input[0]], init[node.input[1]]
        assert weights.dtype == np.int8 and np.abs(weights.astype(int)).max() <= 127
        assert scale.shape == (weights.shape[0],)
    assert summary["relative_mean_abs_diff"] <= TOLERANCES["onnxruntime-int8"], summary
    assert summary["parity"] is True
    # The int8 graph is a runtime like any other, selected by precision.
    tiny_detector.model_dir = tmp_path
    try:
        tiny_detector.set_runtime("onnxruntime", precision="int8")
        assert tiny_detector.runtime_name == "onnxruntime-int8"
        assert isinstance(tiny_detector.infer(next(iter(tiny_dataset))[0]).scores, np.ndarray)
    finally:
        tiny_detector.model_dir = None
        tiny_detector.set_runtime("torch")


def test_shipped_detector_int8_keeps_its_detections(tiny_dataset: FaceDataset, tmp_path: Path) -> None:
    """On simulator frames the int8 detector finds the same faces as fp32 (boxes IoU >= 0.5), scores close."""
    det = load_model(shipped("face_detector"))
    assert isinstance(det, FaceDetectorLearner)
    frames = [img for img, _ in tiny_dataset]
    calibration = det.calibration_inputs(tiny_dataset, 16)
    int8 = det.quantize(calibration, tmp_path)  # never into assets/: the shipped model stays as it is
    assert det.model_dir == shipped("face_detector") and not (det.model_dir / INT8_ONNX_FILE).exists()
    check = _split(det.calibration_inputs(tiny_dataset, len(frames)), 16)[1]
    parity = compare_onnx(tmp_path / "model.onnx", int8, check)
    assert parity["relative_mean_abs_diff"] <= TOLERANCES["onnxruntime-int8"], parity
    ref = det.infer(frames)
    det.set_runtime("onnxruntime", path=int8)
    got = det.infer(frames)
    n_ref, matched, score_diff = 0, 0, []
    for r, g in zip(ref, got):
        n_ref += len(r)
        if len(r) and len(g):
            iou = box_iou(r.boxes, g.boxes)
            hit = iou.max(1) >= 0.5
            matched += int(hit.sum())
            score_diff += list(np.abs(r.scores[hit] - g.scores[iou.argmax(1)[hit]]))
    assert n_ref >= 10
    assert matched >= 0.85 * n_ref, f"int8 kept {matched} of {n_ref} detections"
    assert abs(sum(len(g) for g in got) - n_ref) <= 0.15 * n_ref + 1
    # Measured: 24 of 24 kept, 25 found, score difference mean 0.03, max 0.18.
    assert np.mean(score_diff) <= 0.06 and max(score_diff) <= 0.25


def test_two_input_model_quantizes_with_named_calibration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(MODEL_REGISTRY, "fusion_test", FUSION_TEST_ENTRY)
    learner = FusionTestLearner()
    rng = np.random.default_rng(0)

    def batch(n: int) -> dict[str, np.ndarray]:
        images = list(rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8))
        return learner.preprocess({"image": images, "tokens": [rng.integers(1, 10, rng.integers(2, 6))
                                                               for _ in range(n)]})

    calibration = [batch(4) for _ in range(6)]
    out = learner.save(tmp_path / "fusion")
    int8 = learner.quantize(calibration)
    assert int8 == out / INT8_ONNX_FILE and sum(qdq_node_counts(int8).values()) > 0
    meta = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert json.loads(meta["vantage_quantization"])["calibration_samples"] == 24
    assert json.loads(meta["vantage_manifest"])["name"] == "fusion_test"
    ort = OnnxRuntime(int8, inputs=learner.input_specs())
    assert ort.input_names == ["image", "tokens"]
    parity = compare_onnx(out / "model.onnx", int8, [batch(4) for _ in range(3)])
    assert parity["relative_mean_abs_diff"] <= TOLERANCES["onnxruntime-int8"], parity
    with pytest.raises(InvalidArgumentError, match="inputs"):
        learner.quantize([{"image": calibration[0]["image"]}])


def test_int8_needs_a_quantized_graph(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    fp32 = tiny_detector.export(tmp_path)
    with pytest.raises(QuantizationError, match="no Q/DQ nodes"):
        build_tensorrt_engine(fp32, tmp_path / "model.int8.engine", {"input": ((1, 3, 64, 80),) * 3}, "int8")
    with pytest.raises(InvalidArgumentError, match=r"quantize\(\)"):
        tiny_detector.set_runtime("onnxruntime", precision="int8")
    with pytest.raises(InvalidArgumentError, match="torch precision"):
        tiny_detector.set_runtime("torch", precision="int8")
    with pytest.raises(InvalidArgumentError, match="calibration"):
        tiny_detector.quantize([], tmp_path)


def test_fp16_graph_for_tensorrt_11_runs_close_to_fp32(tiny_recognizer: FaceRecognizerLearner, tmp_path: Path) -> None:
    """TensorRT 11 has no FP16 builder flag; the graph itself is converted (fp32 inputs and outputs kept)."""
    fp32 = tiny_recognizer.export(tmp_path)
    fp16 = convert_float16(fp32, tmp_path / "model.fp16.onnx")
    x = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    ref = OnnxRuntime(fp32).run(x)["embedding"]
    got = OnnxRuntime(fp16, inputs=tiny_recognizer.input_specs()).run(x)["embedding"]
    assert got.dtype == np.float32
    assert np.abs(ref - got).max() <= TOLERANCES["tensorrt-fp16"]


def test_tensorrt_int8_engine_from_the_qdq_graph(tiny_detector: FaceDetectorLearner, tiny_dataset: FaceDataset,
                                                 tmp_path: Path) -> None:
    ok, reason = tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT path not testable here: {reason}")
    from perception.runtime import TensorRTRuntime

    calibration = tiny_detector.calibration_inputs(tiny_dataset, 16)
    engine = tiny_detector.optimize(tmp_path, precision="int8", calibration=calibration)
    assert (tmp_path / INT8_ONNX_FILE).is_file()
    rt = TensorRTRuntime(engine, inputs=tiny_detector.input_specs())
    ref, got = [], []
    for batch in calibration:
        ref.append(tiny_detector.run_network(batch)["output"])
        got.append(rt.run(batch)["output"])
    ref, got = np.concatenate(ref), np.concatenate(got)
    relative = np.abs(ref - got).mean() / (ref.max() - ref.min())
    assert relative <= TOLERANCES["tensorrt-int8"]


def test_quantize_eval_and_optimize_commands(tiny_detector: FaceDetectorLearner, tiny_dataset: FaceDataset,
                                             tmp_path: Path) -> None:
    out = tiny_detector.save(tmp_path / "det")
    tiny_detector.model_dir = None
    result = CliRunner().invoke(main, ["perception", "quantize", str(out), "--calib-data", str(tiny_dataset.root),
                                       "--samples", "12", "--check-samples", "4"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert {"parity", "tolerance", "relative_mean_abs_diff", "max_abs_diff", "qdq_nodes", "int8_onnx"} <= set(summary)
    assert summary["calibration_samples"] == 12 and (out / INT8_ONNX_FILE).is_file()
    evaluated = CliRunner().invoke(main, ["perception", "eval", str(out), "--data", str(tiny_dataset.root),
                                          "--runtime", "onnxruntime", "--precision", "int8"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output[evaluated.output.index("{"):])["metrics"]
    assert metrics["runtime"] == "onnxruntime-int8" and "ap50" in metrics
    pointed = CliRunner().invoke(main, ["perception", "eval", str(out), "--data", str(tiny_dataset.root),
                                        "--runtime", "onnxruntime", "--model-file", str(out / INT8_ONNX_FILE)])
    assert pointed.exit_code == 0, pointed.output
    optimized = CliRunner().invoke(main, ["perception", "optimize", str(out), "--precision", "int8"])
    ok, _ = tensorrt_available()
    assert (optimized.exit_code == 0) == ok
    if not ok:
        assert "TensorRT" in optimized.output or "CUDA" in optimized.output
    shutil.rmtree(out)
    tiny_detector.save(out)
    missing = CliRunner().invoke(main, ["perception", "optimize", str(out), "--precision", "int8"])
    assert missing.exit_code != 0 and "--calib-data" in missing.output


def test_optimize_int8_without_tensorrt_fails_fast(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    ok, _ = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available; the missing-TensorRT error cannot be exercised")
    with pytest.raises(RuntimeNotAvailableError, match=r"TensorRT|CUDA"):
        tiny_detector.optimize(tmp_path, precision="int8", calibration=[np.zeros((1, 3, 64, 80), np.float32)])
    assert not (tmp_path / INT8_ONNX_FILE).exists()
