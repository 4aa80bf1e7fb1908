"""The fusion encoder (``perception/fusion``): objectives, fitting, detection, compensation, export, dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import UnknownNameError
from perception.errors import DatasetError, InvalidArgumentError
from perception.export import check_export_parity
from perception.fusion import FusionDataset, FusionEncoderLearner, contact_labels, corrupt, write_dataset
from perception.learner import load_model
from perception.runtime import TOLERANCES, OnnxRuntime

SIZE = 16


def synthetic(n: int = 240, seed: int = 0) -> dict[str, np.ndarray]:
    """Samples whose four modalities all show one hidden 2-D position (so each predicts the others)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-1, 1, (n, 2))
    rgb = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    depth = np.full((n, SIZE, SIZE, 1), 0.9, np.float32)
    for i, (x, y) in enumerate(pos):
        r, c = int((y + 1) * 5.5), int((x + 1) * 5.5)
        rgb[i, r:r + 5, c:c + 5] = (250, 120, 20)
        depth[i, r:r + 5, c:c + 5] = 0.7
    wrench = np.zeros((n, 8, 6), np.float32)
    wrench[:, :, 0] = 3 * pos[:, :1]
    wrench[:, :, 2] = -0.981 + 4 * np.maximum(pos[:, 1:], 0)  # "contact" in the upper half
    proprio = np.concatenate([pos, pos ** 2, np.zeros((n, 1))], 1).astype(np.float32)
    action = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    next_proprio = proprio.copy()
    next_proprio[:, :3] += 0.01 * action
    return {"rgb": rgb, "depth": depth, "wrench": wrench, "proprio": proprio, "action": action,
            "next_proprio": next_proprio, "episode": (np.arange(n) // 20).astype(np.int32),
            "step": (np.arange(n) % 20).astype(np.int32)}


def tiny(**kwargs: object) -> FusionEncoderLearner:
    return FusionEncoderLearner(image_size=SIZE, window=8, proprio=5, action=3, latent=32, **kwargs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> FusionDataset:
    return write_dataset(tmp_path_factory.mktemp("fusion") / "data", synthetic(), {"collected_by": "test"})


@pytest.fixture(scope="module")
def fitted(dataset: FusionDataset) -> tuple[FusionEncoderLearner, dict]:
    torch.set_num_threads(1)
    learner = tiny()
    summary = learner.fit(dataset, epochs=25, batch_size=32, lr=2e-3, progress=False)
    return learner, summary


def _compensation_loss(learner: FusionEncoderLearner) -> float:
    with_it = FusionEncoderLearner(**{**learner.config, "objectives": ["compensation"]})
    with_it.net.load_state_dict(learner.net.state_dict())
    batch = {k: v[:120] for k, v in synthetic(120, seed=4).items()}
    with torch.no_grad():
        return with_it.losses(batch, np.random.default_rng(0))["compensation"].item()


def test_contact_labels_come_from_force_beyond_the_pegs_weight() -> None:
    window = np.zeros((3, 4, 6))
    window[:, :, 2] = -0.981  # at rest: the weight only
    window[1, 2, 0] = 2.5  # a lateral push
    window[2, :, 2] = -2.0  # 1 N more than the weight: below the threshold
    np.testing.assert_array_equal(contact_labels(window), [0.0, 1.0, 0.0])


def test_each_loss_on_hand_built_batches() -> None:
    learner = tiny()
    batch = {k: v[:8] for k, v in synthetic(8).items()}
    losses = learner.losses(batch)
    assert set(losses) == {"contact", "next_pose", "alignment", "reconstruction", "compensation"}
    assert all(torch.isfinite(v) and v >= 0 for v in losses.values())
    # Cross-entropies of an untrained head are near log 2; alignment sees as many negatives as positives.
    assert losses["alignment"].item() == pytest.approx(np.log(2), abs=0.1)
    # Compensation is zero when nothing is dropped: one modality only means no other to drop to.
    single = FusionEncoderLearner(modalities=["proprio"], proprio=5, action=3, latent=16,
                                  objectives=["compensation", "next_pose"])
    assert "compensation" not in single.losses(batch)
    # next_pose: a perfect prediction of the scaled pose change gives zero loss.
    only = tiny(objectives=["next_pose"])
    with torch.no_grad():
        for p in only.net.next_pose.parameters():
            p.zero_()
    still = dict(batch, next_proprio=batch["proprio"])
    assert only.losses(still)["next_pose"].item() == pytest.approx(0.0, abs=1e-12)


def test_fit_reduces_every_loss(fitted: tuple[FusionEncoderLearner, dict], dataset: FusionDataset) -> None:
    learner, summary = fitted
    first, last = summary["history"][0], summary["history"][-1]
    for name in ("contact", "next_pose", "alignment", "reconstruction"):
        assert last[name] < first[name], name
    # An untrained latent carries little, so dropping a modality changes it little at first: the compensation
    # loss is judged against the same fit without that objective.
    without = tiny(objectives=["contact", "next_pose", "alignment", "reconstruction"])
    without.fit(dataset, epochs=25, batch_size=32, lr=2e-3, progress=False)
    assert _compensation_loss(learner) < 0.5 * _compensation_loss(without)


def test_reconstruction_errors_flag_a_synthetic_corruption(fitted: tuple[FusionEncoderLearner, dict]) -> None:
    learner, _ = fitted
    batch = {k: v[:100] for k, v in synthetic(100, seed=9).items()}
    clean = learner.detect(learner.errors(batch)[1])
    assert clean.mean() < 0.1
    for i, modality in enumerate(learner.modalities):
        corrupted = corrupt(batch, modality, "noise", np.random.default_rng(i))
        flags = learner.detect(learner.errors(corrupted)[1])
        assert flags[:, i].mean() > 0.6, modality
        # The corrupted modality is the one flagged most (a noisy input also disturbs the others' reconstructions).
        assert flags[:, i].mean() >= flags.mean(0).max(), modality


def test_compensation_masks_missing_and_flagged_modalities(fitted: tuple[FusionEncoderLearner, dict]) -> None:
    learner, _ = fitted
    batch = {k: v[:50] for k, v in synthetic(50, seed=3).items()}
    full = learner.encode(batch)["latent"]
    missing = corrupt(batch, "depth", "zeros", np.random.default_rng(0))
    out = learner.encode(missing)
    assert out["missing"][:, 1].all() and out["missing"].sum() == 50
    uncompensated = learner.encode(missing, compensate=False)["latent"]
    # The compensated latent stays closer to the full one than feeding the zeros as if they were an image.
    assert np.linalg.norm(out["latent"] - full) < np.linalg.norm(uncompensated - full)


def test_onnx_export_matches_torch_on_real_inputs(fitted: tuple[FusionEncoderLearner, dict], tmp_path: Path) -> None:
    learner, _ = fitted
    path = learner.export(tmp_path / "fusion.onnx")
    batch = synthetic(12, seed=5)
    feeds = {m: batch[m].astype(np.float32) for m in learner.modalities}
    feeds["mask"] = np.ones((12, 4), np.float32)
    feeds["mask"][3, 1] = 0.0
    ort = OnnxRuntime(path, threads=1, inputs=learner.input_specs())
    ref, got = learner.run_network(feeds), ort.run(feeds)
    for name in ("latent", "errors"):
        assert np.abs(ref[name] - got[name]).max() <= TOLERANCES["onnxruntime"]
    assert check_export_parity(learner, path, samples=8)["parity"] is True


def test_save_load_keeps_weights_and_calibration(fitted: tuple[FusionEncoderLearner, dict], tmp_path: Path) -> None:
    learner, _ = fitted
    out = learner.save(tmp_path / "model")
    loaded = load_model(out)
    assert isinstance(loaded, FusionEncoderLearner) and loaded.detection == learner.detection
    sample = {m: v[0] for m, v in synthetic(1).items() if m in learner.modalities}
    np.testing.assert_allclose(loaded.infer(sample)["latent"], learner.infer(sample)["latent"], atol=1e-6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["name"] for i in manifest["inputs"]] == ["rgb", "depth", "wrench", "proprio", "mask"]


@pytest.mark.parametrize("fusion", ["sum", "product"])
def test_other_fusions_build_and_run(fusion: str) -> None:
    learner = tiny(fusion=fusion)
    out = learner.encode({k: v[:4] for k, v in synthetic(4).items()}, detect=False)
    assert out["latent"].shape == (4, 32) and np.isfinite(out["latent"]).all()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"modalities": ["rgb", "sonar"]}, UnknownNameError, "modality 'sonar'"),
    ({"fusion": "attention"}, UnknownNameError, "fusion 'attention'"),
    ({"objectives": ["flow"]}, UnknownNameError, "objective 'flow'"),
    ({"objectives": []}, InvalidArgumentError, "at least one objective"),
    ({"latent": 0}, InvalidArgumentError, "latent=0"),
])
def test_bad_settings_are_named(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        FusionEncoderLearner(**kwargs)


def test_detection_needs_a_calibration() -> None:
    with pytest.raises(InvalidArgumentError, match="no detection calibration"):
        tiny().detect(np.zeros((1, 4)))


def test_a_changed_dataset_file_is_refused(dataset: FusionDataset, tmp_path: Path) -> None:
    copy = write_dataset(tmp_path / "copy", dataset.arrays, {"collected_by": "test"})
    assert FusionDataset.load(copy.path).content_hash == dataset.content_hash
    with open(copy.path / "samples.npz", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(DatasetError, match="does not match the hash"):
        FusionDataset.load(copy.path)
    with pytest.raises(DatasetError, match="not a fusion dataset"):
        FusionDataset.load(tmp_path)
