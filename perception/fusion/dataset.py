"""Fusion datasets: synchronised sensor samples with actions and the next tool pose, no labels from people.

A dataset is a folder::

    fusion_dataset.json   format, modalities and shapes, sample and episode counts, how it was collected,
                          content hash (SHA-256 of samples.npz)
    samples.npz           rgb (N, S, S, 3) uint8, depth (N, S, S, 1) float16, wrench (N, 32, 6) float32,
                          proprio (N, 15) float32, action (N, 4) float32, next_proprio (N, 15) float32,
                          episode (N,) int32, step (N,) int32

``vantage data fusion`` writes one (``agents/fusion_data.py``: scripted and random motions in the simulator).
The self-supervised labels are computed from the samples: contact from the force window
(:func:`contact_labels`), the next pose from ``next_proprio``, misalignment by pairing modalities of different
samples.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write_bytes, atomic_write_json, prepare_output
from perception.errors import DatasetError, InvalidArgumentError

__all__ = ["DATASET_FILE", "FORMAT", "SAMPLES_FILE", "FusionDataset", "contact_labels", "write_dataset"]

DATASET_FILE = "fusion_dataset.json"
SAMPLES_FILE = "samples.npz"
FORMAT = "vantage-fusion-dataset"
ARRAYS = ("rgb", "depth", "wrench", "proprio", "action", "next_proprio", "episode", "step")
#: Force beyond the peg's weight (N) that counts as contact, and that weight (N, along the sensor's -z).
CONTACT_FORCE = 2.0
PEG_WEIGHT = 0.981


def contact_labels(wrench: np.ndarray, threshold: float = CONTACT_FORCE, weight: float = PEG_WEIGHT) -> np.ndarray:
    """1.0 where any sample of a ``(N, T, 6)`` force window exceeds the peg's weight by ``threshold`` newtons."""
    force = np.asarray(wrench, np.float64)[..., :3] + np.array([0.0, 0.0, weight])
    return (np.linalg.norm(force, axis=-1).max(-1) > threshold).astype(np.float32)


@dataclass
class FusionDataset:
    """A loaded fusion dataset (arrays by name, and its description)."""

    arrays: dict[str, np.ndarray]
    info: dict[str, Any]
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.arrays["proprio"])

    @property
    def content_hash(self) -> str:
        return str(self.info["content_hash"])

    @classmethod
    def load(cls, path: str | Path) -> FusionDataset:
        """Read a dataset folder, checking its hash and shapes.

        Raises:
            DatasetError: the folder is not a fusion dataset, or its files are corrupt or do not match.
        """
        folder = Path(path)
        meta = folder / DATASET_FILE
        if not meta.is_file():
            raise DatasetError(f"{folder} is not a fusion dataset: it has no {DATASET_FILE} (make one with "
                               f"`vantage data fusion --out {folder}`)")
        try:
            info = json.loads(meta.read_text())
            if info.get("format") != FORMAT:
                raise DatasetError(f"{meta} has format {info.get('format')!r}, expected {FORMAT!r}")
            blob = (folder / SAMPLES_FILE).read_bytes()
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise DatasetError(f"{folder} is not a readable fusion dataset: {exc}") from exc
        digest = hashlib.sha256(blob).hexdigest()
        if digest != info.get("content_hash"):
            raise DatasetError(f"{folder / SAMPLES_FILE} does not match the hash in {DATASET_FILE}: the file was "
                               f"changed or truncated; collect the dataset again")
        with np.load(io.BytesIO(blob)) as npz:
            arrays = {name: npz[name] for name in ARRAYS}
        sizes = {name: len(a) for name, a in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise DatasetError(f"{folder}: arrays have different lengths {sizes}")
        return cls(arrays, info, folder)


def write_dataset(folder: str | Path, arrays: Mapping[str, np.ndarray], description: Mapping[str, Any],
                  overwrite: bool = False) -> FusionDataset:
    """Write a dataset atomically (samples first, description last).

    Raises:
        OutputExistsError: the folder holds a dataset or other files in the way and ``overwrite`` is false.
        InvalidArgumentError: an array is missing or the lengths differ.
    """
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise InvalidArgumentError(f"fusion dataset arrays missing: {missing}")
    lengths = {name: len(arrays[name]) for name in ARRAYS}
    if len(set(lengths.values())) != 1:
        raise InvalidArgumentError(f"fusion dataset arrays have different lengths {lengths}")
    folder = prepare_output(folder, (DATASET_FILE, SAMPLES_FILE), overwrite=overwrite)
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(arrays[name]) for name in ARRAYS})
    blob = buffer.getvalue()
    info = {"format": FORMAT, "samples": int(lengths["proprio"]),
            "episodes": len(np.unique(arrays["episode"])),
            "shapes": {name: list(np.asarray(arrays[name]).shape[1:]) for name in ARRAYS},
            "content_hash": hashlib.sha256(blob).hexdigest(), **dict(description)}
    atomic_write_bytes(folder / SAMPLES_FILE, blob)
    atomic_write_json(folder / DATASET_FILE, info)
    return FusionDataset({name: np.asarray(arrays[name]) for name in ARRAYS}, info, folder)
