"""Training runs: a config dataclass, a run directory, vectorised environments, checkpoints and resume.

A run directory holds ``config.json`` (everything needed to rebuild the environment and the agent),
``checkpoints/latest.{zip,json}`` (atomic, every ``checkpoint_every`` steps), ``tb/`` (TensorBoard),
``model.zip`` (the final agent) and ``train_summary.json`` (steps, wall time, steps per second).

What a task trains with by default (its Gymnasium id, environment settings, the preset of each algorithm)
comes from its spec (:data:`envs.specs.TASKS`); nothing here names a task.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

import envs  # noqa: F401  (registers the environments)
from agents.checkpoints import AtomicCheckpointCallback, latest_checkpoint, load_model, save_model_atomic
from common.io import atomic_write_json
from common.seeding import EVAL_STREAM, derive_seeds
from envs.errors import CheckpointError, InvalidArgumentError, UnknownNameError, VantageError, check_choice
from envs.specs import TASKS, TaskSpec, get_task

ALGOS = ("ppo", "rainbow")
CONFIG_FILE = "config.json"
MODEL_FILE = "model.zip"


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run directory."""

    task: str
    """Task name (``vantage train TASK``; a key of :data:`envs.specs.TASKS`)."""
    algo: str = "ppo"
    """``ppo`` or ``rainbow``."""
    steps: int = 100_000
    """Total environment steps (summed over vectorised environments)."""
    seed: int = 0
    """Seed of the agent and of the training environments."""
    n_envs: int = 2
    """Number of vectorised environments."""
    vec_env: str = "dummy"
    """``dummy`` (one process) or ``subproc`` (one process per environment)."""
    preset: str | None = None
    """Named agent preset (:data:`agents.ppo.PPO_PRESETS`, :data:`agents.rainbow.PRESETS`); ``None``: the
    task's default for the algorithm."""
    normalize_rewards: bool = False
    """Min-max normalise rewards per episode before each PPO update (the paper's option)."""
    checkpoint_every: int = 10_000
    """Environment steps between atomic checkpoints."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gymnasium.make`` (``reward``, ``action_mode``, ``motion``, ``backend``...)."""
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    """Preset entries to replace, e.g. ``{"gamma": 0.5}``."""
    torch_threads: int = 1
    """CPU threads for PyTorch; small nets train fastest single-threaded beside the simulator."""

    def __post_init__(self) -> None:
        spec = TASKS.get(self.task)
        if spec is not None and self.preset is not None:
            self.preset = spec.preset_aliases.get(self.preset, self.preset)

    def validate(self) -> None:
        """Check every field (the preset against the algorithm's presets); raises naming the bad value."""
        spec = get_task(self.task)
        check_choice("algo", self.algo, ALGOS)
        check_choice("vec_env", self.vec_env, ("dummy", "subproc"))
        for name in ("steps", "n_envs", "checkpoint_every", "torch_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name}={value!r} must be an integer >= 1")
        if self.preset is None:
            try:
                self.preset = spec.preset(self.algo)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"{exc} ({self.algo} presets: {', '.join(algo_presets(self.algo))})"
                                           ) from None
        check_choice(f"{self.algo} preset", self.preset, algo_presets(self.algo))
        known = set(inspect.signature(algo_class(self.algo).__init__).parameters) - {"self", "env", "kwargs"}
        for key in self.agent_overrides:
            check_choice(f"{self.algo} setting", key, known)

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.task)

    @property
    def env_id(self) -> str:
        return self.spec.env_id

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(payload) - known
        if unknown:
            raise CheckpointError(f"config.json has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**payload)


def task_env_kwargs(task: str, backend: str = "mujoco", **options: str | None) -> dict[str, Any]:
    """``gymnasium.make`` keyword arguments for ``task`` from the training command's options.

    ``options`` are the command's task options (``reward``, ``action_mode``, ...); ``None`` takes the task's
    default, and an option another task owns must be left as ``None``.
    """
    spec = get_task(task)
    defaults = spec.defaults()
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key not in defaults:
            if value is not None:
                raise InvalidArgumentError(f"option {key}={value!r} does not apply to task {task!r}; "
                                           f"its options: {sorted(defaults)}")
            continue
        if value is not None:
            allowed = next(o.choices for o in spec.options if o.name == key)
            check_choice(f"{task} {key}", value, allowed)
        kwargs[key] = defaults[key] if value is None else value
    for key, value in defaults.items():
        kwargs.setdefault(key, value)
    kwargs["backend"] = backend
    return kwargs


def algo_presets(algo: str) -> tuple[str, ...]:
    """The preset names of algorithm ``algo``."""
    check_choice("algo", algo, ALGOS)
    if algo == "ppo":
        from agents.ppo import PPO_PRESETS

        return tuple(PPO_PRESETS)
    from agents.rainbow import PRESETS

    return tuple(PRESETS)


def load_config(run_dir: Path) -> TrainConfig:
    """Read a run directory's ``config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    try:
        return TrainConfig.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, UnknownNameError) as exc:
        raise CheckpointError(f"{path} is corrupt: {exc}") from exc


def make_env(config: TrainConfig, n_envs: int | None = None, seed: int | None = None) -> VecEnv:
    """Vectorised training environments for ``config``."""
    vec_cls = SubprocVecEnv if config.vec_env == "subproc" else DummyVecEnv
    return make_vec_env(
        config.env_id,
        n_envs=n_envs or config.n_envs,
        seed=config.seed if seed is None else seed,
        env_kwargs=dict(config.env_kwargs),
        vec_env_cls=vec_cls,
    )


def algo_class(algo: str) -> type[BaseAlgorithm]:
    """The algorithm class behind an ``--algo`` name."""
    check_choice("algo", algo, ALGOS)
    if algo == "ppo":
        from agents.ppo import VantagePPO

        return VantagePPO
    from agents.rainbow import Rainbow

    return Rainbow


def build_agent(config: TrainConfig, env: VecEnv, run_dir: Path | None = None) -> BaseAlgorithm:
    """A fresh agent for ``config`` on ``env``."""
    config.validate()
    tb = str(Path(run_dir) / "tb") if run_dir is not None else None
    try:
        if config.algo == "ppo":
            from agents.ppo import make_ppo

            return make_ppo(
                env, config.preset, normalize_rewards=config.normalize_rewards, overrides=config.agent_overrides,
                seed=config.seed, tensorboard_log=tb, device="cpu", verbose=0,
            )
        from agents.rainbow import Rainbow

        return Rainbow.from_preset(config.preset, env, seed=config.seed, tensorboard_log=tb, device="cpu",
                                   verbose=0, **config.agent_overrides)
    except VantageError:
        raise
    except (TypeError, ValueError, AssertionError) as exc:
        # SB3 checks its arguments with asserts and plain exceptions; say which settings they came from.
        raise InvalidArgumentError(f"{config.algo} preset {config.preset!r} with overrides {config.agent_overrides} "
                                   f"does not build on {config.env_id}: {exc}") from exc


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress_bar: bool = True) -> dict[str, Any]:
    """Train (or resume) a run in ``run_dir`` until ``config.steps`` environment steps.

    Args:
        config: the run's settings. On resume the saved ``config.json`` is used and ``config.steps`` may
            raise the total.
        run_dir: run directory (created if missing).
        resume: continue from ``run_dir``'s latest checkpoint.
        progress_bar: show a progress bar.

    Returns:
        The training summary also written to ``train_summary.json``.

    Raises:
        CheckpointError: ``resume`` without a checkpoint, or a corrupt checkpoint/config.
        InvalidArgumentError: a new run into a directory that already holds one.
    """
    run_dir = Path(run_dir)
    if resume:
        saved = load_config(run_dir)
        saved.steps = max(saved.steps, config.steps)
        config = saved
    elif (run_dir / CONFIG_FILE).exists():
        raise InvalidArgumentError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    config.validate()
    found = latest_checkpoint(run_dir) if resume else None
    if resume and found is None:
        raise CheckpointError(f"nothing to resume in {run_dir}: no checkpoints/latest.zip")
    torch.set_num_threads(config.torch_threads)

    # The environments and the agent are built before anything is written, so a bad setting leaves no
    # half-made run behind that the corrected command would then refuse.
    env = make_env(config)
    try:
        if found is not None:
            model = load_model(algo_class(config.algo), found[0], env=env, device="cpu")
            model.tensorboard_log = str(run_dir / "tb")
        else:
            model = build_agent(config, env, run_dir)
    except BaseException:
        env.close()
        raise
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG_FILE, config.to_json())

    remaining = config.steps - model.num_timesteps
    checkpoint = AtomicCheckpointCallback(run_dir, config.checkpoint_every)
    started = time.perf_counter()
    start_steps = model.num_timesteps
    try:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining, callback=checkpoint, reset_num_timesteps=not resume,
                progress_bar=progress_bar, tb_log_name="run",
            )
    finally:
        # An interrupt still leaves a checkpoint of everything learned so far.
        if getattr(checkpoint, "model", None) is not None:
            checkpoint.save()
        env.close()
    wall = time.perf_counter() - started
    save_model_atomic(model, run_dir / MODEL_FILE)
    summary = {
        "task": config.task,
        "algo": config.algo,
        "num_timesteps": int(model.num_timesteps),
        "steps_this_session": int(model.num_timesteps - start_steps),
        "wall_time_s": round(wall, 2),
        "steps_per_s": round((model.num_timesteps - start_steps) / max(wall, 1e-9), 1),
        "resumed": resume,
    }
    atomic_write_json(run_dir / "train_summary.json", summary)
    return summary


def load_agent(run_dir: Path) -> tuple[TrainConfig, BaseAlgorithm]:
    """A run's config and its most trained agent: the final model, or the latest checkpoint when that is newer.

    A resumed run that is interrupted leaves the previous session's final model beside a checkpoint that has
    trained further; the checkpoint wins then.
    """
    config = load_config(run_dir)
    path = Path(run_dir) / MODEL_FILE
    found = latest_checkpoint(run_dir)
    if not path.is_file() and found is None:
        raise CheckpointError(f"{run_dir} has neither {MODEL_FILE} nor a checkpoint")
    if found is not None and (not path.is_file() or found[1].get("num_timesteps", 0) > _final_timesteps(run_dir)):
        path = found[0]
    return config, load_model(algo_class(config.algo), path, device="cpu")


def _final_timesteps(run_dir: Path) -> int:
    """Steps of the final model, from the summary written beside it (0 when unknown)."""
    summary = Path(run_dir) / "train_summary.json"
    try:
        return int(json.loads(summary.read_text())["num_timesteps"])
    except (OSError, ValueError, KeyError):
        return 0


def make_eval_env(config: TrainConfig, **overrides: Any) -> gym.Env:
    """One evaluation environment with the run's settings and ``overrides`` (e.g. ``motion``)."""
    return gym.make(config.env_id, **{**config.env_kwargs, **overrides})


def seeds_for(seed: int, n: int) -> list[int]:
    """``n`` evaluation episode seeds derived from ``seed``, apart from training seeds (which are small)."""
    return derive_seeds(seed, n, EVAL_STREAM)
