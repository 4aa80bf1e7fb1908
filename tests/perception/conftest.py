"""Shared fixtures: a tiny rendered face dataset and tiny trained models (seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from envs.worlds.face_scenes import FaceSceneSampler
from perception.faces.dataset import FaceDataset, FaceSceneConfig, generate_dataset
from perception.faces.detector import FaceDetectorLearner
from perception.faces.recognizer import FaceRecognizerLearner

MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"

#: 8 identities (2 held out), close range so every frame has a usable face
TINY_CONFIG = FaceSceneConfig(n_identities=8, n_heldout=2, distance=(0.6, 3.0), yaw=(-60.0, 60.0),
                              max_extra_people=1, n_furniture=4, shard_size=10)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> FaceDataset:
    root = tmp_path_factory.mktemp("faces") / "tiny"
    generate_dataset(root, 24, seed=3, config=TINY_CONFIG, sampler=FaceSceneSampler, progress=False)
    return FaceDataset(root)


@pytest.fixture(scope="session")
def tiny_detector(tiny_dataset: FaceDataset) -> FaceDetectorLearner:
    det = FaceDetectorLearner(width=4, input_size=(64, 80))
    det.fit(tiny_dataset, epochs=1, batch_size=8, progress=False)
    return det


@pytest.fixture(scope="session")
def tiny_recognizer(tiny_dataset: FaceDataset) -> FaceRecognizerLearner:
    rec = FaceRecognizerLearner(embedding_dim=16, width=8)
    rec.fit(tiny_dataset, epochs=1, batch_size=8, progress=False)
    return rec


def shipped(name: str) -> Path:
    """Path of a shipped model, skipping the test when it is absent."""
    path = MODELS / name
    if not (path / "manifest.json").is_file():
        pytest.skip(f"shipped model {name} not found at {path}")
    return path
