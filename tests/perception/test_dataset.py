"""Dataset generation: determinism, resume, label correctness, bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from envs.worlds.face_scenes import FaceSceneSampler
from perception.errors import DatasetError
from perception.faces.dataset import FaceDataset, generate_dataset

from .conftest import TINY_CONFIG


def generate(root: Path, n: int, seed: int = 3) -> Path:
    return generate_dataset(root, n, seed=seed, config=TINY_CONFIG, sampler=FaceSceneSampler, progress=False)


def test_same_seed_same_frames_and_resume(tiny_dataset: FaceDataset, tmp_path: Path) -> None:
    other = tmp_path / "again"
    generate(other, 24)
    (other / "shard_00001.json").unlink()  # simulate an interrupted run
    generate(other, 24)
    again = FaceDataset(other)
    assert again.content_hash == tiny_dataset.content_hash
    for (img_a, lab_a), (img_b, lab_b) in zip(tiny_dataset, again):
        assert np.array_equal(img_a, img_b)
        assert lab_a == lab_b


def test_other_settings_in_same_folder_are_refused(tiny_dataset: FaceDataset) -> None:
    with pytest.raises(DatasetError, match="seed"):
        generate(tiny_dataset.root, 24, seed=4)


def test_incomplete_dataset_is_reported(tmp_path: Path) -> None:
    generate(tmp_path / "d", 12, seed=0)
    (tmp_path / "d" / "shard_00001.json").unlink()
    with pytest.raises(DatasetError, match="incomplete"):
        FaceDataset(tmp_path / "d")
    with pytest.raises(DatasetError, match=r"missing dataset\.json"):
        FaceDataset(tmp_path / "nothing")


def test_labels_have_visible_faces_with_sane_boxes(tiny_dataset: FaceDataset) -> None:
    n_visible = 0
    for img, label in tiny_dataset:
        h, w = img.shape[:2]
        for face in label.faces:
            x0, y0, x1, y1 = face.box
            if face.visible:
                n_visible += 1
                assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
                assert abs(face.yaw) <= 100
    assert n_visible >= 12
    meta = json.loads((tiny_dataset.root / "dataset.json").read_text())
    assert meta["heldout_identities"] == [6, 7]


def test_gallery_is_stored_with_the_dataset(tiny_dataset: FaceDataset) -> None:
    gallery = tiny_dataset.gallery([0, 7])
    assert [idx for idx, _, _ in gallery] == [0, 7]
    for _, image, label in gallery:
        assert image.shape == (240, 320, 3) and label.visible and abs(label.yaw) < 1
    assert tiny_dataset.identity_names[7] == "id_007"
    with pytest.raises(DatasetError, match="not in the gallery"):
        tiny_dataset.gallery([99])


def test_a_dataset_without_gallery_gets_one_when_its_command_is_rerun(tmp_path: Path) -> None:
    root = tmp_path / "d"
    generate(root, 10)
    (root / "gallery.json").unlink()  # as made by a version that stored no gallery
    with pytest.raises(DatasetError, match="re-run"):
        FaceDataset(root).gallery()
    generate(root, 10)
    assert len(FaceDataset(root).gallery()) == TINY_CONFIG.n_identities
