"""Atomic training checkpoints and the callback that writes them.

A checkpoint is ``checkpoints/latest.zip`` (the SB3 save) plus ``checkpoints/latest.json`` (step count and
time). Both are written to a temporary file in the same folder and renamed over the old one, so a crash or a
Ctrl-C mid-write leaves the previous checkpoint intact: interrupting training loses at most one interval.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from common.io import atomic_path, atomic_write_json
from envs.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"


def save_model_atomic(model: BaseAlgorithm, path: Path) -> None:
    """Save an SB3 model to ``path`` (a ``.zip``) atomically."""
    with atomic_path(path, suffix=".zip") as tmp:
        model.save(tmp)


def load_model(algo_class: type[BaseAlgorithm], path: Path, **kwargs: Any) -> BaseAlgorithm:
    """Load an SB3 model, turning a missing or corrupt file into a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is corrupt: not a zip archive as written by save()")
    try:
        return algo_class.load(path, **kwargs)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or from another algorithm: {exc}") from exc


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The run's latest checkpoint and its metadata, or ``None`` when it has none."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    model, meta = folder / f"{LATEST}.zip", folder / f"{LATEST}.json"
    if not model.is_file():
        return None
    try:
        info = json.loads(meta.read_text()) if meta.is_file() else {}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint metadata {meta} is corrupt: {exc}") from exc
    return model, info


class AtomicCheckpointCallback(BaseCallback):
    """Every ``every_steps`` environment steps, atomically replace the run's latest checkpoint.

    Args:
        run_dir: the run directory; checkpoints go to ``run_dir/checkpoints``.
        every_steps: interval in environment steps (summed over vectorised environments).
    """

    def __init__(self, run_dir: Path, every_steps: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if every_steps < 1:
            raise ValueError(f"checkpoint interval every_steps={every_steps} must be >= 1")
        self.folder = Path(run_dir) / CHECKPOINT_DIR
        self.every_steps = int(every_steps)
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_saved >= self.every_steps:
            self.save()
        return True

    def save(self) -> None:
        save_model_atomic(self.model, self.folder / f"{LATEST}.zip")
        atomic_write_json(
            self.folder / f"{LATEST}.json", {"num_timesteps": int(self.num_timesteps), "time": time.time()}
        )
        self._last_saved = self.num_timesteps
        if self.verbose:
            print(f"checkpoint at {self.num_timesteps} steps -> {self.folder}")
