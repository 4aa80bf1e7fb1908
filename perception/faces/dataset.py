"""Face datasets rendered in the simulator, with automatic face boxes, identities and a visibility rule.

A dataset is a folder::

    dataset.json          settings, identity parameters, split (held-out identities), version
    shard_00000.npz       images  uint8 (N, H, W, 3) RGB
    shard_00000.json      per-frame labels and the shard's content hash (written last: marks it complete)
    world/                generated MJCF world and identity textures

Generation is deterministic (frame ``i`` is drawn from ``SeedSequence([seed, i])``, so a shard does not depend
on which shards were made before it), sharded and resumable: an interrupted run continues at the first shard
without its ``.json``. Each frame places one *subject* (plus up to ``max_extra_people`` others) and furniture
in the room, puts the camera at a distance (log-uniform) and relative yaw around the subject, at a random
height and aim jitter, and varies the lighting.

Labels per face: ``identity`` (index), ``box`` (x0, y0, x1, y1 in pixels), ``visible`` (see
:func:`label_face`), ``ignore`` (partly visible: neither a positive nor a negative for detectors),
``distance`` (m, camera to head centre) and ``yaw`` (degrees, 0 = camera in front of the face).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from envs.sim.base import Pose
from perception.errors import DatasetError, InvalidArgumentError
from perception.faces.identity import (
    FaceIdentity,
    ellipsoid_normals,
    face_centre,
    face_points,
    generate_identities,
)
from perception.faces.world import CAMERA, FaceRoomBackend, build_face_room

DATASET_VERSION = 1


@dataclass(frozen=True)
class FaceSceneConfig:
    """How face scenes are drawn. Distances in metres, angles in degrees."""

    n_identities: int = 60  #: identities in the world (generated from ``identity_seed``)
    n_heldout: int = 10  #: the last ``n_heldout`` identities are never used for training (open-set tests)
    identity_seed: int = 0
    distance: tuple[float, float] = (0.5, 20.0)  #: camera to subject head, sampled log-uniformly
    yaw: tuple[float, float] = (-180.0, 180.0)  #: camera azimuth around the subject, 0 = frontal
    camera_height: tuple[float, float] = (0.5, 2.5)
    aim_jitter: float = 0.6  #: max aim offset as a fraction of the half field of view
    max_extra_people: int = 2
    n_furniture: int = 10
    room_size: float = 24.0
    image_size: tuple[int, int] = (240, 320)  #: (height, width)
    fovy: float = 50.0
    shard_size: int = 250

    def __post_init__(self) -> None:
        if not 1 <= self.n_heldout < self.n_identities:
            raise InvalidArgumentError(
                f"n_heldout must be in [1, n_identities), got {self.n_heldout} of {self.n_identities}")
        lo, hi = self.distance
        if not 0.3 <= lo <= hi <= self.room_size:
            raise InvalidArgumentError(
                f"distance range must satisfy 0.3 <= min <= max <= room size, got {self.distance}")
        if self.shard_size < 1:
            raise InvalidArgumentError(f"shard_size must be >= 1, got {self.shard_size}")

    @classmethod
    def from_dict(cls, data: dict) -> FaceSceneConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise DatasetError(f"unknown dataset settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @property
    def train_identities(self) -> list[int]:
        return list(range(self.n_identities - self.n_heldout))

    @property
    def heldout_identities(self) -> list[int]:
        return list(range(self.n_identities - self.n_heldout, self.n_identities))


@dataclass
class FaceLabel:
    """One person's face in one frame."""

    identity: int
    box: tuple[float, float, float, float]
    visible: bool
    ignore: bool
    distance: float
    yaw: float
    facing: float = 0.0  #: fraction of the face region turned towards the camera


@dataclass
class FrameLabel:
    """Everything known about one rendered frame."""

    index: int
    subject: int
    faces: list[FaceLabel] = field(default_factory=list)
    lighting: float = 1.0

    @classmethod
    def from_dict(cls, data: dict) -> FrameLabel:
        return cls(index=data["index"], subject=data["subject"], lighting=data.get("lighting", 1.0),
                   faces=[FaceLabel(**{**f, "box": tuple(f["box"])}) for f in data["faces"]])


def label_face(sim: FaceRoomBackend, face: FaceIdentity) -> FaceLabel | None:
    """Face box and visibility of ``face`` as seen by ``face_cam``; ``None`` when behind the camera.

    Visibility rule: at least half of the face region faces the camera, at least 60 % of the box lies in the
    image, at least 3 of 5 face landmarks have an unobstructed line of sight, and the box is >= 2 px tall.
    Faces that fail the rule but still show some of the face in the image are marked ``ignore``.
    """
    head = sim.get_pose(f"head_{face.name}")
    rot = sim.data.xmat[sim.model.body(f"head_{face.name}").id].reshape(3, 3)
    cam_pos, _ = sim.camera_frame(CAMERA)
    local_pts = face_points(face.head_radii)
    pts = head.position + local_pts @ rot.T
    normals = ellipsoid_normals(local_pts, face.head_radii) @ rot.T
    facing = np.einsum("ij,ij->i", normals, cam_pos - pts) > 0
    uv, depth = sim.project(pts)
    if np.all(depth <= 0.05):
        return None
    to_cam = cam_pos - head.position
    distance = float(np.linalg.norm(to_cam))
    fwd = rot[:, 0]
    yaw = math.degrees(math.atan2(float(np.cross(fwd, to_cam)[2]), float(fwd[:2] @ to_cam[:2])))
    height, width = sim.camera_shape(CAMERA)
    sel = facing & (depth > 0.05)
    if not sel.any():
        return FaceLabel(face.index, (0.0, 0.0, 0.0, 0.0), False, False, distance, yaw, 0.0)
    x0, y0 = uv[sel].min(0)
    x1, y1 = uv[sel].max(0)
    area = max((x1 - x0) * (y1 - y0), 1e-6)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    inside = max(cx1 - cx0, 0) * max(cy1 - cy0, 0) / area
    frac = float(facing.mean())
    centre = face_centre(face.head_radii)
    marks = np.array([centre, centre, centre, centre, centre], float)
    marks[1:3, 1] = [-0.5 * face.head_radii[1], 0.5 * face.head_radii[1]]
    marks[1:3, 0] *= 0.85
    marks[1:3, 2] += 0.03
    marks[3, 2] -= 0.04
    marks[4, 2] += 0.05
    world_marks = head.position + marks @ rot.T
    seen = sum(sim.line_of_sight(cam_pos, p, f"head_{face.name}") for p in world_marks)
    box = (float(cx0), float(cy0), float(cx1), float(cy1))
    visible = frac >= 0.5 and inside >= 0.6 and seen >= 3 and (cy1 - cy0) >= 2.0 and depth[sel].min() > 0.05
    ignore = (not visible) and frac > 0.25 and inside > 0 and (cy1 - cy0) >= 1.0
    return FaceLabel(face.index, box, bool(visible), bool(ignore), distance, yaw, frac)


class FaceSceneSampler:
    """Draws and renders face scenes in a :class:`FaceRoomBackend`.

    Args:
        config: scene settings.
        world_dir: where the world (MJCF + textures) is written.
        subjects: identity indices a frame's subject is drawn from (default: all).
    """

    def __init__(self, config: FaceSceneConfig, world_dir: str | Path, subjects: list[int] | None = None) -> None:
        self.config = config
        self.identities = generate_identities(config.n_identities, config.identity_seed)
        path = build_face_room(self.identities, world_dir, n_furniture=config.n_furniture,
                               room_size=config.room_size, camera_size=config.image_size, fovy=config.fovy,
                               seed=config.identity_seed)
        self.sim = FaceRoomBackend(path)
        self.subjects = list(range(config.n_identities)) if subjects is None else list(subjects)

    def close(self) -> None:
        self.sim.close()

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

    def render(self, index: int, seed: int) -> tuple[np.ndarray, FrameLabel]:
        """Render frame ``index`` of the dataset with ``seed``: ``(image, labels)``."""
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
        # Aim near the head, off centre by up to aim_jitter of the half field of view.
        half_fov = math.radians(cfg.fovy) / 2
        offset = rng.uniform(-cfg.aim_jitter, cfg.aim_jitter, 2) * half_fov
        look = head - eye
        yaw = math.atan2(look[1], look[0]) + offset[0] * cfg.image_size[1] / cfg.image_size[0]
        pitch = math.atan2(look[2], np.linalg.norm(look[:2])) + offset[1]
        sim.look_at(eye, eye + np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                                         math.sin(pitch)]))
        lighting = float(rng.uniform(0.55, 1.35))
        sim.set_lighting(lighting, float(rng.uniform(0.25, 0.6)))
        image = sim.render(CAMERA)
        labels = FrameLabel(index=index, subject=subject.index, lighting=lighting)
        for face in placed:
            label = label_face(sim, face)
            if label is not None:
                labels.faces.append(label)
        return image, labels


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
    os.replace(tmp, path)


def generate_dataset(out: str | Path, n: int, seed: int = 0, config: FaceSceneConfig | None = None,
                     progress: bool = True) -> Path:
    """Render ``n`` frames into ``out`` (resuming an interrupted run with the same settings).

    Raises:
        DatasetError: ``out`` holds a dataset made with other settings, seed or size.
        InvalidArgumentError: ``n`` is not positive.
    """
    if n < 1:
        raise InvalidArgumentError(f"number of frames must be >= 1, got {n}")
    config = config or FaceSceneConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    identities = generate_identities(config.n_identities, config.identity_seed)
    meta = {"version": DATASET_VERSION, "n": n, "seed": seed, "config": asdict(config),
            "heldout_identities": config.heldout_identities,
            "identities": [f.to_dict() for f in identities]}
    manifest = out / "dataset.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        for key in ("version", "n", "seed", "config"):
            if json.loads(json.dumps(old.get(key))) != json.loads(json.dumps(meta[key])):
                raise DatasetError(f"{out} holds a dataset with {key}={old.get(key)!r}, asked for {meta[key]!r}; "
                                   f"use another folder")
    else:
        manifest.write_text(json.dumps(meta, indent=1))
    n_shards = math.ceil(n / config.shard_size)
    todo = [s for s in range(n_shards) if not (out / f"shard_{s:05d}.json").is_file()]
    if not todo:
        return out
    sampler = FaceSceneSampler(config, out / "world")
    done = sum(min(config.shard_size, n - s * config.shard_size) for s in range(n_shards) if s not in todo)
    bar = tqdm(total=n, initial=done, desc="rendering faces", unit="frame", disable=not progress)
    try:
        for s in todo:
            start, stop = s * config.shard_size, min(n, (s + 1) * config.shard_size)
            images, labels = [], []
            digest = hashlib.sha256()
            for i in range(start, stop):
                image, label = sampler.render(i, seed)
                images.append(image)
                labels.append(asdict(label))
                digest.update(image.tobytes())
                bar.update(1)
            digest.update(json.dumps(labels, sort_keys=True).encode())
            _atomic_write_bytes(out / f"shard_{s:05d}.npz", lambda fh, ims=images: np.savez_compressed(
                fh, images=np.stack(ims)))
            body = json.dumps({"shard": s, "frames": labels, "sha256": digest.hexdigest()}).encode()
            _atomic_write_bytes(out / f"shard_{s:05d}.json", lambda fh, b=body: fh.write(b))
    finally:
        bar.close()
        sampler.close()
    return out


class FaceDataset:
    """Read access to a generated face dataset.

    Args:
        root: dataset folder written by :func:`generate_dataset`.

    Raises:
        DatasetError: the folder has no manifest or is incomplete.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / "dataset.json"
        if not path.is_file():
            raise DatasetError(f"no face dataset at {self.root} (missing dataset.json); "
                               f"make one with `vantage data faces --n N --out {self.root}`")
        self.meta = json.loads(path.read_text())
        self.config = FaceSceneConfig.from_dict(self.meta["config"])
        n_shards = math.ceil(self.meta["n"] / self.config.shard_size)
        self.shards = [self.root / f"shard_{s:05d}" for s in range(n_shards)]
        missing = [p.name for p in self.shards if not p.with_suffix(".json").is_file()]
        if missing:
            raise DatasetError(f"dataset {self.root} is incomplete (missing {missing[:3]}...); re-run the same "
                               f"`vantage data faces` command to resume")

    def __len__(self) -> int:
        return int(self.meta["n"])

    @property
    def heldout_identities(self) -> list[int]:
        return list(self.meta["heldout_identities"])

    @property
    def identities(self) -> list[FaceIdentity]:
        return generate_identities(self.config.n_identities, self.config.identity_seed)

    @property
    def content_hash(self) -> str:
        """SHA-256 over the shards' hashes: identifies the training data in model manifests."""
        digest = hashlib.sha256()
        for shard in self.shards:
            digest.update(json.loads(shard.with_suffix(".json").read_text())["sha256"].encode())
        return digest.hexdigest()

    def shards_iter(self) -> Iterator[tuple[np.ndarray, list[FrameLabel]]]:
        """Yield ``(images, labels)`` shard by shard (memory stays at one shard)."""
        for shard in self.shards:
            labels = [FrameLabel.from_dict(f) for f in json.loads(shard.with_suffix(".json").read_text())["frames"]]
            with np.load(shard.with_suffix(".npz")) as data:
                images = data["images"]
            yield images, labels

    def __iter__(self) -> Iterator[tuple[np.ndarray, FrameLabel]]:
        for images, labels in self.shards_iter():
            yield from zip(images, labels)


def render_gallery(config: FaceSceneConfig, world_dir: str | Path, identities: list[int] | None = None,
                   distance: float = 1.0) -> list[tuple[int, np.ndarray, FaceLabel]]:
    """One frontal reference frame per identity at ``distance`` metres, camera at head height, no clutter.

    Returns:
        ``(identity, image, label)`` triples; the label's box is the automatic face box.
    """
    sampler = FaceSceneSampler(config, world_dir)
    sim = sampler.sim
    out = []
    try:
        for idx in identities if identities is not None else range(config.n_identities):
            face = sampler.identities[idx]
            sim.reset()
            sim.set_pose(f"human_{face.name}", Pose.planar(0.0, 0.0, 0.0))
            head = sim.get_pose(f"head_{face.name}").position
            sim.look_at(head + np.array([distance, 0.0, 0.0]), head)
            image = sim.render(CAMERA)
            label = label_face(sim, face)
            assert label is not None and label.visible, "a frontal gallery view must show the face"
            out.append((idx, image, label))
    finally:
        sampler.close()
    return out
