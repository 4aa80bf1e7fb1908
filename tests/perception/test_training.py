"""Training helpers (atomic checkpoints, schedule), fit option checks and the benchmark on a two-input model."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.benchmark import bench_model, summary_lines
from perception.errors import CheckpointError, InvalidArgumentError
from perception.faces.detector import FaceDetectorLearner
from perception.manifest import MODEL_REGISTRY
from perception.training import TrainingCheckpoint, fit_options, prepare_learner, warmup_cosine
from tests.fakes import FUSION_TEST_ENTRY, FusionTestLearner


def test_checkpoint_round_trip_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sched = warmup_cosine(opt, 10)
    rng = np.random.default_rng(0)
    ckpt = TrainingCheckpoint(tmp_path / "run" / "ckpt.pt", {"net": net, "opt": opt, "sched": sched}, rng)
    assert ckpt.resume() == (0, [])
    ckpt.save(3, [1.0, 0.5, 0.25])
    expected = rng.random()
    weights = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.zero_()
    assert ckpt.resume() == (3, [1.0, 0.5, 0.25])
    assert torch.equal(net.weight, weights) and rng.random() == expected
    # A crash while writing leaves the previous checkpoint whole and no temporary file behind.
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(4, [0.1])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["ckpt.pt"]
    assert TrainingCheckpoint(ckpt.path, {"net": net}, np.random.default_rng(1)).resume()[0] == 3
    (tmp_path / "run" / "ckpt.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="delete it"):
        ckpt.resume()
    ckpt.remove()
    assert not ckpt.path.exists()


def test_warmup_cosine_shape() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, 20, warmup=0.25)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == pytest.approx(0.2) and max(rates) == pytest.approx(1.0)
    assert rates[-1] < 0.05 and all(a >= b for a, b in pairwise(rates[5:]))


def test_fit_options_and_fine_tuning(tmp_path: Path) -> None:
    det = FaceDetectorLearner(width=4, input_size=(64, 80))
    kwargs = fit_options(det, {"crop": [32, 48]}, {"epochs": 1})
    assert kwargs == {"epochs": 1, "crop": [32, 48]}
    with pytest.raises(InvalidArgumentError, match="no_such_option"):
        fit_options(det, {"no_such_option": 1}, {})
    with pytest.raises(InvalidArgumentError, match="own command-line options"):
        fit_options(det, {"epochs": 3}, {"epochs": 1})
    base = det.save(tmp_path / "base")
    tuned = prepare_learner("face_detector", {"score_threshold": 0.5}, base)
    assert tuned.config == {**det.config, "score_threshold": 0.5}
    assert all(torch.equal(a, b) for a, b in zip(tuned.net.state_dict().values(), det.net.state_dict().values()))
    with pytest.raises(InvalidArgumentError, match="not a 'face_recognizer'"):
        prepare_learner("face_recognizer", None, base)
    with pytest.raises(InvalidArgumentError, match="changes the network"):
        prepare_learner("face_detector", {"width": 8}, base)


def test_benchmark_of_a_two_input_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODEL_REGISTRY, "fusion_test", FUSION_TEST_ENTRY)
    learner = FusionTestLearner()
    out = learner.save(tmp_path / "fusion")
    learner.export(out)
    result = bench_model(out, iterations=3, threads=1)
    assert result["inputs"] == {"image": [3, 16, 16], "tokens": [-1]} and result["input"] == [3, 16, 16]
    assert {"torch", "onnxruntime"} <= set(result) and result["onnxruntime"]["throughput_per_s"] > 0
    lines = summary_lines({"device": "test", "models": [result],
                           "pipeline": {"frame": [240, 320, 3], "fps": 1.0, "p50_ms": 1.0, "faces_found": 0}})
    assert any("fusion_test" in line and "onnxruntime" in line for line in lines)
