"""Faults: a dataset run killed mid-shard, writes that fail part-way, a fit interrupted after an epoch.

Each ends the same way: the previous good files stay loadable, no temporary file is left behind, and running
the same thing again completes to the same result as an uninterrupted run.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from envs.worlds.face_scenes import FaceSceneSampler
from perception.faces.dataset import FaceDataset, generate_dataset
from perception.faces.detector import FaceDetectorLearner
from perception.learner import load_model
from perception.runtime import OnnxRuntime
from scripts.cli import main

from .conftest import TINY_CONFIG

REPO = Path(__file__).resolve().parents[2]


class PartWriteError(OSError):
    """What the monkeypatched writers raise after writing part of a file (a full disk, a pulled cable)."""


def _temporaries(folder: Path) -> list[str]:
    """Files ``common.io.atomic_path`` would have left behind (hidden, named after their target)."""
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


def _part_write(real):
    """A stand-in for ``real`` (``torch.save``, ``onnx.save``, ``np.savez_compressed``) that puts some bytes into
    its target (the first path or file argument) and then fails."""
    def write(*args, **kwargs):
        target = next(a for a in args if isinstance(a, str | Path) or hasattr(a, "write"))
        if hasattr(target, "write"):
            target.write(b"PK\x03\x04 half a file")
        else:
            Path(target).write_bytes(b"half a file")
        raise PartWriteError("no space left on device (simulated)")
    return write


def test_dataset_run_killed_mid_shard_resumes_to_the_same_hash(tiny_dataset: FaceDataset, tmp_path: Path) -> None:
    """SIGKILL while shard 1's images are half written; the same command then completes to the same content."""
    root = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, signal, sys
        import numpy as np
        from envs.worlds.face_scenes import FaceSceneSampler
        from perception.faces.dataset import generate_dataset
        from tests.perception.conftest import TINY_CONFIG

        real = np.savez_compressed
        calls = []
        def dying(fh, **arrays):
            calls.append(1)
            if len(calls) == 2:  # shard 0 is complete; die half-way through writing shard 1
                fh.write(b"PK half a file")
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(fh, **arrays)
        np.savez_compressed = dying
        generate_dataset({str(root)!r}, 24, seed=3, config=TINY_CONFIG, sampler=FaceSceneSampler, progress=False)
    """)
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert (root / "shard_00000.json").is_file() and not (root / "shard_00001.json").exists()
    assert _temporaries(root), "the kill should have left shard 1's temporary file"
    generate_dataset(root, 24, seed=3, config=TINY_CONFIG, sampler=FaceSceneSampler, progress=False)
    again = FaceDataset(root)
    assert again.content_hash == tiny_dataset.content_hash
    assert _temporaries(root) == []
    assert sum(1 for _ in again) == 24


def test_a_shard_write_that_fails_part_way_leaves_the_finished_shards(tiny_dataset: FaceDataset, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "d"
    real = np.savez_compressed
    calls: list[int] = []

    def failing(fh, **arrays):
        calls.append(1)
        if len(calls) == 2:  # shard 1's images
            return _part_write(real)(fh, **arrays)
        return real(fh, **arrays)

    monkeypatch.setattr(np, "savez_compressed", failing)
    with pytest.raises(PartWriteError):
        generate_dataset(root, 24, seed=3, config=TINY_CONFIG, sampler=FaceSceneSampler, progress=False)
    monkeypatch.undo()
    assert not (root / "shard_00001.npz").exists() and _temporaries(root) == []
    with np.load(root / "shard_00000.npz") as data:  # the finished shard is whole
        assert len(data["images"]) == TINY_CONFIG.shard_size
    generate_dataset(root, 24, seed=3, config=TINY_CONFIG, sampler=FaceSceneSampler, progress=False)
    assert FaceDataset(root).content_hash == tiny_dataset.content_hash and _temporaries(root) == []


def test_a_save_that_fails_part_way_leaves_the_previous_model(tiny_detector: FaceDetectorLearner, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tiny_detector.save(tmp_path / "det")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    frame = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    expected = load_model(out).infer(frame)
    changed = copy.deepcopy(tiny_detector)
    with torch.no_grad():
        next(changed.net.parameters()).add_(1.0)
    monkeypatch.setattr(torch, "save", _part_write(torch.save))
    with pytest.raises(PartWriteError):
        changed.save(out, overwrite=True)
    monkeypatch.undo()
    # The manifest fails after the weights were written: still nothing of the new model is in place.
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(PartWriteError("simulated")))
    with pytest.raises(PartWriteError):
        changed.save(out, overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _temporaries(out) == []
    np.testing.assert_array_equal(load_model(out).infer(frame).boxes, expected.boxes)
    monkeypatch.setattr(torch, "save", _part_write(torch.save))
    with pytest.raises(PartWriteError):
        changed.save(tmp_path / "new")
    assert not (tmp_path / "new").exists()  # a failed first save leaves no empty model folder either


def test_an_export_that_fails_part_way_leaves_the_previous_onnx(tiny_detector: FaceDetectorLearner, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    out = tiny_detector.save(tmp_path / "det")
    onnx_file = tiny_detector.export(out)
    good = onnx_file.read_bytes()
    monkeypatch.setattr(onnx, "save", _part_write(onnx.save))
    with pytest.raises(PartWriteError):
        tiny_detector.export(out)  # model.onnx in its own folder: rewritten without overwrite
    monkeypatch.undo()
    assert onnx_file.read_bytes() == good and _temporaries(out) == []
    OnnxRuntime(onnx_file, threads=1, inputs=tiny_detector.input_specs(), outputs=tiny_detector.output_spec())


def test_fit_interrupted_after_an_epoch_resumes_from_its_checkpoint(tiny_dataset: FaceDataset, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-epoch checkpoint holds: the resumed fit ends with the uninterrupted fit's weights and losses."""
    reference = FaceDetectorLearner(width=4, input_size=(64, 80))
    start = copy.deepcopy(reference.net.state_dict())
    budget = {"epochs": 3, "batch_size": 8, "progress": False}
    expected = reference.fit(tiny_dataset, **budget)
    learner = FaceDetectorLearner(width=4, input_size=(64, 80))
    learner.net.load_state_dict(start)
    checkpoint = tmp_path / "fit.pt"
    real = FaceDetectorLearner._optimizer_step
    steps: list[int] = []

    def interrupted(*args, **kwargs):
        steps.append(1)
        if len(steps) == 5:  # in the second epoch (3 steps per epoch)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(FaceDetectorLearner, "_optimizer_step", staticmethod(interrupted))
    with pytest.raises(KeyboardInterrupt):
        learner.fit(tiny_dataset, checkpoint=checkpoint, **budget)
    monkeypatch.undo()
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 1 and state["history"] == expected["loss"][:1]
    resumed = FaceDetectorLearner(width=4, input_size=(64, 80)).fit(tiny_dataset, checkpoint=checkpoint, **budget)
    assert resumed["loss"] == expected["loss"]
    assert not checkpoint.exists()


def test_fit_command_interrupted_resumes_when_run_again(tiny_dataset: FaceDataset, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "det"
    fit = ["perception", "fit", "face_detector", "--data", str(tiny_dataset.root), "--out", str(out), "--epochs", "2",
           "--batch-size", "8", "--config", "width=4", "--config", "input_size=[64, 80]"]
    real = FaceDetectorLearner._optimizer_step
    steps: list[int] = []

    def interrupted(*args, **kwargs):
        steps.append(1)
        if len(steps) == 4:
            raise PartWriteError("the machine went away (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(FaceDetectorLearner, "_optimizer_step", staticmethod(interrupted))
    first = CliRunner().invoke(main, fit)
    monkeypatch.undo()
    assert first.exit_code != 0 and "simulated" in first.output, first.output
    checkpoint = tmp_path / ".det.fit-checkpoint.pt"
    assert checkpoint.is_file() and not out.exists()  # an interrupted fit never looks like a saved model
    epoch_one = torch.load(checkpoint, weights_only=True)["history"]
    second = CliRunner().invoke(main, fit)
    assert second.exit_code == 0, second.output
    assert "epoch 2/2 done" in second.output and "epoch 1/2 done" not in second.output  # resumed at epoch 2
    summary = json.loads(second.stdout[second.stdout.index("{"):])
    assert summary["fit"]["loss"][:1] == epoch_one and not checkpoint.exists()
    assert load_model(out).config["width"] == 4
