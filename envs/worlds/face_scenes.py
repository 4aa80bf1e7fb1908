"""Labelled face scenes rendered in the face room: the frames the perception datasets are made of.

:class:`FaceSceneSampler` builds the dataset room (:func:`envs.worlds.face_room.build_face_room`) and draws
scenes in it: frame ``i`` of a dataset with seed ``s`` comes from ``SeedSequence([s, i])`` alone, so any frame
can be rendered without the ones before it. Each frame places one *subject* (plus up to
``max_extra_people`` others) and furniture in the room, puts the camera at a distance (log-uniform) and
relative yaw around the subject, at a random height and aim jitter, and varies the lighting.

Labels are plain dictionaries (the dataset format lives in :mod:`perception.faces.dataset`, which reads
them back): per frame ``index``, ``subject``, ``lighting`` and ``faces``; per face ``identity`` (index),
``box`` (x0, y0, x1, y1 in pixels), ``visible`` and ``ignore`` (see :func:`label_face`), ``distance`` (m,
camera to head centre), ``yaw`` (degrees, 0 = camera in front of the face) and ``facing`` (fraction of the
face region turned towards the camera).

The sampler takes the dataset's scene settings duck-typed (any object with the attributes of
:class:`perception.faces.dataset.FaceSceneConfig`), so this module needs nothing from ``perception``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from envs.sim.base import Pose
from envs.sim.mujoco import MujocoBackend
from envs.worlds.face_room import FACE_CAM, VIEWER, build_face_room
from envs.worlds.identities import (
    FaceIdentity,
    ellipsoid_normals,
    face_centre,
    face_points,
    generate_identities,
    identities_at,
)
from envs.worlds.people import HIDE_BELOW

__all__ = ["FaceSceneSampler", "IdentityViewSampler", "label_face", "render_gallery"]


def _line_of_sight(sim: MujocoBackend, start: np.ndarray, end: np.ndarray, body: str) -> bool:
    """Whether the first thing a ray from ``start`` towards ``end`` hits is ``body`` (or nothing before it)."""
    fraction, hit = sim.ray_cast(start, end)
    return hit is None or hit == body or fraction >= 0.98


def label_face(sim: MujocoBackend, face: FaceIdentity, camera: str = FACE_CAM) -> dict[str, Any] | None:
    """Face box and visibility of ``face`` as seen by ``camera``; ``None`` when it is behind the camera.

    Visibility rule: at least half of the face region faces the camera, at least 60 % of the box lies in the
    image, at least 3 of 5 face landmarks have an unobstructed line of sight, and the box is >= 2 px tall.
    Faces that fail the rule but still show some of the face in the image are marked ``ignore``.
    """
    head_body = f"head_{face.name}"
    head, rot = sim.get_frame(head_body)
    cam_pos, _ = sim.camera_frame(camera)
    local_pts = face_points(face.head_radii)
    pts = head + local_pts @ rot.T
    normals = ellipsoid_normals(local_pts, face.head_radii) @ rot.T
    facing = np.einsum("ij,ij->i", normals, cam_pos - pts) > 0
    uv, depth = sim.project(pts, camera)
    if np.all(depth <= 0.05):
        return None
    to_cam = cam_pos - head
    distance = float(np.linalg.norm(to_cam))
    fwd = rot[:, 0]
    yaw = math.degrees(math.atan2(float(np.cross(fwd, to_cam)[2]), float(fwd[:2] @ to_cam[:2])))
    height, width = sim.camera_shape(camera)
    sel = facing & (depth > 0.05)
    if not sel.any():
        return _label(face.index, (0.0, 0.0, 0.0, 0.0), False, False, distance, yaw, 0.0)
    x0, y0 = uv[sel].min(0)
    x1, y1 = uv[sel].max(0)
    area = max((x1 - x0) * (y1 - y0), 1e-6)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    inside = max(cx1 - cx0, 0) * max(cy1 - cy0, 0) / area
    frac = float(facing.mean())
    centre = face_centre(face.head_radii)
    marks = np.array([centre, centre, centre, centre, centre], float)  # nose, eyes, mouth, brow
    marks[1:3, 1] = [-0.5 * face.head_radii[1], 0.5 * face.head_radii[1]]
    marks[1:3, 0] *= 0.85
    marks[1:3, 2] += 0.03
    marks[3, 2] -= 0.04
    marks[4, 2] += 0.05
    world_marks = head + marks @ rot.T
    seen = sum(_line_of_sight(sim, cam_pos, p, head_body) for p in world_marks)
    box = (float(cx0), float(cy0), float(cx1), float(cy1))
    visible = frac >= 0.5 and inside >= 0.6 and seen >= 3 and (cy1 - cy0) >= 2.0 and depth[sel].min() > 0.05
    ignore = (not visible) and frac > 0.25 and inside > 0 and (cy1 - cy0) >= 1.0
    return _label(face.index, box, bool(visible), bool(ignore), distance, yaw, frac)


def _label(identity: int, box: tuple[float, float, float, float], visible: bool, ignore: bool, distance: float,
           yaw: float, facing: float) -> dict[str, Any]:
    return {"identity": identity, "box": box, "visible": visible, "ignore": ignore, "distance": distance,
            "yaw": yaw, "facing": facing}


class FaceSceneSampler:
    """Draws, renders and labels face scenes in the dataset room.

    Args:
        config: scene settings (the attributes of :class:`perception.faces.dataset.FaceSceneConfig`).
        world_dir: where the world (MJCF + textures) is written.
        subjects: identity indices a frame's subject is drawn from (default: all).
    """

    def __init__(self, config: Any, world_dir: str | Path, subjects: list[int] | None = None) -> None:
        self.config = config
        self.identities = generate_identities(config.n_identities, config.identity_seed)
        path = build_face_room(self.identities, world_dir, n_furniture=config.n_furniture,
                               room_size=config.room_size, camera_size=config.image_size, fovy=config.fovy,
                               seed=config.identity_seed)
        self.sim = MujocoBackend(path, hide_below=HIDE_BELOW)
        self.subjects = list(range(config.n_identities)) if subjects is None else list(subjects)

    @staticmethod
    def identity_table(config: Any) -> list[dict[str, Any]]:
        """Every identity's parameters, for the dataset's manifest (no world is built)."""
        return [f.to_dict() for f in generate_identities(config.n_identities, config.identity_seed)]

    def close(self) -> None:
        self.sim.close()

    def __enter__(self) -> FaceSceneSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def look_at(self, eye: np.ndarray, target: np.ndarray) -> None:
        """Put the camera at ``eye`` looking at ``target``."""
        self.sim.set_pose(VIEWER, Pose.look_at(eye, target))

    def _place_subject(self, rng: np.random.Generator, face: FaceIdentity, distance: float,
                       rel_yaw: float, cam_z: float) -> tuple[np.ndarray, float, np.ndarray]:
        half = self.config.room_size / 2 - 0.6
        head_z = face.height - face.head_radii[2]
        horiz = math.sqrt(max(distance**2 - (cam_z - head_z) ** 2, 0.05**2))
        for _ in range(200):  # rejection-sample a subject spot and heading that keep the camera in the room
            pos = rng.uniform(-half, half, 2)
            heading = rng.uniform(-math.pi, math.pi)
            cam = pos + horiz * np.array([math.cos(heading + rel_yaw), math.sin(heading + rel_yaw)])
            if np.all(np.abs(cam) <= half):
                return pos, heading, cam
        # Very long distances: put subject and camera on opposite corners of the diagonal.
        direction = rng.choice([-1.0, 1.0], 2) / math.sqrt(2)
        cam = -direction * min(horiz / 2, half * math.sqrt(2)) * 1.0
        pos = direction * min(horiz / 2, half * math.sqrt(2))
        heading = math.atan2(*(cam - pos)[::-1]) - rel_yaw
        return pos, heading, cam

    def render(self, index: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Frame ``index`` of a dataset with ``seed``: ``(RGB image, label)``."""
        cfg, sim = self.config, self.sim
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        sim.reset()
        subject = self.identities[self.subjects[rng.integers(len(self.subjects))]]
        lo, hi = cfg.distance
        distance = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        rel_yaw = math.radians(rng.uniform(*cfg.yaw))
        cam_z = float(rng.uniform(*cfg.camera_height))
        pos, heading, cam_xy = self._place_subject(rng, subject, distance, rel_yaw, cam_z)
        sim.set_pose(f"human_{subject.name}", Pose.planar(pos[0], pos[1], heading))
        placed = [subject]
        others = [f for f in self.identities if f.index != subject.index]
        for k in rng.choice(len(others), rng.integers(0, cfg.max_extra_people + 1), replace=False):
            spot = pos + rng.uniform(-4, 4, 2)
            if np.linalg.norm(spot - pos) > 0.7 and np.linalg.norm(spot - cam_xy) > 0.7:
                sim.set_pose(f"human_{others[k].name}", Pose.planar(*np.clip(spot, -11, 11), rng.uniform(-3.2, 3.2)))
                placed.append(others[k])
        for k in range(cfg.n_furniture):
            spot = rng.uniform(-cfg.room_size / 2 + 1, cfg.room_size / 2 - 1, 2)
            # Furniture may occlude the subject but never sits on a person or on the camera.
            if min(np.linalg.norm(spot - pos), np.linalg.norm(spot - cam_xy)) > 1.2:
                sim.set_pose(f"furniture_{k}", Pose.planar(spot[0], spot[1], rng.uniform(-3.2, 3.2)))
        head = sim.get_pose(f"head_{subject.name}").position
        eye = np.array([cam_xy[0], cam_xy[1], cam_z])
        lighting = self._aim_and_light(rng, eye, head)
        image = sim.render(FACE_CAM)
        faces = [label for label in (label_face(sim, face) for face in placed) if label is not None]
        return image, {"index": index, "subject": subject.index, "faces": faces, "lighting": lighting}

    def _aim_and_light(self, rng: np.random.Generator, eye: np.ndarray, head: np.ndarray) -> float:
        """Aim the camera at ``eye`` near ``head``, off centre by up to ``aim_jitter`` of the half field of view,
        and draw the lighting; returns the light level."""
        cfg = self.config
        half_fov = math.radians(cfg.fovy) / 2
        offset = rng.uniform(-cfg.aim_jitter, cfg.aim_jitter, 2) * half_fov
        look = head - eye
        yaw = math.atan2(look[1], look[0]) + offset[0] * cfg.image_size[1] / cfg.image_size[0]
        pitch = math.atan2(look[2], np.linalg.norm(look[:2])) + offset[1]
        self.look_at(eye, eye + np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                                           math.sin(pitch)]))
        lighting = float(rng.uniform(0.55, 1.35))
        self.sim.set_lighting(lighting, float(rng.uniform(0.25, 0.6)))
        return lighting

    def gallery(self, identities: list[int] | None = None, distance: float = 1.0
                ) -> list[tuple[int, np.ndarray, dict[str, Any]]]:
        """One frontal reference frame per identity at ``distance`` metres, camera at head height, no clutter
        (what a recogniser enrols from): ``(identity, image, face label)`` triples."""
        sim, out = self.sim, []
        for idx in identities if identities is not None else range(self.config.n_identities):
            image, label = _frontal_view(sim, self.look_at, self.identities[idx], distance)
            out.append((idx, image, label))
        return out


class IdentityViewSampler(FaceSceneSampler):
    """Renders single-person views of any identities (thousands, a chunk per world): the face-bank renderer.

    Only the given identities are built into the room (no furniture, no other people), so a world of a few dozen
    textured people stands in for any slice of the identity space.

    Args:
        config: view settings (the attributes of :class:`perception.faces.bank.FaceBankConfig`: ``distance``,
            ``yaw``, ``camera_height``, ``aim_jitter``, ``room_size``, ``image_size``, ``fovy``).
        world_dir: where the world is written (textures are reused across chunks).
        identities: indices of the people in this world, drawn with ``config.identity_seed``
            (:func:`~envs.worlds.identities.identities_at`).
    """

    def __init__(self, config: Any, world_dir: str | Path, identities: list[int]) -> None:
        self.config = config
        self.identities = identities_at(identities, config.identity_seed)
        path = build_face_room(self.identities, world_dir, n_furniture=0, room_size=config.room_size,
                               camera_size=tuple(config.image_size), fovy=config.fovy, seed=0)
        self.sim = MujocoBackend(path, hide_below=HIDE_BELOW)
        self.subjects = list(range(len(self.identities)))

    def view(self, position: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """A random view of the identity at ``position`` of this world: ``(RGB image, face label)``; the label
        also holds ``pitch`` (degrees the camera is above the head centre, seen from it) and ``lighting``."""
        cfg, sim = self.config, self.sim
        face = self.identities[position]
        sim.reset()
        lo, hi = cfg.distance
        distance = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        rel_yaw = math.radians(rng.uniform(*cfg.yaw))
        cam_z = float(rng.uniform(*cfg.camera_height))
        pos, heading, cam_xy = self._place_subject(rng, face, distance, rel_yaw, cam_z)
        sim.set_pose(f"human_{face.name}", Pose.planar(pos[0], pos[1], heading))
        head = sim.get_pose(f"head_{face.name}").position
        eye = np.array([cam_xy[0], cam_xy[1], cam_z])
        lighting = self._aim_and_light(rng, eye, head)
        image = sim.render(FACE_CAM)
        label = label_face(sim, face) or _label(face.index, (0.0, 0.0, 0.0, 0.0), False, False, distance, 0.0, 0.0)
        pitch = math.degrees(math.atan2(eye[2] - head[2], float(np.linalg.norm(eye[:2] - head[:2]))))
        return image, {**label, "pitch": pitch, "lighting": lighting}

    def frontal(self, position: int, distance: float = 1.0) -> tuple[np.ndarray, dict[str, Any]]:
        """The enrolment view of the identity at ``position``: frontal, ``distance`` m, camera at head height, the
        default lighting (as :meth:`FaceSceneSampler.gallery`)."""
        return _frontal_view(self.sim, self.look_at, self.identities[position], distance)


def render_gallery(config: Any, world_dir: str | Path, identities: list[int] | None = None, distance: float = 1.0
                   ) -> list[tuple[int, np.ndarray, dict[str, Any]]]:
    """:meth:`FaceSceneSampler.gallery` in a freshly built room, closed afterwards."""
    with FaceSceneSampler(config, world_dir) as sampler:
        return sampler.gallery(identities, distance)


def _frontal_view(sim: Any, look_at: Any, face: Any, distance: float) -> tuple[np.ndarray, dict[str, Any]]:
    """A frontal view of ``face`` alone at the origin, ``distance`` m away, camera at head height: what both the
    frame gallery and the face bank enrol from, so the two enrol identically."""
    sim.reset()
    sim.set_pose(f"human_{face.name}", Pose.planar(0.0, 0.0, 0.0))
    head = sim.get_pose(f"head_{face.name}").position
    look_at(head + np.array([distance, 0.0, 0.0]), head)
    image = sim.render(FACE_CAM)
    label = label_face(sim, face)
    assert label is not None and label["visible"], "a frontal gallery view must show the face"
    return image, label
