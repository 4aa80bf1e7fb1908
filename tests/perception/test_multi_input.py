"""Learners with several named inputs: specs, preprocessing, runtimes, export with dynamic dims, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.errors import InvalidInputError, ManifestError, SpecMismatchError
from perception.export import BATCH_AXIS, EXPORTER, OPSET, check_export_parity, example_inputs
from perception.learner import load_model
from perception.manifest import MODEL_REGISTRY
from perception.runtime import TOLERANCES, OnnxRuntime, TorchRuntime
from perception.specs import TensorSpec
from tests.fakes import FUSION_TEST_ENTRY, FusionTestLearner, fake_model

REPO = Path(__file__).resolve().parents[2]
IMAGES = [np.random.default_rng(i).integers(0, 255, (20 + 4 * i, 24, 3), dtype=np.uint8) for i in range(3)]
TOKENS = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]


@pytest.fixture
def fusion(monkeypatch: pytest.MonkeyPatch) -> FusionTestLearner:
    monkeypatch.setitem(MODEL_REGISTRY, "fusion_test", FUSION_TEST_ENTRY)
    return FusionTestLearner()


def test_preprocess_gives_named_batches(fusion: FusionTestLearner) -> None:
    x = fusion.preprocess({"image": IMAGES, "tokens": TOKENS})
    assert list(x) == ["image", "tokens"]
    assert x["image"].shape == (3, 3, 16, 16) and x["image"].dtype == np.float32
    # Question tokens of different lengths are padded with the spec's pad value.
    assert x["tokens"].dtype == np.int64
    np.testing.assert_array_equal(x["tokens"], [[1, 2, 3, 0, 0], [4, 0, 0, 0, 0], [5, 6, 7, 8, 9]])
    assert fusion.infer({"image": IMAGES, "tokens": TOKENS}).shape == (3,)


@pytest.mark.parametrize(("inputs", "match"), [
    ({"image": IMAGES}, r"missing \['tokens'\]"),
    ({"image": IMAGES, "tokens": TOKENS, "depth": [1]}, r"unexpected \['depth'\]"),
    ({"image": IMAGES, "tokens": TOKENS[:2]}, "different batch sizes"),
    ({"image": IMAGES, "tokens": np.zeros((3, 2, 2), np.int64)}, r"spec is \[-1, -1\]"),
    (IMAGES, "2 named inputs"),
])
def test_bad_inputs_are_named(fusion: FusionTestLearner, inputs: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        fusion.preprocess(inputs)


def test_torch_runtime_names_outputs_by_spec(fusion: FusionTestLearner) -> None:
    runtime = fusion.runtime
    assert isinstance(runtime, TorchRuntime) and runtime.input_names == ["image", "tokens"]
    out = fusion.run_network(fusion.preprocess({"image": IMAGES, "tokens": TOKENS}))
    assert list(out) == ["logits", "features"]
    assert out["logits"].shape == (3, 3) and out["features"].shape == (3, 16)
    with pytest.raises(InvalidInputError, match="missing"):
        runtime.run({"image": np.zeros((1, 3, 16, 16), np.float32)})


def test_two_input_export_has_dynamic_dims_and_matches_onnxruntime(fusion: FusionTestLearner,
                                                                    tmp_path: Path) -> None:
    import onnx

    path = fusion.export(tmp_path)
    graph = onnx.load(str(path)).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {"image": [BATCH_AXIS, 3, 16, 16], "tokens": [BATCH_AXIS, "tokens_1"]}
    assert [d.dim_param for o in graph.output for d in o.type.tensor_type.shape.dim[:1]] == [BATCH_AXIS] * 2
    assert onnx.load(str(path)).opset_import[0].version == OPSET
    ort = OnnxRuntime(path, threads=1, inputs=fusion.input_specs())
    assert ort.input_names == ["image", "tokens"] and ort.output_names == ["logits", "features"]
    for batch, length in ((3, 5), (1, 7), (8, 1)):  # other batches and token counts than the export's dummy
        x = example_inputs(fusion.input_specs(), batch=batch, rng=np.random.default_rng(batch), dynamic=length)
        ref, got = fusion.run_network(x), ort.run(x)
        for name in ("logits", "features"):
            assert got[name].shape[0] == batch
            assert np.abs(ref[name] - got[name]).max() <= TOLERANCES["onnxruntime"]
    assert check_export_parity(fusion, path, samples=10)["parity"] is True
    fusion.set_runtime("onnxruntime", path)
    np.testing.assert_allclose(fusion.run_network(x)["logits"], ref["logits"], atol=TOLERANCES["onnxruntime"])


def test_onnxruntime_checks_the_graph_against_the_specs(fusion: FusionTestLearner, tmp_path: Path) -> None:
    path = fusion.export(tmp_path)
    image, tokens = fusion.input_specs()
    with pytest.raises(SpecMismatchError, match="'question'"):
        OnnxRuntime(path, inputs=[image, TensorSpec("question", tokens.shape, "int64")])
    with pytest.raises(SpecMismatchError, match=r"input 'image' has shape \['?-1"):
        OnnxRuntime(path, inputs=[TensorSpec("image", [-1, 3, 32, 32]), tokens])
    with pytest.raises(SpecMismatchError, match="dtype int64 but its spec says int32"):
        OnnxRuntime(path, inputs=[image, TensorSpec("tokens", [-1, -1], "int32")])
    # A learner given a graph for another input size says so when the runtime is selected.
    other = FusionTestLearner(image_size=32)
    with pytest.raises(SpecMismatchError, match="image"):
        other.set_runtime("onnxruntime", path)


def test_save_load_round_trip_with_two_inputs(fusion: FusionTestLearner, tmp_path: Path) -> None:
    out = fusion.save(tmp_path / "fusion")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["manifest_version"] == 2 and "input" not in manifest
    assert [(e["name"], e["dtype"], e["preprocessing"]["kind"]) for e in manifest["inputs"]] == [
        ("image", "float32", "image"), ("tokens", "int64", "array")]
    assert manifest["inputs"][1]["preprocessing"]["pad_value"] == 0
    assert manifest["inputs"][1]["value_range"] == [0, 10]
    loaded = load_model(out)
    x = {"image": IMAGES, "tokens": TOKENS}
    np.testing.assert_array_equal(loaded.infer(x), fusion.infer(x))
    # A manifest whose inputs are not the network's is refused by name.
    manifest["inputs"][1]["name"] = "question"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="question"):
        load_model(out)


def test_every_onnx_export_uses_the_pinned_torchscript_exporter(fusion: FusionTestLearner, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = torch.onnx.export

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", spy)
    fusion.export(tmp_path / "f.onnx")
    fake_model("yunet", tmp_path / "y.onnx")
    fake_model("sface", tmp_path / "s.onnx")
    assert EXPORTER == "torchscript"
    assert [(c["dynamo"], c["opset_version"]) for c in calls] == [(False, OPSET)] * 3
    # ... and nothing in the repository calls torch.onnx.export except perception/export.py.
    needle = "torch.onnx" + ".export("  # spelled in two parts so that this file does not match itself
    callers = sorted(str(p.relative_to(REPO)) for folder in ("perception", "scripts", "agents", "envs", "tests")
                     for p in (REPO / folder).rglob("*.py") if needle in p.read_text())
    assert callers == ["perception/export.py"]
