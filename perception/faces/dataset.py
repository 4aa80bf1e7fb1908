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

from common.io import ARTEFACT_FILES, atomic_path, atomic_write_text, prepare_output
from perception.errors import DatasetError, InvalidArgumentError
from perception.progress import Progress

DATASET_VERSION = 1
MANIFEST = "dataset.json"
#: Camera heights allowed (m): above the face room's 3 m walls the camera would look out of the room.
CAMERA_HEIGHT_LIMITS = (0.1, 3.0)
#: Smallest and largest image side (pixels).
IMAGE_SIDE_LIMITS = (16, 4096)


def _check_range(name: str, value: Any, low: float, high: float, unit: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is a ``(min, max)`` pair with low <= min <= max <= high."""
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a (min, max) pair of numbers, got {value!r}") from None
    if not low <= first <= second <= high:  # written so that NaN fails too
        reversed_ = " (min and max are reversed)" if second < first else ""
        raise InvalidArgumentError(f"{name} range must satisfy {low:g} <= min <= max <= {high:g} {unit}, got "
                                   f"({first:g}, {second:g}){reversed_}")


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
        """Check every setting, so that a bad one fails before anything is written or rendered.

        Raises:
            InvalidArgumentError: a setting is outside its range (the message names it and the range).
        """
        for name in ("n_identities", "n_heldout", "identity_seed", "max_extra_people", "n_furniture", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
        if self.n_identities < 2:
            raise InvalidArgumentError(f"n_identities must be >= 2 (some to train on, some held out), got "
                                       f"{self.n_identities}")
        if not 1 <= self.n_heldout < self.n_identities:
            raise InvalidArgumentError(
                f"n_heldout must be in [1, n_identities), got {self.n_heldout} of {self.n_identities}")
        if not 2.0 < self.room_size < 1000.0:
            raise InvalidArgumentError(f"room_size must be in (2, 1000) m, got {self.room_size!r}")
        _check_range("distance", self.distance, 0.3, self.room_size, "m (0.3 m to the room size)")
        _check_range("yaw", self.yaw, -180.0, 180.0, "degrees")
        _check_range("camera_height", self.camera_height, *CAMERA_HEIGHT_LIMITS, "m")
        if not 0.0 <= self.aim_jitter <= 1.0:
            raise InvalidArgumentError(f"aim_jitter must be in [0, 1] (a fraction of the half field of view), got "
                                       f"{self.aim_jitter!r}")
        if not 0 <= self.max_extra_people < self.n_identities:
            raise InvalidArgumentError(f"max_extra_people must be in [0, n_identities - 1] = [0, "
                                       f"{self.n_identities - 1}], got {self.max_extra_people}")
        if self.n_furniture < 0:
            raise InvalidArgumentError(f"n_furniture must be >= 0, got {self.n_furniture}")
        low, high = IMAGE_SIDE_LIMITS
        size = tuple(self.image_size) if isinstance(self.image_size, tuple | list) else ()
        if len(size) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and
                                     low <= v <= high for v in size):
            raise InvalidArgumentError(f"image_size must be (height, width), each an integer in [{low}, {high}] "
                                       f"pixels, got {self.image_size!r}")
        if not 10.0 <= self.fovy <= 170.0:
            raise InvalidArgumentError(f"fovy must be in [10, 170] degrees, got {self.fovy!r}")
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
#: Where the next command is told to look when a dataset file is damaged.
_RERUN = "re-run the `vantage data faces` command that made it (its settings are in dataset.json)"


def _shard(root: Path, index: int) -> Path:
    return root / f"shard_{index:05d}"


def _read_json(path: Path, what: str, fix: str) -> Any:
    """``path`` parsed as JSON, or :class:`DatasetError` naming the file and ``fix``."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{what} {path} is missing; {fix}") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DatasetError(f"{what} {path} is unreadable or corrupt ({exc}); {fix}") from exc


def _load_images(path: Path, count: int | None, fix: str) -> np.ndarray:
    """The ``images`` array of an ``.npz`` file, checked to be ``count`` RGB uint8 frames.

    Raises:
        DatasetError: the file is missing, truncated or corrupt, or holds something else.
    """
    try:
        with np.load(path) as data:
            images = data["images"]
    except FileNotFoundError:
        raise DatasetError(f"image file {path} is missing; {fix}") from None
    except Exception as exc:  # zipfile, zlib and NumPy raise a variety of errors for truncated or damaged files
        raise DatasetError(f"image file {path} is truncated or corrupt ({type(exc).__name__}: {exc}); {fix}") from exc
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or (count is not None and
                                                                                len(images) != count):
        raise DatasetError(f"image file {path} holds {images.dtype} {images.shape}, expected {count} RGB uint8 "
                           f"frames; {fix}")
    return images


def _check_folder(out: Path, exists: bool) -> None:
    """Refuse a folder that holds dataset files without ``dataset.json`` (nothing says how they were made)."""
    if exists or not out.is_dir():
        return
    stray = sorted(p.name for pattern in ("shard_*.json", "shard_*.npz", f"{GALLERY}.*") for p in out.glob(pattern))
    if stray:
        raise DatasetError(f"{out} holds dataset files ({', '.join(stray[:3])}{', ...' if len(stray) > 3 else ''}) "
                           f"but no {MANIFEST}, so the settings they were made with are unknown; delete them or "
                           f"choose another folder")


def _remove_temporaries(out: Path) -> None:
    """Delete the temporary files of writes a killed run never finished (``common.io.atomic_path`` names them
    ``.<stem>.<random><suffix>``); the files they were meant to replace are whole, so nothing is lost."""
    for pattern in (".shard_*.*", f".{GALLERY}.*", ".dataset.*"):
        for path in out.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)


def _validate(out: Path, n: int, seed: int, config: FaceSceneConfig, identities: list[dict[str, Any]]
              ) -> tuple[dict[str, Any], bool]:
    """The manifest for these settings, and whether ``out`` already holds it (refusing another dataset's)."""
    meta = {"version": DATASET_VERSION, "n": n, "seed": seed, "config": asdict(config),
            "heldout_identities": config.heldout_identities, "identities": identities}
    manifest = out / MANIFEST
    if not manifest.is_file():
        return meta, False
    old = _read_json(manifest, "dataset manifest", "restore it, or write the dataset to another folder")
    if not isinstance(old, dict):
        raise DatasetError(f"{manifest} does not hold a dataset manifest (a JSON object); use another folder")
    for key in ("version", "n", "seed", "config"):
        if json.loads(json.dumps(old.get(key))) != json.loads(json.dumps(meta[key])):
            raise DatasetError(f"{out} holds a dataset with {key}={old.get(key)!r}, asked for {meta[key]!r}; "
                               f"use another folder")
    return meta, True


def generate_dataset(out: str | Path, n: int, seed: int, config: FaceSceneConfig,
                     sampler: Callable[[FaceSceneConfig, Path], SceneSampler], progress: bool = True) -> Path:
    """Render ``n`` frames and the identity gallery into ``out`` (resuming an interrupted run).

    Everything is checked before the first file is written: the settings (:class:`FaceSceneConfig` checks its
    own when it is made), ``n``, and the folder, which must be new or empty of artefacts, or hold this very
    dataset (then it is completed: shards without their ``.json`` are rendered again, and temporary files of a
    killed run are removed). Each file is written atomically, ``dataset.json`` together with the first shard
    (so a run that fails before rendering anything leaves no manifest) and a shard's ``.json`` last, so a run
    killed at any point resumes to the same content hash as an uninterrupted one.

    Args:
        out: dataset folder (created; an existing one must hold this very dataset, which is then completed).
        n: number of frames.
        seed: dataset seed; frame ``i`` depends only on ``(seed, i)``.
        config: scene settings.
        sampler: builds the scene renderer, e.g. :class:`envs.worlds.face_scenes.FaceSceneSampler`; it must
            also offer ``identity_table(config)``, the identities' parameters for the manifest.
        progress: report progress on stderr (a bar on a terminal, a line per shard and every 30 s elsewhere).

    Raises:
        DatasetError: ``out`` holds a dataset made with other settings, seed or size, or dataset files without
            a ``dataset.json``.
        OutputExistsError: ``out`` is a file or holds another kind of artefact (a saved model, a training run).
        InvalidArgumentError: ``n`` is not a positive integer or ``config`` is not a :class:`FaceSceneConfig`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgumentError(f"number of frames must be an integer >= 1, got {n!r}")
    if not isinstance(config, FaceSceneConfig):
        raise InvalidArgumentError(f"config must be a FaceSceneConfig, got {type(config).__name__}")
    out = Path(out)
    meta, exists = _validate(out, n, seed, config, sampler.identity_table(config))  # type: ignore[attr-defined]
    _check_folder(out, exists)
    prepare_output(out, kind=ARTEFACT_FILES[MANIFEST])  # refuses files, models and runs
    if out.is_dir():
        _remove_temporaries(out)
    n_shards = math.ceil(n / config.shard_size)
    todo = [s for s in range(n_shards) if not _shard(out, s).with_suffix(".json").is_file()]
    need_gallery = not (out / f"{GALLERY}.json").is_file()
    if not todo and not need_gallery:
        return out
    done = sum(min(config.shard_size, n - s * config.shard_size) for s in range(n_shards) if s not in todo)
    bar = Progress(n, initial=done, desc="rendering faces", unit="frame", enabled=progress)
    bar.log(f"{out}: {len(todo)} of {n_shards} shards to render ({done} of {n} frames done)"
            + (", then the gallery" if need_gallery else ""))
    scenes = sampler(config, out / "world")
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
            if not exists:
                # Written with the first shard, not before: a run that fails before it has rendered anything (a
                # missing OpenGL, say) leaves no manifest, so a corrected command may still use the folder.
                atomic_write_text(out / MANIFEST, json.dumps(meta, indent=1))
                exists = True
            _save_images(_shard(out, s).with_suffix(".npz"), images)
            body = {"shard": s, "frames": labels, "sha256": digest.hexdigest()}
            atomic_write_text(_shard(out, s).with_suffix(".json"), json.dumps(body))  # last: marks it complete
            bar.log(f"shard {s + 1}/{n_shards} written, {bar.status()}")
        if need_gallery:
            refs = scenes.gallery()
            _save_images(out / f"{GALLERY}.npz", [image for _, image, _ in refs])
            atomic_write_text(out / f"{GALLERY}.json", json.dumps(
                {"identities": [idx for idx, _, _ in refs], "faces": [label for _, _, label in refs]}))
            bar.log(f"gallery of {len(refs)} identities written")
    finally:
        bar.close()
        scenes.close()
    return out


def _save_images(path: Path, images: list[np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, images=np.stack(images))


class FaceDataset:
    """Read access to a generated face dataset.

    Every file is checked as it is read: a missing, truncated or corrupt manifest, shard or gallery file raises
    :class:`DatasetError` naming the file and what to do (usually: delete the damaged shard's ``.json`` and
    re-run the command that made the dataset, which renders it again).

    Args:
        root: dataset folder written by :func:`generate_dataset`.

    Raises:
        DatasetError: the folder has no manifest, its manifest is corrupt, or it is incomplete.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise DatasetError(f"no face dataset at {self.root} (missing dataset.json); "
                               f"make one with `vantage data faces --n N --out {self.root}`")
        self.meta = _read_json(path, "dataset manifest", "restore it or make the dataset again")
        missing = [k for k in ("n", "config", "heldout_identities", "identities")
                   if not isinstance(self.meta, dict) or k not in self.meta]
        if missing:
            raise DatasetError(f"dataset manifest {path} lacks {missing}; it was not written by `vantage data faces`")
        try:
            self.config = FaceSceneConfig.from_dict(self.meta["config"])
        except (InvalidArgumentError, TypeError, ValueError) as exc:
            raise DatasetError(f"dataset manifest {path} has invalid settings: {exc}") from exc
        n = self.meta["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DatasetError(f"dataset manifest {path} has n={n!r}; expected a frame count >= 1")
        n_shards = math.ceil(n / self.config.shard_size)
        self.shards = [_shard(self.root, s) for s in range(n_shards)]
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
            DatasetError: the dataset was made before galleries were stored with it, or its gallery files are
                damaged.
        """
        path = self.root / f"{GALLERY}.json"
        if not path.is_file():
            raise DatasetError(f"dataset {self.root} has no identity gallery (made by an older version); re-run "
                               "the `vantage data faces` command that made it to add one")
        fix = f"delete {path.name} and {_RERUN} to render the gallery again"
        table = _read_json(path, "gallery labels", fix)
        if not isinstance(table, dict) or not {"identities", "faces"} <= set(table):
            raise DatasetError(f"gallery labels {path} lack 'identities' or 'faces'; {fix}")
        images = _load_images(self.root / f"{GALLERY}.npz", len(table["identities"]), fix)
        row = {idx: k for k, idx in enumerate(table["identities"])}
        wanted = table["identities"] if identities is None else identities
        missing = [i for i in wanted if i not in row]
        if missing:
            raise DatasetError(f"identities {missing} are not in the gallery of {self.root}")
        return [(i, images[row[i]], _face_label(table["faces"][row[i]])) for i in wanted]

    def _labels(self, shard: Path) -> dict[str, Any]:
        """A shard's label file, checked to hold ``frames`` and ``sha256``."""
        fix = f"delete {shard.name}.json and {_RERUN} to render that shard again"
        body = _read_json(shard.with_suffix(".json"), "shard labels", fix)
        if not isinstance(body, dict) or not isinstance(body.get("frames"), list) or "sha256" not in body:
            raise DatasetError(f"shard labels {shard.with_suffix('.json')} lack 'frames' or 'sha256'; {fix}")
        return body

    @property
    def content_hash(self) -> str:
        """SHA-256 over the shards' hashes: identifies the training data in model manifests."""
        digest = hashlib.sha256()
        for shard in self.shards:
            digest.update(str(self._labels(shard)["sha256"]).encode())
        return digest.hexdigest()

    def shards_iter(self) -> Iterator[tuple[np.ndarray, list[FrameLabel]]]:
        """Yield ``(images, labels)`` shard by shard (memory stays at one shard).

        Raises:
            DatasetError: a shard's label or image file is missing, truncated or corrupt.
        """
        for shard in self.shards:
            fix = f"delete {shard.name}.json and {_RERUN} to render that shard again"
            frames = self._labels(shard)["frames"]
            try:
                labels = [FrameLabel.from_dict(f) for f in frames]
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"shard labels {shard.with_suffix('.json')} are malformed ({exc!r}); {fix}") from exc
            images = _load_images(shard.with_suffix(".npz"), len(labels), fix)
            yield images, labels

    def __iter__(self) -> Iterator[tuple[np.ndarray, FrameLabel]]:
        for images, labels in self.shards_iter():
            yield from zip(images, labels)
