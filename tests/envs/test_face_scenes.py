"""Face scenes in the dataset room: boxes lie on the rendered heads, visibility follows the face, galleries."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.sim.base import Pose
from envs.worlds.face_room import FACE_CAM
from envs.worlds.face_scenes import FaceSceneSampler, label_face, render_gallery
from envs.worlds.people import PARK_Z
from perception.faces.dataset import FaceSceneConfig

TINY_CONFIG = FaceSceneConfig(n_identities=8, n_heldout=2, distance=(0.6, 3.0), yaw=(-60.0, 60.0),
                              max_extra_people=1, n_furniture=4, shard_size=10)


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
            sampler.look_at(head + dist * np.array([np.cos(a), np.sin(a), 0.0]), head)
            with_person = sim.render(FACE_CAM).astype(int)
            label = label_face(sim, face)
            sim.set_pose(f"human_{face.name}", Pose(np.array([0.0, 0.0, PARK_Z])))
            without = sim.render(FACE_CAM).astype(int)
            assert label is not None and label["visible"]
            mask = np.abs(with_person - without).sum(-1) > 0
            x0, y0, x1, y1 = (round(v) for v in label["box"])
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
        sampler.look_at(head + np.array([-1.5, 0.0, 0.0]), head)
        label = label_face(sampler.sim, face)
        assert label is not None and not label["visible"] and abs(label["yaw"]) > 170
    finally:
        sampler.close()


def test_gallery_is_frontal(tmp_path: Path) -> None:
    gallery = render_gallery(TINY_CONFIG, tmp_path / "world", [0, 1])
    assert [g[0] for g in gallery] == [0, 1]
    for _, image, label in gallery:
        assert image.shape == (240, 320, 3) and label["visible"] and abs(label["yaw"]) < 1
