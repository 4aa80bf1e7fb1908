"""Face banks: many views of thousands of procedural identities, stored as face crops (what a recogniser trains on).

A frame dataset (:mod:`perception.faces.dataset`) renders whole scenes with every person of its world; that does
not scale to thousands of identities. A *bank* renders identities a chunk at a time, one person per view, and
keeps only the face crop around the labelled box with the labels a recogniser is judged by::

    bank.json             settings, identity ranges, split roles, version
    views_00000.npz       crops uint8 (N, S, S, 3) RGB at crop_margin x the box side, and per-crop identity,
                          view, distance (m), yaw and pitch (degrees), lighting, box height (px)
    views_00000.json      count and content hash of the shard (written last: marks it complete)
    gallery.npz           one 64 x 64 enrolment crop per gallery identity (frontal, 1 m, head height; exactly the
                          crop :meth:`FaceRecognizerLearner.enroll` takes from that frame)

View ``j`` of identity ``i`` depends only on ``(seed, i, j)``, shards hold ``shard_identities`` consecutive
identities of the bank's list, and an interrupted run resumes at the first shard without its ``.json``.
A view whose face is not visible (turned away, out of frame, under ``min_height`` px) is drawn again from the
same stream, up to :data:`VIEW_ATTEMPTS` times, then left out.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from common.io import ARTEFACT_FILES, atomic_path, atomic_write_text, prepare_output
from perception.errors import DatasetError, InvalidArgumentError
from perception.faces.dataset import CAMERA_HEIGHT_LIMITS, _check_range, _read_json
from perception.progress import Progress

BANK_VERSION = 1
MANIFEST = "bank.json"
#: Redraws of a view whose face is not visible before it is left out.
VIEW_ATTEMPTS = 6
#: Side of the enrolment crops stored in ``gallery.npz`` (the recogniser's input size).
GALLERY_CROP = 64
#: The recogniser's crop margin (side = margin x the box's longer side).
RECOGNIZER_MARGIN = 1.15
_RERUN = "re-run the `vantage data face-bank` command that made it (its settings are in bank.json)"


@dataclass(frozen=True)
class FaceBankConfig:
    """What a face bank holds and how its views are drawn. Distances in metres, angles in degrees."""

    identities: tuple[tuple[int, int], ...] = ((550, 2550),)  #: [start, stop) ranges of identity indices
    gallery: tuple[int, int] | None = (0, 50)  #: identities whose enrolment crop is stored (None: none)
    views: int = 16  #: views per identity
    identity_seed: int = 0
    distance: tuple[float, float] = (0.4, 6.0)  #: camera to head, log-uniform
    yaw: tuple[float, float] = (-75.0, 75.0)  #: camera azimuth around the subject, 0 = frontal
    camera_height: tuple[float, float] = (0.3, 2.9)
    aim_jitter: float = 0.6
    room_size: float = 24.0
    image_size: tuple[int, int] = (240, 320)  #: (height, width) of the rendered frame the crop is cut from
    fovy: float = 50.0
    crop_size: int = 80  #: side of the stored crops; a 64 px crop of the recogniser's margin sits in the middle
    min_height: float = 6.0  #: faces shorter than this (px) are redrawn
    shard_identities: int = 50
    #: The identity split the bank's identities belong to (``envs.worlds.identities.identity_split``, identity
    #: seed 0): a recogniser never trains on the gallery or held-out ranges, and only held-out identities calibrate
    #: its unknown threshold. ``vantage data face-bank`` fills both from the split itself.
    split_gallery: tuple[int, int] = (0, 50)
    split_heldout: tuple[int, int] = (50, 550)

    def __post_init__(self) -> None:
        ranges = self.identities
        if not isinstance(ranges, tuple | list) or not ranges:
            raise InvalidArgumentError(f"identities must be a list of [start, stop) ranges, got {ranges!r}")
        for r in ranges:
            if (not isinstance(r, tuple | list) or len(r) != 2 or not all(isinstance(v, int) for v in r)
                    or not 0 <= r[0] < r[1]):
                raise InvalidArgumentError(f"identity range {r!r} must be [start, stop) integers with "
                                           f"0 <= start < stop")
        ids = self.identity_list
        if len(set(ids)) != len(ids):
            raise InvalidArgumentError(f"identity ranges {ranges!r} overlap")
        for name in ("gallery", "split_gallery", "split_heldout"):
            span = getattr(self, name)
            if (span is not None or name != "gallery") and (
                    not isinstance(span, tuple | list) or len(span) != 2 or not 0 <= span[0] < span[1]):
                raise InvalidArgumentError(f"{name} must be a [start, stop) range with 0 <= start < stop, got "
                                           f"{span!r}")
        for name in ("views", "identity_seed", "crop_size", "shard_identities"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "identity_seed" else 1):
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        if self.crop_size < GALLERY_CROP:
            raise InvalidArgumentError(f"crop_size must be >= {GALLERY_CROP}, got {self.crop_size}")
        if not 2.0 < self.room_size < 1000.0:
            raise InvalidArgumentError(f"room_size must be in (2, 1000) m, got {self.room_size!r}")
        _check_range("distance", self.distance, 0.3, self.room_size / 2, "m (0.3 m to half the room size)")
        _check_range("yaw", self.yaw, -180.0, 180.0, "degrees")
        _check_range("camera_height", self.camera_height, *CAMERA_HEIGHT_LIMITS, "m")
        if not 0.0 <= self.aim_jitter <= 1.0:
            raise InvalidArgumentError(f"aim_jitter must be in [0, 1], got {self.aim_jitter!r}")
        if not 0.0 <= self.min_height <= 100.0:
            raise InvalidArgumentError(f"min_height must be in [0, 100] px, got {self.min_height!r}")
        if len(self.image_size) != 2 or not all(isinstance(v, int) and 16 <= v <= 4096 for v in self.image_size):
            raise InvalidArgumentError(f"image_size must be (height, width) in [16, 4096] px, got {self.image_size!r}")
        if not 10.0 <= self.fovy <= 170.0:
            raise InvalidArgumentError(f"fovy must be in [10, 170] degrees, got {self.fovy!r}")

    @classmethod
    def from_dict(cls, data: dict) -> FaceBankConfig:
        known = {f.name for f in fields(cls)}
        if set(data) - known:
            raise DatasetError(f"unknown bank settings {sorted(set(data) - known)}; known: {sorted(known)}")

        def tup(v: Any) -> Any:
            return tuple(tup(x) for x in v) if isinstance(v, list) else v

        return cls(**{k: tup(v) for k, v in data.items()})

    @property
    def identity_list(self) -> list[int]:
        """Every identity index of the bank, in shard order."""
        return [i for start, stop in self.identities for i in range(start, stop)]

    @property
    def gallery_list(self) -> list[int]:
        return [] if self.gallery is None else list(range(*self.gallery))

    @property
    def crop_margin(self) -> float:
        """Margin of the stored crops: the recogniser's 64 px crop is their centre ``64 x 64 * crop_size / 64``."""
        return RECOGNIZER_MARGIN * self.crop_size / GALLERY_CROP


def _shard(root: Path, index: int) -> Path:
    return root / f"views_{index:05d}"


def _meta(config: FaceBankConfig, seed: int) -> dict[str, Any]:
    return json.loads(json.dumps({"format": "vantage-face-bank", "version": BANK_VERSION, "seed": seed,
                                  "config": asdict(config)}))


def generate_bank(out: str | Path, seed: int, config: FaceBankConfig,
                  sampler: Callable[[FaceBankConfig, Path, list[Any]], Any], progress: bool = True) -> Path:
    """Render the bank ``config`` describes into ``out`` (resuming an interrupted run of the same settings).

    Args:
        out: bank folder; an existing one must hold this very bank (then it is completed).
        seed: view seed; view ``j`` of identity ``i`` depends only on ``(seed, i, j)``.
        config: the bank's settings.
        sampler: builds a renderer ``sampler(config, world_dir, identity_indices)`` (identities of
            ``config.identity_seed``) with ``view(position, rng)`` and ``frontal(position)``
            (:class:`envs.worlds.face_scenes.IdentityViewSampler`).
        progress: report progress on stderr.

    Raises:
        DatasetError: ``out`` holds a bank made with other settings or seed.
        OutputExistsError: ``out`` is a file or holds another kind of artefact.
    """
    from perception.faces.recognizer import crop_face

    if not isinstance(config, FaceBankConfig):
        raise InvalidArgumentError(f"config must be a FaceBankConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
    out = Path(out)
    meta = _meta(config, seed)
    manifest = out / MANIFEST
    if manifest.is_file():
        old = _read_json(manifest, "bank manifest", "restore it, or write the bank to another folder")
        if old != meta:
            raise DatasetError(f"{out} holds a face bank made with other settings or seed; use another folder")
    else:
        prepare_output(out, kind=ARTEFACT_FILES[MANIFEST])
        atomic_write_text(manifest, json.dumps(meta, indent=1))
    ids = config.identity_list
    chunks = [ids[k:k + config.shard_identities] for k in range(0, len(ids), config.shard_identities)]
    todo = [s for s in range(len(chunks)) if not _shard(out, s).with_suffix(".json").is_file()]
    need_gallery = config.gallery is not None and not (out / "gallery.json").is_file()
    bar = Progress(len(ids) * config.views, initial=(len(chunks) - len(todo)) * config.shard_identities * config.views,
                   desc="rendering face bank", unit="view", enabled=progress)
    bar.log(f"{out}: {len(todo)} of {len(chunks)} shards to render" + (", then the gallery" if need_gallery else ""))
    world = out / "world"
    size, margin = config.crop_size, config.crop_margin
    try:
        for s in todo:
            scenes = sampler(config, world, chunks[s])
            columns: dict[str, list] = {k: [] for k in ("crops", "identity", "view", "distance", "yaw", "pitch",
                                                         "lighting", "box_height")}
            try:
                for position, identity in enumerate(chunks[s]):
                    for j in range(config.views):
                        rng = np.random.default_rng(np.random.SeedSequence([seed, identity, j]))
                        for _ in range(VIEW_ATTEMPTS):
                            image, label = scenes.view(position, rng)
                            height = label["box"][3] - label["box"][1]
                            if label["visible"] and height >= config.min_height:
                                columns["crops"].append(crop_face(image, label["box"], size, margin))
                                for key, value in (("identity", identity), ("view", j), ("distance", label["distance"]),
                                                   ("yaw", label["yaw"]), ("pitch", label["pitch"]),
                                                   ("lighting", label["lighting"]), ("box_height", height)):
                                    columns[key].append(value)
                                break
                        bar.update(1)
            finally:
                scenes.close()
            arrays = {"crops": np.stack(columns["crops"]).astype(np.uint8),
                      **{k: np.asarray(columns[k], np.int32) for k in ("identity", "view")},
                      **{k: np.asarray(columns[k], np.float32) for k in ("distance", "yaw", "pitch", "lighting",
                                                                         "box_height")}}
            digest = hashlib.sha256()
            for key in sorted(arrays):
                digest.update(key.encode() + np.ascontiguousarray(arrays[key]).tobytes())
            with atomic_path(_shard(out, s).with_suffix(".npz")) as tmp, open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
            atomic_write_text(_shard(out, s).with_suffix(".json"),
                              json.dumps({"shard": s, "count": len(arrays["crops"]), "sha256": digest.hexdigest()}))
            bar.log(f"shard {s + 1}/{len(chunks)} written ({len(arrays['crops'])} views), {bar.status()}")
        if need_gallery:
            gallery = config.gallery_list
            scenes = sampler(config, world, gallery)
            try:
                crops = [crop_face(*_frontal_crop_args(scenes, k)) for k in range(len(gallery))]
            finally:
                scenes.close()
            with atomic_path(out / "gallery.npz") as tmp, open(tmp, "wb") as fh:
                np.savez_compressed(fh, crops=np.stack(crops), identity=np.asarray(gallery, np.int32))
            digest = hashlib.sha256(np.stack(crops).tobytes()).hexdigest()
            atomic_write_text(out / "gallery.json", json.dumps({"identities": gallery, "sha256": digest}))
    finally:
        bar.close()
    return out


def _frontal_crop_args(scenes: Any, position: int) -> tuple[np.ndarray, Any, int, float]:
    image, label = scenes.frontal(position)
    return image, label["box"], GALLERY_CROP, RECOGNIZER_MARGIN


class FaceBank:
    """Read access to a face bank (see the module docstring); every file is checked as it is read.

    Raises:
        DatasetError: no bank manifest, a corrupt one, or missing shards.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise DatasetError(f"no face bank at {self.root} (missing {MANIFEST}); make one with "
                               f"`vantage data face-bank --out {self.root} ...`")
        self.meta = _read_json(path, "bank manifest", "restore it or make the bank again")
        try:
            self.config = FaceBankConfig.from_dict(self.meta["config"])
        except (KeyError, TypeError, ValueError, InvalidArgumentError) as exc:
            raise DatasetError(f"bank manifest {path} has invalid settings: {exc}") from exc
        ids = self.config.identity_list
        n = math.ceil(len(ids) / self.config.shard_identities)
        self.shards = [_shard(self.root, s) for s in range(n)]
        missing = [p.name for p in self.shards if not p.with_suffix(".json").is_file()]
        if missing:
            raise DatasetError(f"face bank {self.root} is incomplete (missing {missing[:3]}); {_RERUN} to resume")

    @property
    def identities(self) -> list[int]:
        return self.config.identity_list

    @staticmethod
    def name(identity: int) -> str:
        """The identity's name, as the identity generator (``envs.worlds.identities``) gives it."""
        return f"id_{identity:03d}"

    @property
    def content_hash(self) -> str:
        """SHA-256 over the shards' hashes: identifies the training data in model manifests."""
        digest = hashlib.sha256()
        for shard in self.shards:
            body = _read_json(shard.with_suffix(".json"), "shard record", f"delete it and {_RERUN}")
            digest.update(str(body.get("sha256")).encode())
        return digest.hexdigest()

    def load(self, identities: set[int] | None = None) -> dict[str, np.ndarray]:
        """Every view (or those of ``identities``) as arrays: ``crops``, ``identity``, ``view``, ``distance``,
        ``yaw``, ``pitch``, ``lighting``, ``box_height``.

        Raises:
            DatasetError: a shard file is missing, truncated or corrupt.
        """
        parts: dict[str, list[np.ndarray]] = {}
        for shard in self.shards:
            try:
                with np.load(shard.with_suffix(".npz")) as data:
                    arrays = {k: data[k] for k in data.files}
            except Exception as exc:  # zipfile/zlib/NumPy raise many kinds for damaged files
                raise DatasetError(f"bank shard {shard.with_suffix('.npz')} is missing or corrupt ({exc}); delete "
                                   f"{shard.name}.json and {_RERUN}") from exc
            keep = np.ones(len(arrays["identity"]), bool) if identities is None else \
                np.isin(arrays["identity"], sorted(identities))
            for k, v in arrays.items():
                parts.setdefault(k, []).append(v[keep])
        return {k: np.concatenate(v) for k, v in parts.items()}

    def gallery(self) -> tuple[list[int], np.ndarray]:
        """The gallery identities and their 64 x 64 enrolment crops.

        Raises:
            DatasetError: the bank has no gallery or its file is damaged.
        """
        if self.config.gallery is None:
            raise DatasetError(f"face bank {self.root} has no gallery (made without --gallery)")
        try:
            with np.load(self.root / "gallery.npz") as data:
                return [int(i) for i in data["identity"]], data["crops"]
        except Exception as exc:
            raise DatasetError(f"gallery of {self.root} is missing or corrupt ({exc}); delete gallery.json and "
                               f"{_RERUN}") from exc


def open_face_data(path: str | Path) -> Any:
    """The face bank or frame dataset (:class:`perception.faces.dataset.FaceDataset`) in ``path``."""
    from perception.faces.dataset import FaceDataset

    return FaceBank(path) if (Path(path) / MANIFEST).is_file() else FaceDataset(path)
