"""Face datasets: frames rendered in the simulator with automatic face boxes, identities and visibility.

A dataset is a folder::

    dataset.json          settings, identity parameters, split (held-out identities), version
    shard_00000.npz       images  uint8 (N, H, W, 3) RGB
    shard_00000.json      per-frame labels and the shard's content hash (written last: marks it complete)
    gallery.npz/.json     one frontal 1 m reference frame per identity (what a recogniser enrols from)
    world/                the generated world the frames were rendered in

The frames come from a *scene sampler* handed to :func:`generate_dataset` — Vantage's is
:class:`envs.worlds.face_scenes.FaceSceneSampler`, which renders them in the face room — so this module holds
only the format: settings, labels, writing, resuming and reading. Generation is deterministic (frame ``i``
depends only on ``(seed, i)``, so a shard does not depend on which shards were made before it), sharded and
resumable: an interrupted run continues at the first shard without its ``.json``.

Labels per face: ``identity`` (index), ``box`` (x0, y0, x1, y1 in pixels), ``visible``, ``ignore`` (partly
visible: neither a positive nor a negative for detectors), ``distance`` (m, camera to head centre),
``yaw`` (degrees, 0 = camera in front of the face) and ``facing``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from common.io import atomic_path, atomic_write_text
from perception.errors import DatasetError, InvalidArgumentError

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
                   faces=[_face_label(f) for f in data["faces"]])


def _face_label(data: dict[str, Any]) -> FaceLabel:
    return FaceLabel(**{**data, "box": tuple(data["box"])})


class SceneSampler(Protocol):
    """What :func:`generate_dataset` needs from a renderer of labelled scenes (e.g.
    :class:`envs.worlds.face_scenes.FaceSceneSampler`): built as ``sampler(config, world_dir)``."""

    def render(self, index: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Frame ``index`` of a dataset with ``seed``: an RGB image and its :class:`FrameLabel` as a dict."""

    def gallery(self, identities: list[int] | None = None) -> list[tuple[int, np.ndarray, dict[str, Any]]]:
        """One frontal reference frame per identity: ``(identity, image, FaceLabel as a dict)``."""

    def close(self) -> None:
        """Release the renderer."""


GALLERY = "gallery"


def _validate(out: Path, n: int, seed: int, config: FaceSceneConfig, identities: list[dict[str, Any]]
              ) -> tuple[dict[str, Any], bool]:
    """The manifest for these settings, and whether ``out`` already holds it (refusing another dataset's)."""
    meta = {"version": DATASET_VERSION, "n": n, "seed": seed, "config": asdict(config),
            "heldout_identities": config.heldout_identities, "identities": identities}
    manifest = out / "dataset.json"
    if not manifest.is_file():
        return meta, False
    try:
        old = json.loads(manifest.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{manifest} is corrupt ({exc}); delete the folder to start over") from exc
    for key in ("version", "n", "seed", "config"):
        if json.loads(json.dumps(old.get(key))) != json.loads(json.dumps(meta[key])):
            raise DatasetError(f"{out} holds a dataset with {key}={old.get(key)!r}, asked for {meta[key]!r}; "
                               f"use another folder")
    return meta, True


def generate_dataset(out: str | Path, n: int, seed: int, config: FaceSceneConfig,
                     sampler: Callable[[FaceSceneConfig, Path], SceneSampler], progress: bool = True) -> Path:
    """Render ``n`` frames and the identity gallery into ``out`` (resuming an interrupted run).

    Args:
        out: dataset folder (created; an existing one must hold this very dataset, which is then completed).
        n: number of frames.
        seed: dataset seed; frame ``i`` depends only on ``(seed, i)``.
        config: scene settings.
        sampler: builds the scene renderer, e.g. :class:`envs.worlds.face_scenes.FaceSceneSampler`; it must
            also offer ``identity_table(config)``, the identities' parameters for the manifest.
        progress: show a progress bar.

    Raises:
        DatasetError: ``out`` holds a dataset made with other settings, seed or size.
        InvalidArgumentError: ``n`` is not positive.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgumentError(f"number of frames must be an integer >= 1, got {n!r}")
    out = Path(out)
    meta, exists = _validate(out, n, seed, config, sampler.identity_table(config))  # type: ignore[attr-defined]
    out.mkdir(parents=True, exist_ok=True)
    if not exists:
        atomic_write_text(out / "dataset.json", json.dumps(meta, indent=1))
    n_shards = math.ceil(n / config.shard_size)
    todo = [s for s in range(n_shards) if not (out / f"shard_{s:05d}.json").is_file()]
    need_gallery = not (out / f"{GALLERY}.json").is_file()
    if not todo and not need_gallery:
        return out
    scenes = sampler(config, out / "world")
    done = sum(min(config.shard_size, n - s * config.shard_size) for s in range(n_shards) if s not in todo)
    bar = tqdm(total=n, initial=done, desc="rendering faces", unit="frame", disable=not progress)
    try:
        for s in todo:
            start, stop = s * config.shard_size, min(n, (s + 1) * config.shard_size)
            images, labels = [], []
            digest = hashlib.sha256()
            for i in range(start, stop):
                image, label = scenes.render(i, seed)
                images.append(image)
                labels.append(label)
                digest.update(image.tobytes())
                bar.update(1)
            digest.update(json.dumps(labels, sort_keys=True).encode())
            _save_images(out / f"shard_{s:05d}.npz", images)
            body = {"shard": s, "frames": labels, "sha256": digest.hexdigest()}
            atomic_write_text(out / f"shard_{s:05d}.json", json.dumps(body))
        if need_gallery:
            refs = scenes.gallery()
            _save_images(out / f"{GALLERY}.npz", [image for _, image, _ in refs])
            atomic_write_text(out / f"{GALLERY}.json", json.dumps(
                {"identities": [idx for idx, _, _ in refs], "faces": [label for _, _, label in refs]}))
    finally:
        bar.close()
        scenes.close()
    return out


def _save_images(path: Path, images: list[np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, images=np.stack(images))


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
    def identity_names(self) -> list[str]:
        """Name of each identity index (``id_000``, ...)."""
        return [face["name"] for face in self.meta["identities"]]

    def gallery(self, identities: list[int] | None = None) -> list[tuple[int, np.ndarray, FaceLabel]]:
        """The frontal 1 m reference frame of each identity (all, or ``identities``): ``(index, image, label)``.

        Raises:
            DatasetError: the dataset was made before galleries were stored with it.
        """
        path = self.root / f"{GALLERY}.json"
        if not path.is_file():
            raise DatasetError(f"dataset {self.root} has no identity gallery (made by an older version); re-run "
                               "the `vantage data faces` command that made it to add one")
        table = json.loads(path.read_text())
        with np.load(self.root / f"{GALLERY}.npz") as data:
            images = data["images"]
        row = {idx: k for k, idx in enumerate(table["identities"])}
        wanted = table["identities"] if identities is None else identities
        missing = [i for i in wanted if i not in row]
        if missing:
            raise DatasetError(f"identities {missing} are not in the gallery of {self.root}")
        return [(i, images[row[i]], _face_label(table["faces"][row[i]])) for i in wanted]

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
