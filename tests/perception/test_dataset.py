"""Dataset generation: determinism, resume, label correctness, bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from envs.sim.base import Pose
from perception.errors import DatasetError
from perception.faces.dataset import FaceDataset, FaceSceneSampler, generate_dataset, label_face, render_gallery
from perception.faces.world import CAMERA

from .conftest import TINY_CONFIG


def test_same_seed_same_frames_and_resume(tiny_dataset: FaceDataset, tmp_path: Path) -> None:
    other = tmp_path / "again"
    generate_dataset(other, 24, seed=3, config=TINY_CONFIG, progress=False)
    (other / "shard_00001.json").unlink()  # simulate an interrupted run
    generate_dataset(other, 24, seed=3, config=TINY_CONFIG, progress=False)
    again = FaceDataset(other)
    assert again.content_hash == tiny_dataset.content_hash
    for (img_a, lab_a), (img_b, lab_b) in zip(tiny_dataset, again):
        assert np.array_equal(img_a, img_b)
        assert lab_a == lab_b


def test_other_settings_in_same_folder_are_refused(tiny_dataset: FaceDataset) -> None:
    with pytest.raises(DatasetError, match="seed"):
        generate_dataset(tiny_dataset.root, 24, seed=4, config=TINY_CONFIG, progress=False)


def test_incomplete_dataset_is_reported(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "d", 12, seed=0, config=TINY_CONFIG, progress=False)
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


def test_projected_box_contains_the_rendered_face(tmp_path: Path) -> None:
    """The face box covers pixels that change when the person is removed (i.e. the rendered head)."""
    sampler = FaceSceneSampler(TINY_CONFIG, tmp_path / "world")
    sim = sampler.sim
    try:
        for k, (yaw, dist) in enumerate([(0.0, 1.0), (40.0, 1.5), (-30.0, 2.5)]):
            face = sampler.identities[k]
            sim.reset()
            sim.set_pose(f"human_{face.name}", Pose.planar(0.0, 0.0, 0.0))
            head = sim.get_pose(f"head_{face.name}").position
            a = np.deg2rad(yaw)
            sim.look_at(head + dist * np.array([np.cos(a), np.sin(a), 0.0]), head)
            with_person = sim.render(CAMERA).astype(int)
            label = label_face(sim, face)
            sim.park(f"human_{face.name}")
            without = sim.render(CAMERA).astype(int)
            assert label is not None and label.visible
            mask = np.abs(with_person - without).sum(-1) > 0
            x0, y0, x1, y1 = (round(v) for v in label.box)
            assert mask[y0:y1, x0:x1].mean() > 0.9, "the face box must lie on the rendered head"
            _, xs = np.nonzero(mask[: int(y1)])  # head pixels at or above the chin line
            assert x0 <= np.median(xs) <= x1
    finally:
        sampler.close()


def test_back_of_head_is_not_visible(tmp_path: Path) -> None:
    sampler = FaceSceneSampler(TINY_CONFIG, tmp_path / "world")
    try:
        face = sampler.identities[0]
        sampler.sim.set_pose(f"human_{face.name}", Pose.planar(0.0, 0.0, 0.0))
        head = sampler.sim.get_pose(f"head_{face.name}").position
        sampler.sim.look_at(head + np.array([-1.5, 0.0, 0.0]), head)
        label = label_face(sampler.sim, face)
        assert label is not None and not label.visible and abs(label.yaw) > 170
    finally:
        sampler.close()


def test_gallery_is_frontal(tmp_path: Path) -> None:
    gallery = render_gallery(TINY_CONFIG, tmp_path / "world", [0, 1])
    assert [g[0] for g in gallery] == [0, 1]
    for _, image, label in gallery:
        assert image.shape == (240, 320, 3) and label.visible and abs(label.yaw) < 1
