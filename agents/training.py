"""Training runs: a config dataclass, a run directory, vectorised environments, checkpoints and resume.

A run directory holds ``config.json`` (everything needed to rebuild the environment and the agent),
``checkpoints/`` (atomic, every ``checkpoint_every`` steps and at the end; :mod:`agents.checkpoints`), ``tb/``
(TensorBoard), ``model.zip`` (the final agent) and ``train_summary.json`` (steps, wall time, steps per second).

Three rules keep a run whole:

* **check first, write after**: every setting is checked, the environments are built and stepped once and the
  agent is built before ``config.json`` is written; a new run goes only into a new or empty folder, and a run
  that fails before its first checkpoint is removed again, so the corrected command finds nothing in its way;
* **a resume continues exactly the run in the folder**: its ``config.json`` decides every setting, one given
  differently is an error naming it, and ``steps`` is the total to reach, never the steps to add;
* **interrupts lose nothing**: the first Ctrl-C writes a checkpoint at the end of the current update and stops.

What is exact on resume: everything in the checkpoint (weights, optimiser, replay buffer with its priorities,
counters, schedules, random states). The environments restart: the episodes in progress at the checkpoint end
there and new ones begin from a seed derived from the run's seed and step (:func:`agents.checkpoints.restart_episodes`).
A run resumed at step ``N`` therefore equals, bit for bit, the same run that did that restart at step ``N``
without stopping, provided ``steps`` (which sets the schedules) is unchanged (``tests/agents/test_resume.py``).

What a task trains with by default (its Gymnasium id, environment settings, the preset of each algorithm)
comes from its spec (:data:`envs.specs.TASKS`); nothing here names a task.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
import json
import math
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFrequencyUnit
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

import envs  # noqa: F401  (registers the environments)
from agents.callbacks import ProgressLogCallback, StopOnInterrupt
from agents.checkpoints import (
    CHECKPOINT_DIR,
    AtomicCheckpointCallback,
    copy_checkpoint_model,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    restart_episodes,
    restart_seed,
    save_model_atomic,
)
from common.errors import OutputExistsError
from common.io import ARTEFACT_FILES, atomic_write_json
from common.seeding import EVAL_STREAM, derive_seeds
from envs.errors import (
    CheckpointError,
    InvalidArgumentError,
    VantageError,
    check_choice,
)
from envs.specs import TASKS, TaskSpec, get_task

__all__ = ["ALGOS", "CONFIG_FILE", "MODEL_FILE", "SUMMARY_FILE", "TrainConfig", "algo_class", "algo_presets",
           "build_agent", "load_agent", "load_config", "make_env", "make_eval_env", "planned_steps", "probe_env",
           "seeds_for", "task_env_kwargs", "train"]

ALGOS = ("ppo", "rainbow")
CONFIG_FILE = "config.json"
MODEL_FILE = "model.zip"
SUMMARY_FILE = "train_summary.json"
#: Display names of the algorithms, for messages.
ALGO_NAMES = {"ppo": "PPO", "rainbow": "Rainbow"}
#: Constructor arguments the run itself sets (``--seed``, the run folder, the device), never ``--set``.
_RUN_MANAGED = {"seed": "--seed", "tensorboard_log": "the run folder's tb/", "device": "cpu, always",
                "verbose": "0, always", "_init_setup_model": "SB3 itself"}


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run directory."""

    task: str
    """Task name (``vantage train TASK``; a key of :data:`envs.specs.TASKS`)."""
    algo: str = "ppo"
    """``ppo`` or ``rainbow``."""
    steps: int = 100_000
    """Total environment steps (summed over vectorised environments); on-policy training rounds it up to whole
    rollouts, off-policy training to whole ``train_freq`` chunks."""
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
    """Environment steps between atomic checkpoints (taken at the next update boundary)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gymnasium.make`` (``reward``, ``action_mode``, ``motion``, ``backend``...)."""
    agent_overrides: dict[str, Any] = field(default_factory=dict)
    """Preset entries to replace, e.g. ``{"gamma": 0.5}``."""
    torch_threads: int = 1
    """CPU threads for PyTorch; small nets train fastest single-threaded beside the simulator."""
    save_replay_buffer: bool = True
    """Keep an off-policy agent's replay buffer with each checkpoint, so a resume continues exactly (it can be
    large: ``buffer_size`` transitions of two observations each)."""

    def __post_init__(self) -> None:
        spec = TASKS.get(self.task) if isinstance(self.task, str) else None
        if spec is not None and self.preset is not None:
            self.preset = spec.preset_aliases.get(self.preset, self.preset)

    def validate(self) -> None:
        """Check every field (the preset against the algorithm's presets); raises naming the bad value."""
        _check_field_types(dataclasses.asdict(self), InvalidArgumentError, "")
        spec = get_task(self.task)
        check_choice("algo", self.algo, ALGOS)
        check_choice("vec_env", self.vec_env, ("dummy", "subproc"))
        for name in ("steps", "n_envs", "checkpoint_every", "torch_threads"):
            value = getattr(self, name)
            if value < 1:
                raise InvalidArgumentError(f"{name}={value!r} must be an integer >= 1")
        if self.seed < 0:
            raise InvalidArgumentError(f"seed={self.seed!r} must be an integer >= 0")
        if self.preset is None:
            try:
                self.preset = spec.preset(self.algo)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"{exc} ({self.algo} presets: {', '.join(algo_presets(self.algo))})"
                                           ) from None
        check_choice(f"{self.algo} preset", self.preset, algo_presets(self.algo))
        parameters = inspect.signature(algo_class(self.algo).__init__).parameters
        known = set(parameters) - {"self", "env", "kwargs"}
        for key in self.agent_overrides:
            if key in _RUN_MANAGED:
                raise InvalidArgumentError(f"{self.algo} setting {key!r} is set by the run ({_RUN_MANAGED[key]}), "
                                           "not by --set")
            check_choice(f"{self.algo} setting", key, known - set(_RUN_MANAGED))
        _check_override_values(self.algo, self.preset, self.agent_overrides)

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.task)

    @property
    def env_id(self) -> str:
        return self.spec.env_id

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: Any) -> TrainConfig:
        """Rebuild a config from ``config.json``'s object; raises :class:`CheckpointError` on a malformed one."""
        if not isinstance(payload, dict):
            raise CheckpointError(f"config.json must hold a JSON object, got {type(payload).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(payload) - known
        if unknown:
            raise CheckpointError(f"config.json has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if "task" not in payload:
            raise CheckpointError("config.json has no 'task'")
        _check_field_types(payload, CheckpointError, "config.json: ")
        return cls(**payload)


#: The JSON type of each config field, checked on load and before training.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "task": (str,), "algo": (str,), "steps": (int,), "seed": (int,), "n_envs": (int,), "vec_env": (str,),
    "preset": (str, type(None)), "normalize_rewards": (bool,), "checkpoint_every": (int,), "env_kwargs": (dict,),
    "agent_overrides": (dict,), "torch_threads": (int,), "save_replay_buffer": (bool,),
}


_TYPE_NAMES = {"str": "a string", "int": "an integer", "bool": "true or false", "dict": "an object",
               "NoneType": "null"}


def _check_field_types(payload: Mapping[str, Any], error: type[VantageError], prefix: str) -> None:
    for name, types in _FIELD_TYPES.items():
        if name not in payload:
            continue
        value = payload[name]
        # bool is an int in Python, but never a step count or a seed.
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            wanted = " or ".join(_TYPE_NAMES[t.__name__] for t in types)
            raise error(f"{prefix}{name}={value!r} must be {wanted}")


def _preset_settings(algo: str, preset: str) -> dict[str, Any]:
    if algo == "ppo":
        from agents.ppo import PPO_PRESETS

        return dict(PPO_PRESETS.get(preset, {}))
    from agents.rainbow import PRESETS

    return dict(PRESETS.get(preset, {}))


def _check_override_values(algo: str, preset: str, overrides: Mapping[str, Any]) -> None:
    """Each ``--set`` value must have the JSON type of the preset's (or the constructor's default) value.

    Ranges are the algorithms' own business (:func:`agents.ppo.check_ppo_settings`, Rainbow's constructor); here
    a string where a number belongs is caught before anything is built.
    """
    reference = {name: p.default for name, p in inspect.signature(algo_class(algo).__init__).parameters.items()
                 if p.default is not inspect.Parameter.empty}
    reference.update(_preset_settings(algo, preset))
    for key, value in overrides.items():
        ref = reference.get(key)
        what = f"{algo} setting {key}={value!r}"
        if isinstance(ref, bool):
            if not isinstance(value, bool):
                raise InvalidArgumentError(f"{what} must be true or false (the preset has {ref!r})")
        elif isinstance(ref, int | float):
            if isinstance(value, list):
                continue  # e.g. train_freq=[1, "episode"]: the algorithm checks its own tuples
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidArgumentError(f"{what} must be a finite number (the preset has {ref!r})")
            if isinstance(ref, int) and not isinstance(value, int):
                raise InvalidArgumentError(f"{what} must be an integer (the preset has {ref!r})")
        elif isinstance(ref, dict) and not isinstance(value, dict):
            raise InvalidArgumentError(f"{what} must be a JSON object (the preset has {ref!r})")
        elif isinstance(ref, str) and not isinstance(value, str):
            raise InvalidArgumentError(f"{what} must be a string (the preset has {ref!r})")


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
    """Read a run directory's ``config.json``.

    Raises:
        CheckpointError: the folder holds no ``config.json``, or it is corrupt (the message names the file).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a training run: it has no {CONFIG_FILE} (runs are made by "
                              "`vantage train TASK --out RUN`; a new run takes no --resume)")
    try:
        return TrainConfig.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, CheckpointError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc}); restore it from a backup, or start a new run with "
                              "another --out") from exc


def _make_worker_env(env_id: str, **kwargs: Any) -> gym.Env:
    """Build one environment in a ``SubprocVecEnv`` worker, deaf to Ctrl-C.

    A terminal's Ctrl-C reaches every process of the job; the workers leave it to the main process, which
    finishes its update, writes a checkpoint and then closes them (:class:`agents.callbacks.StopOnInterrupt`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # as SB3's make_vec_env builds environments from an id: rgb_array rendering unless told otherwise
        return gym.make(env_id, **{"render_mode": "rgb_array", **kwargs})
    except TypeError:
        return gym.make(env_id, **kwargs)


def make_env(config: TrainConfig, n_envs: int | None = None, seed: int | None = None) -> VecEnv:
    """Vectorised training environments for ``config``."""
    if config.vec_env == "subproc":
        return make_vec_env(functools.partial(_make_worker_env, config.env_id), n_envs=n_envs or config.n_envs,
                            seed=config.seed if seed is None else seed, env_kwargs=dict(config.env_kwargs),
                            vec_env_cls=SubprocVecEnv)
    return make_vec_env(
        config.env_id,
        n_envs=n_envs or config.n_envs,
        seed=config.seed if seed is None else seed,
        env_kwargs=dict(config.env_kwargs),
        vec_env_cls=DummyVecEnv,
    )


def probe_env(config: TrainConfig) -> None:
    """Build one environment of ``config``, reset it and take one step: settings that fail only then fail here.

    Raises:
        InvalidArgumentError: the environment does not build, reset or step with these settings.
    """
    env = None
    stage = "build"
    try:
        env = gym.make(config.env_id, **config.env_kwargs)
        stage = "reset"
        env.reset(seed=config.seed)
        stage = "step"
        env.step(env.action_space.sample())
    except VantageError:
        raise
    except Exception as exc:
        raise InvalidArgumentError(f"{config.env_id} with settings {config.env_kwargs} fails to {stage}: "
                                   f"{type(exc).__name__}: {exc}") from exc
    finally:
        if env is not None:
            env.close()


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


def planned_steps(model: BaseAlgorithm, target: int, algo: str = "") -> tuple[int, str | None]:
    """Where training towards ``target`` steps really ends, and a line saying why when that is not ``target``.

    On-policy algorithms collect whole rollouts of ``n_steps x n_envs`` steps; off-policy ones step their
    environments ``train_freq`` times between updates. Either stops at the first boundary at or past ``target``.
    """
    start = int(model.num_timesteps)
    name = ALGO_NAMES.get(algo, type(model).__name__)
    if target <= start:
        return start, None
    if isinstance(model, OnPolicyAlgorithm):
        chunk = model.n_steps * model.n_envs
        what = f"{name} collects whole rollouts of {model.n_steps} x {model.n_envs} = {chunk} steps"
    elif isinstance(model, OffPolicyAlgorithm) and model.train_freq.unit == TrainFrequencyUnit.STEP:
        freq = model.train_freq.frequency
        chunk = freq * model.n_envs
        envs_text = "its environment" if model.n_envs == 1 else f"its {model.n_envs} environments"
        what = f"{name} steps {envs_text} {freq} times between updates ({chunk} steps)"
    else:
        return target, None
    final = start + math.ceil((target - start) / chunk) * chunk
    if final == target:
        return final, None
    if start == 0:
        return final, f"asked {target} steps; {what}, so it trains {final}"
    return final, f"asked {target} steps in all; {what}, so from {start} it trains to {final}"


def _check_new_run_folder(run_dir: Path) -> None:
    """A new run goes into a new or empty folder only; anything else is refused before anything is built."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise OutputExistsError(f"--out {run_dir} is a file; a run needs a new or empty folder")
    if (run_dir / CONFIG_FILE).is_file():
        raise OutputExistsError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another "
                                "--out for a new one")
    for identity, what in ARTEFACT_FILES.items():
        if (run_dir / identity).is_file():
            raise OutputExistsError(f"{run_dir} holds {what} ({identity}); a training run never writes into it: "
                                    "choose another --out")
    entries = sorted(p.name for p in run_dir.iterdir())
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise OutputExistsError(f"{run_dir} is not empty (it holds {shown}); a new run needs a new or empty folder: "
                                "choose another --out")


def _canonical(value: Any) -> Any:
    # Through JSON, as config.json went: tuples compare equal to the lists they became.
    return json.loads(json.dumps(value, sort_keys=True, default=str))


_UNSET = object()


def _lookup(config: TrainConfig, path: str) -> Any:
    head, _, key = path.partition(".")
    value = getattr(config, head)
    if key:
        return value.get(key, _UNSET) if isinstance(value, dict) else _UNSET
    return value


def _resumed_config(saved: TrainConfig, asked: TrainConfig, given: Mapping[str, str] | None,
                    run_dir: Path) -> TrainConfig:
    """The saved config with the asked step target; refuse any given setting that differs from the saved one."""
    if given is None:
        # A library call passes a whole config: every field but the step target must match the saved run.
        asked = copy.deepcopy(asked)
        if asked.preset is None:
            with contextlib.suppress(VantageError):
                asked.preset = get_task(asked.task).preset(asked.algo)
        given = {f.name: f.name for f in dataclasses.fields(TrainConfig)}
    saved = copy.deepcopy(saved)
    if saved.preset is None:  # a config written before presets were filled in: compare with the default
        with contextlib.suppress(VantageError):
            saved.preset = get_task(saved.task).preset(saved.algo)
    differences = []
    for path, label in given.items():
        if path == "steps":
            continue
        want, have = _lookup(asked, path), _lookup(saved, path)
        if want is _UNSET:
            continue
        if have is _UNSET or _canonical(want) != _canonical(have):
            shown = "not set" if have is _UNSET else repr(have)
            differences.append(f"{label} {want!r} (the run: {shown})")
    if differences:
        raise InvalidArgumentError(
            f"--resume continues the run in {run_dir} as it was started; these settings differ from it: "
            f"{'; '.join(differences)}. Leave them out to continue the run as saved in {run_dir / CONFIG_FILE}, or "
            "start a new run with another --out"
        )
    merged = saved
    if "steps" in given:
        merged.steps = asked.steps
    return merged


def _remove_unfinished_run(run_dir: Path, created_dir: bool) -> None:
    """Delete what a new run wrote before its first checkpoint (it held nothing before: see the folder check)."""
    for name in (CONFIG_FILE, "tb", CHECKPOINT_DIR, MODEL_FILE, SUMMARY_FILE):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)
    if created_dir:
        with contextlib.suppress(OSError):  # something else appeared in it meanwhile: leave it
            run_dir.rmdir()


def _summary(config: TrainConfig, model_steps: int, start_steps: int, wall: float, resumed: bool) -> dict[str, Any]:
    return {
        "task": config.task,
        "algo": config.algo,
        "asked_steps": int(config.steps),
        "num_timesteps": int(model_steps),
        "steps_this_session": int(model_steps - start_steps),
        "wall_time_s": round(wall, 2),
        "steps_per_s": round((model_steps - start_steps) / max(wall, 1e-9), 1),
        "resumed": resumed,
    }


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress_bar: bool = True, *,
          given: Mapping[str, str] | None = None, log: Callable[[str], None] = print,
          note: Callable[[str], None] | None = None, callbacks: Sequence[BaseCallback] = ()) -> dict[str, Any]:
    """Train (or resume) a run in ``run_dir`` until ``config.steps`` environment steps in all.

    Args:
        config: the run's settings. On resume the saved ``config.json`` decides; ``config`` may only repeat it,
            except for ``steps``, the total to reach.
        run_dir: run directory: new or empty for a new run.
        resume: continue from ``run_dir``'s latest checkpoint (from step 0 when it has none yet).
        progress_bar: show progress: SB3's bar on a terminal, otherwise a plain line every so often.
        given: on resume, the settings the caller chose explicitly, as config paths (``"algo"``,
            ``"env_kwargs.motion"``, ``"agent_overrides.gamma"``) mapped to how the user wrote them
            (``"--motion"``); only those are compared with the saved run, and ``steps`` is the target only when
            given. ``None``: every field of ``config`` is compared and ``config.steps`` is the target.
        log: where the lines about the plan, a resume and an interrupt go.
        note: told, as training goes, what an interrupt would leave behind (``scripts.options.note_kept``).
        callbacks: extra SB3 callbacks, run after the checkpoint callback.

    Returns:
        The training summary also written to ``train_summary.json`` (``steps_this_session`` 0 when there was
        nothing left to do).

    Raises:
        CheckpointError: ``resume`` in a folder without a run, or a corrupt checkpoint, config or replay buffer.
        InvalidArgumentError: a bad setting; on resume, a setting that differs from the saved run, or a step
            target below the steps already trained.
        OutputExistsError: a new run into a folder that is not empty.
        KeyboardInterrupt: after the first Ctrl-C, once the checkpoint is written.
    """
    run_dir = Path(run_dir)
    if resume:
        config = _resumed_config(load_config(run_dir), config, given, run_dir)
    else:
        _check_new_run_folder(run_dir)
        config = copy.deepcopy(config)
    config.validate()
    found = latest_checkpoint(run_dir) if resume else None
    steps_given = given is None or "steps" in given
    if found is not None:
        done = found[1].get("num_timesteps")
        # latest.json is written after its zip, so it never claims more steps than the zip holds.
        if isinstance(done, int) and config.steps <= done:
            return _nothing_to_do(config, run_dir, done, steps_given, log)
    torch.set_num_threads(config.torch_threads)

    # The environments and the agent are built (and an environment stepped) before anything is written, so a
    # bad setting leaves no half-made run behind that the corrected command would then refuse.
    env = make_env(config)
    try:
        if found is not None:
            model = load_checkpoint(algo_class(config.algo), run_dir, env, log=log)
            model.tensorboard_log = str(run_dir / "tb")
            if config.steps <= model.num_timesteps:
                env.close()
                return _nothing_to_do(config, run_dir, int(model.num_timesteps), steps_given, log)
            restart_episodes(model, restart_seed(config.seed, model.num_timesteps))
        else:
            probe_env(config)
            model = build_agent(config, env, run_dir)
    except BaseException:
        env.close()
        raise
    start_steps = int(model.num_timesteps)
    _, plan = planned_steps(model, config.steps, config.algo)
    if found is not None:
        log(f"resuming {run_dir} at {start_steps} steps (its checkpoint); training to {config.steps}")
    elif resume:
        log(f"{run_dir} has no checkpoint yet: starting its run from step 0 as saved in {CONFIG_FILE}")
    if plan:
        log(plan)

    created_dir = not run_dir.exists()
    kept = note or (lambda message: None)

    def saved(steps: int) -> None:
        kept(f"the checkpoint at {steps} steps in {run_dir / CHECKPOINT_DIR}; continue with "
             f"`vantage train {config.task} --resume --out {run_dir}`")

    checkpoint = AtomicCheckpointCallback(run_dir, config.checkpoint_every, config.save_replay_buffer,
                                          saved_at=start_steps if found is not None else None, on_save=saved)
    extra: list[BaseCallback] = [checkpoint]
    use_bar = progress_bar and sys.stdout.isatty()
    if progress_bar and not use_bar:
        extra.append(ProgressLogCallback(config.steps, log))
    extra.extend(callbacks)
    started = time.perf_counter()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / CONFIG_FILE, config.to_json())
        if found is not None:
            saved(start_steps)
        elif not resume:
            kept(f"nothing: {run_dir} had no checkpoint yet and is removed, so the same command can run again")
        with StopOnInterrupt(log) as stop:
            checkpoint.stop = stop
            model.learn(total_timesteps=config.steps - start_steps, callback=extra, progress_bar=use_bar,
                        reset_num_timesteps=found is None, tb_log_name="run")
        if checkpoint.stopped:
            log(f"stopped at {checkpoint.saved_at} steps: checkpoint in {run_dir / CHECKPOINT_DIR}"
                + ("" if note else f"; continue with --resume --out {run_dir}"))
            raise KeyboardInterrupt
        checkpoint.save()  # learn returns between updates: the final checkpoint is as exact as any other
    except BaseException:
        if not resume and latest_checkpoint(run_dir) is None:
            # Nothing worth keeping was written: leave the folder as the command found it.
            _remove_unfinished_run(run_dir, created_dir)
        raise
    finally:
        env.close()
    wall = time.perf_counter() - started
    save_model_atomic(model, run_dir / MODEL_FILE)
    summary = _summary(config, int(model.num_timesteps), start_steps, wall, resume)
    atomic_write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def _nothing_to_do(config: TrainConfig, run_dir: Path, done: int, steps_given: bool,
                   log: Callable[[str], None]) -> dict[str, Any]:
    """A resume whose target is already reached: say so, refuse an explicit target below it, finish ``model.zip``."""
    if steps_given and config.steps < done:
        raise InvalidArgumentError(
            f"--steps {config.steps} is fewer than the {done} steps {run_dir} has already trained (--steps is the "
            f"total, not the steps to add); pass --steps above {done} to train further"
        )
    if not (run_dir / MODEL_FILE).is_file() or _final_timesteps(run_dir) != done:
        # Stopped after its last checkpoint but before the final model: the checkpoint is the final model.
        copy_checkpoint_model(run_dir, run_dir / MODEL_FILE)
        atomic_write_json(run_dir / SUMMARY_FILE, _summary(config, done, done, 0.0, True))
    log(f"nothing to do: {run_dir} has already trained {done} steps (asked: {config.steps}); pass --steps above "
        f"{done} to train further")
    summary = _summary(config, done, done, 0.0, True)
    summary["nothing_to_do"] = True
    return summary


def load_agent(run_dir: Path) -> tuple[TrainConfig, BaseAlgorithm]:
    """A run's config and its most trained agent: the final model, or the latest checkpoint when that is newer.

    A resumed run that is interrupted leaves the previous session's final model beside a checkpoint that has
    trained further; the checkpoint wins then. Nothing in ``run_dir`` is written (it may be a shipped model).
    """
    config = load_config(run_dir)
    path = Path(run_dir) / MODEL_FILE
    found = latest_checkpoint(run_dir)
    if not path.is_file() and found is None:
        raise CheckpointError(f"{run_dir} has neither {MODEL_FILE} nor a checkpoint: it has not finished a "
                              "checkpoint interval yet")
    if found is not None and (not path.is_file() or found[1].get("num_timesteps", 0) > _final_timesteps(run_dir)):
        path = found[0]
    return config, load_model(algo_class(config.algo), path, device="cpu")


def _final_timesteps(run_dir: Path) -> int:
    """Steps of the final model, from the summary written beside it (0 when unknown)."""
    summary = Path(run_dir) / SUMMARY_FILE
    try:
        return int(json.loads(summary.read_text())["num_timesteps"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def make_eval_env(config: TrainConfig, **overrides: Any) -> gym.Env:
    """One evaluation environment with the run's settings and ``overrides`` (e.g. ``motion``)."""
    return gym.make(config.env_id, **{**config.env_kwargs, **overrides})


def seeds_for(seed: int, n: int) -> list[int]:
    """``n`` evaluation episode seeds derived from ``seed``, apart from training seeds (which are small)."""
    return derive_seeds(seed, n, EVAL_STREAM)
