"""Atomic training checkpoints: what they hold, how they are written, read back and checked.

A checkpoint lives in ``RUN/checkpoints/``:

* ``latest.zip``: SB3's save (weights, optimiser state, step and update counters, schedules' progress, the
  episode statistics), plus :data:`RESUME_STATE` inside the same archive: the Python, NumPy and PyTorch random
  states and the action space's generator. SB3 keeps none of these (its ``load`` reseeds them all from the
  model's seed), and without them a resumed run would draw other exploration noise, other minibatches and
  other replay samples than the run it continues.
* ``replay_<steps>.pkl``: an off-policy algorithm's replay buffer (SB3's ``save_replay_buffer``: every stored
  transition, Rainbow's open n-step windows, the prioritised sum-tree and its largest priority), named by the
  step count of the zip it belongs to.
* ``latest.json``: the step count, the time and the replay buffer's file name, for people and tools.

Each file is written to a temporary file in the same folder and renamed over the old one, in the order buffer,
zip, JSON; the previous step's buffer is deleted only once the newer zip is in place. A crash, a full disk or
Ctrl-C at any point therefore leaves a whole checkpoint: the zip says which step it is, and the buffer of that
step is still there. Checkpoints are taken only between updates (:class:`AtomicCheckpointCallback`), where no
half-collected rollout or half-applied update exists.

What a resume cannot restore is the environments' state: they are reseeded and reset
(:func:`restart_episodes`), so the episodes in progress at the checkpoint end there, as a time limit would end
them. Everything else continues exactly: a run resumed from its checkpoint at step ``N`` is bit for bit the run
that went straight on but called :func:`restart_episodes` at step ``N`` (``tests/agents/test_resume.py``).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from common.io import atomic_path, atomic_write_json
from envs.errors import CheckpointError, InvalidArgumentError

__all__ = ["CHECKPOINT_DIR", "LATEST", "RESUME_STATE", "AtomicCheckpointCallback", "capture_random_state",
           "copy_checkpoint_model", "latest_checkpoint", "load_checkpoint", "load_model", "read_random_state",
           "replay_path", "restart_episodes", "restart_seed", "restore_random_state", "save_checkpoint",
           "save_model_atomic"]

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
#: The archive member of a checkpoint zip that holds the random states (SB3's ``load`` ignores it).
RESUME_STATE = "vantage_resume_state.pkl"
RESUME_FORMAT = "vantage.resume"
RESUME_VERSION = 1
#: Stream of the seeds the environments restart from after a resume (see :func:`restart_seed`).
RESTART_STREAM = 7_919


def _fsync(path: Path) -> None:
    # SB3 writes through its own file objects; sync before the rename so a power cut cannot leave an empty file.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_zip(model: BaseAlgorithm, path: Path, extra: dict[str, bytes] | None = None) -> None:
    with atomic_path(path, suffix=".zip") as tmp:
        model.save(tmp)
        if extra:
            with zipfile.ZipFile(tmp, "a") as archive:
                for name, payload in extra.items():
                    archive.writestr(name, payload)
        _fsync(tmp)


def save_model_atomic(model: BaseAlgorithm, path: Path) -> None:
    """Save an SB3 model to ``path`` (a ``.zip``) atomically.

    Raises:
        CheckpointError: the file could not be written (disk full, no permission...); ``path`` is unchanged.
    """
    path = Path(path)
    try:
        _write_zip(model, path)
    except OSError as exc:
        raise CheckpointError(f"could not write {path}: {exc}; the previous file, if any, is unchanged") from exc


def load_model(algo_class: type[BaseAlgorithm], path: Path, **kwargs: Any) -> BaseAlgorithm:
    """Load an SB3 model, turning a missing or corrupt file into a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is corrupt: not a zip archive as written by save() (truncated?); "
                              "restore it from a backup, or start a new run")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise CheckpointError(f"checkpoint {path} is corrupt: member {bad!r} fails its checksum; restore it from "
                                  "a backup, or start a new run")
        return algo_class.load(path, **kwargs)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or from another algorithm than "
                              f"{algo_class.__name__}: {type(exc).__name__}: {exc}") from exc


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The run's latest checkpoint zip and its metadata (``latest.json``), or ``None`` when it has none.

    Raises:
        CheckpointError: ``latest.json`` exists but is not a JSON object with an integer ``num_timesteps``.
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    model, meta = folder / f"{LATEST}.zip", folder / f"{LATEST}.json"
    if not model.is_file():
        return None
    if not meta.is_file():
        return model, {}
    try:
        info = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {meta} is corrupt ({exc}); delete it (the checkpoint "
                              f"{model.name} is read without it) or restore it") from exc
    steps = info.get("num_timesteps") if isinstance(info, dict) else None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise CheckpointError(f"checkpoint metadata {meta} is corrupt: expected an object with an integer "
                              f"num_timesteps >= 0, got {info!r}; delete it (the checkpoint {model.name} is read "
                              "without it) or restore it")
    return model, info


def replay_path(folder: Path, num_timesteps: int) -> Path:
    """Where the replay buffer of the checkpoint at ``num_timesteps`` steps is kept."""
    return Path(folder) / f"replay_{int(num_timesteps)}.pkl"


def restart_seed(seed: int, num_timesteps: int) -> int:
    """The seed the environments restart from when a run resumes at ``num_timesteps`` (apart from its start)."""
    state = np.random.SeedSequence([int(seed), RESTART_STREAM, int(num_timesteps)]).generate_state(1)
    return int(state[0] % (2**31 - 1))


def restart_episodes(model: BaseAlgorithm, seed: int) -> None:
    """End the episodes in progress and start new ones from ``seed``: what resuming does at its checkpoint.

    Open n-step windows of Rainbow's replay are written as truncated transitions (as at a time limit), the
    environments are seeded (environment ``i`` with ``seed + i``) and reset, and the model's last observation
    becomes the first of the new episodes, so ``learn(reset_num_timesteps=False)`` goes on from there.
    """
    from agents.rainbow.buffers import RainbowReplayBuffer

    buffer = getattr(model, "replay_buffer", None)
    if isinstance(buffer, RainbowReplayBuffer):
        buffer.flush_pending()
    env = model.get_env()
    if env is None:
        raise InvalidArgumentError("restart_episodes needs a model with an environment (model.set_env(env))")
    env.seed(seed)
    model._last_obs = env.reset()  # type: ignore[assignment]
    model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
    if model._vec_normalize_env is not None:
        model._last_original_obs = model._vec_normalize_env.get_original_obs()


# ------------------------------------------------------------------ random states
def capture_random_state(model: BaseAlgorithm) -> dict[str, Any]:
    """The random states a resumed run needs and SB3 does not save."""
    state: dict[str, Any] = {
        "format": RESUME_FORMAT,
        "version": RESUME_VERSION,
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "action_space": model.action_space.np_random.bit_generator.state,
        "num_timesteps": int(model.num_timesteps),
    }
    return state


def restore_random_state(model: BaseAlgorithm, state: dict[str, Any], source: Path) -> None:
    """Put back the random states of :func:`capture_random_state` (after SB3's ``load`` reseeded them)."""
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT or state.get("version") != RESUME_VERSION:
        raise CheckpointError(f"{RESUME_STATE} in {source} is not a {RESUME_FORMAT} v{RESUME_VERSION} record; "
                              "restore the checkpoint from a backup, or start a new run")
    try:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        model.action_space.np_random.bit_generator.state = state["action_space"]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{RESUME_STATE} in {source} is corrupt ({type(exc).__name__}: {exc}); restore the "
                              "checkpoint from a backup, or start a new run") from exc


def read_random_state(path: Path) -> dict[str, Any] | None:
    """The random states stored in checkpoint ``path``, or ``None`` for a checkpoint written without them."""
    try:
        with zipfile.ZipFile(path) as archive:
            if RESUME_STATE not in archive.namelist():
                return None
            raw = archive.read(RESUME_STATE)
        # The run's own checkpoint, trusted as SB3 trusts the pickles in its zip and replay files.
        return pickle.loads(raw)
    except Exception as exc:
        raise CheckpointError(f"{RESUME_STATE} in checkpoint {path} is corrupt ({type(exc).__name__}: {exc}); "
                              "restore the checkpoint from a backup, or start a new run") from exc


# ------------------------------------------------------------------ writing
def _remove_stale_temporaries(folder: Path) -> None:
    """Delete what an atomic write killed mid-way (SIGKILL, power cut) left: ``.latest.*`` and ``.replay_*``."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and (path.name.startswith(f".{LATEST}.") or path.name.startswith(".replay_")):
            path.unlink(missing_ok=True)


def _remove_other_replays(folder: Path, keep: Path | None) -> None:
    for path in folder.glob("replay_*.pkl"):
        if path != keep:
            path.unlink(missing_ok=True)


def save_checkpoint(model: BaseAlgorithm, folder: Path, save_replay_buffer: bool = True) -> dict[str, Any]:
    """Write a complete checkpoint of ``model`` to ``folder`` (see the module docstring for the order).

    Args:
        model: the model, between updates.
        folder: the run's ``checkpoints`` folder (created if missing).
        save_replay_buffer: keep an off-policy model's replay buffer beside the zip.

    Returns:
        The metadata written to ``latest.json``.

    Raises:
        CheckpointError: a file could not be written; the previous checkpoint is left whole and no temporary or
            half-written file stays behind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(folder)
    steps = int(model.num_timesteps)
    replay: Path | None = None
    created_replay = False
    try:
        if save_replay_buffer and isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
            replay = replay_path(folder, steps)
            created_replay = not replay.exists()
            with atomic_path(replay, suffix=".pkl") as tmp:
                model.save_replay_buffer(tmp)
                _fsync(tmp)
        state = pickle.dumps(capture_random_state(model), protocol=pickle.HIGHEST_PROTOCOL)
        _write_zip(model, folder / f"{LATEST}.zip", extra={RESUME_STATE: state})
        meta = {"num_timesteps": steps, "time": time.time(), "replay_buffer": replay.name if replay else None}
        atomic_write_json(folder / f"{LATEST}.json", meta)
    except BaseException as exc:
        # The zip was not replaced, so the buffer written for it belongs to no checkpoint.
        if created_replay and replay is not None and not _zip_steps_is(folder / f"{LATEST}.zip", steps):
            replay.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CheckpointError(f"could not write the checkpoint at {steps} steps in {folder}: {exc}; the previous "
                                  "checkpoint is unchanged") from exc
        raise
    _remove_other_replays(folder, replay)
    return meta


def _zip_steps_is(path: Path, steps: int) -> bool:
    """Whether the checkpoint zip at ``path`` holds a model at ``steps`` steps (reads only its random state)."""
    try:
        state = read_random_state(path)
    except CheckpointError:
        return False
    return state is not None and state.get("num_timesteps") == steps


# ------------------------------------------------------------------ reading
def load_checkpoint(algo_class: type[BaseAlgorithm], run_dir: Path, env: VecEnv, *,
                    log: Callable[[str], None] = print) -> BaseAlgorithm:
    """Load a run's latest checkpoint onto ``env`` for training on: weights, replay buffer, random states.

    The environments are not reset here: call :func:`restart_episodes` next (``agents.training.train`` does).

    Raises:
        CheckpointError: no checkpoint, or a corrupt zip, ``latest.json``, random state or replay buffer (the
            message names the file and what to do).
    """
    found = latest_checkpoint(run_dir)
    if found is None:
        raise CheckpointError(f"nothing to resume in {run_dir}: no {CHECKPOINT_DIR}/{LATEST}.zip")
    path = found[0]
    folder = path.parent
    _remove_stale_temporaries(folder)
    # Loaded without the environment, then attached: SB3's load would otherwise seed the environments too.
    model = load_model(algo_class, path, device="cpu")
    try:
        model.set_env(env, force_reset=True)
    except (AssertionError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the run's environments: {exc}") from exc
    state = read_random_state(path)
    if state is not None and state.get("num_timesteps") != model.num_timesteps:
        raise CheckpointError(f"checkpoint {path} is inconsistent: its random state is from step "
                              f"{state.get('num_timesteps')} but its model from step {model.num_timesteps}; restore "
                              "it from a backup, or start a new run")
    if isinstance(model, OffPolicyAlgorithm):
        _load_replay(model, folder, found[1], log)
    if state is None:
        log(f"note: checkpoint {path} holds no random states (written by an older version); the resumed run draws "
            "other random numbers than an uninterrupted one would")
    else:
        restore_random_state(model, state, path)
    return model


def _load_replay(model: OffPolicyAlgorithm, folder: Path, meta: dict[str, Any], log: Callable[[str], None]) -> None:
    replay = replay_path(folder, model.num_timesteps)
    if not replay.is_file():
        if meta.get("replay_buffer") is None:
            return  # saved without one (--no-save-replay-buffer, or an older version): replay starts empty
        log(f"warning: replay buffer {replay} not found; resuming with an empty replay buffer (the resumed run "
            "differs from an uninterrupted one)")
        return
    expected = model.replay_buffer
    try:
        model.load_replay_buffer(replay)
    except Exception as exc:
        raise CheckpointError(f"replay buffer {replay} is corrupt ({type(exc).__name__}: {exc}); restore it from a "
                              "backup, or delete it to resume with an empty replay buffer (the resumed run then "
                              "differs from an uninterrupted one)") from exc
    _check_replay(model.replay_buffer, expected, replay)


def _check_replay(loaded: ReplayBuffer, expected: ReplayBuffer | None, path: Path) -> None:
    if expected is None:
        return
    checks = {
        "class": (type(loaded).__name__, type(expected).__name__),
        "buffer_size": (loaded.buffer_size, expected.buffer_size),
        "n_envs": (loaded.n_envs, expected.n_envs),
        "observation shape": (loaded.obs_shape, expected.obs_shape),
        "n_step": (getattr(loaded, "n_step", None), getattr(expected, "n_step", None)),
    }
    differ = {name: pair for name, pair in checks.items() if pair[0] != pair[1]}
    if differ:
        details = ", ".join(f"{name} {got!r} (the model: {want!r})" for name, (got, want) in differ.items())
        raise CheckpointError(f"replay buffer {path} does not belong to this checkpoint: {details}; restore it, or "
                              "delete it to resume with an empty replay buffer")


class AtomicCheckpointCallback(BaseCallback):
    """Every ``every_steps`` environment steps, atomically replace the run's checkpoint, between updates.

    The checkpoint is taken at the start of the first rollout after the interval has passed (on-policy: each
    rollout of ``n_steps x n_envs`` steps; off-policy: each ``train_freq`` steps), where the previous update is
    complete and nothing is half-collected. A ``stop`` flag that becomes true (the first Ctrl-C) also takes a
    checkpoint there and then ends training.

    Args:
        run_dir: the run directory; checkpoints go to ``run_dir/checkpoints``.
        every_steps: interval in environment steps (summed over vectorised environments).
        save_replay_buffer: keep an off-policy model's replay buffer with each checkpoint.
        stop: returns true when training should checkpoint and stop.
        saved_at: step count of the checkpoint already on disk (a resumed run's), so it is not written again.
        on_save: called with the step count after each checkpoint is written.
        verbose: 1 prints a line per checkpoint.
    """

    def __init__(self, run_dir: Path, every_steps: int, save_replay_buffer: bool = True,
                 stop: Callable[[], bool] | None = None, saved_at: int | None = None,
                 on_save: Callable[[int], None] | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1:
            raise InvalidArgumentError(f"checkpoint interval every_steps={every_steps!r} must be an integer >= 1")
        self.folder = Path(run_dir) / CHECKPOINT_DIR
        self.every_steps = every_steps
        self.save_replay_buffer = save_replay_buffer
        self.stop = stop
        self.saved_at = saved_at
        self.on_save = on_save
        self.stopped = False
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps

    def _on_rollout_start(self) -> None:
        stopping = self.stop is not None and self.stop()
        if stopping or self.num_timesteps - self._last_saved >= self.every_steps:
            self.save()
        self.stopped = stopping

    def _on_step(self) -> bool:
        return not self.stopped

    def save(self) -> None:
        """Write the checkpoint now (the caller makes sure the model is between updates)."""
        if self.saved_at != self.num_timesteps:
            save_checkpoint(self.model, self.folder, self.save_replay_buffer)
            self.saved_at = self.num_timesteps
            if self.on_save is not None:
                self.on_save(self.saved_at)
            if self.verbose:
                print(f"checkpoint at {self.num_timesteps} steps -> {self.folder}")
        self._last_saved = self.num_timesteps


def copy_checkpoint_model(run_dir: Path, target: Path) -> None:
    """Atomically copy the latest checkpoint's zip to ``target`` (a finished run's ``model.zip``)."""
    found = latest_checkpoint(run_dir)
    if found is None:
        raise CheckpointError(f"{run_dir} has no checkpoint to copy")
    try:
        with atomic_path(target, suffix=".zip") as tmp, open(found[0], "rb") as source, open(tmp, "wb") as handle:
            handle.write(source.read())
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise CheckpointError(f"could not write {target}: {exc}") from exc
