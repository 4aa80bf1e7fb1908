"""Evaluation: run a policy (trained agent or baseline) for seeded episodes, summarised the task's way.

The runner knows nothing about any task: what an episode records and how episodes are summarised comes from
the task's :class:`envs.tasks.base.EpisodeEvaluator` (named in its spec, :data:`envs.specs.TASKS`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from envs.tasks.base import EpisodeEvaluator


@dataclass
class Episode:
    """One episode's outcome: its seed, length, return, the task's figures and where the time went."""

    seed: int
    steps: int
    return_: float
    metrics: dict[str, Any]
    policy_seconds: float = 0.0
    env_seconds: float = 0.0
    trace: list[float] = field(default_factory=list, repr=False)
    """Per-step values of the evaluator's ``trace_key`` (reset included), when asked for."""

    def record(self) -> dict[str, Any]:
        """The JSON record of the episode (timings left out: they are not reproducible)."""
        return {"seed": self.seed, "steps": self.steps, "return_": self.return_, **self.metrics}


def run_episode(policy: Any, env: gym.Env, seed: int, evaluator: EpisodeEvaluator, *,
                options: Mapping[str, Any] | None = None, max_steps: int | None = None, deterministic: bool = True,
                frames: list[np.ndarray] | None = None, trace: bool = False) -> Episode:
    """Run ``policy`` for one episode from ``env.reset(seed=seed, options=options)``.

    The episode ends when the environment terminates or truncates, after ``max_steps``, or once a policy that
    has nothing more to do (``policy.finished``) has taken the step its task counts as final
    (:meth:`EpisodeEvaluator.done_when_finished`).

    Args:
        policy: anything with SB3's ``predict(obs, deterministic=...) -> (action, state)``; a ``reset()`` is
            called after the environment's.
        env: the environment.
        seed: the reset seed.
        evaluator: the task's evaluator.
        options: reset options.
        max_steps: step cap.
        deterministic: ``False`` samples a learned policy's actions; torch's generator is seeded with ``seed``
            first, so a sampled episode repeats like a deterministic one.
        frames: if given, receives ``env.render()`` after the reset and after every step.
        trace: keep the per-step values of ``evaluator.trace_key``.
    """
    if not deterministic:
        import torch

        torch.manual_seed(seed)
    obs, info = env.reset(seed=seed, options=dict(options) if options else None)
    if frames is not None:
        frames.append(env.render())
    if hasattr(policy, "reset"):
        policy.reset()
    evaluator.start(info)
    key = evaluator.trace_key if trace else None
    values = [float(info[key])] if key else []
    total, steps, policy_s, env_s = 0.0, 0, 0.0, 0.0
    done = False
    while not done and (max_steps is None or steps < max_steps):
        t0 = time.perf_counter()
        action, _ = policy.predict(obs, deterministic=deterministic)
        t1 = time.perf_counter()
        obs, reward, terminated, truncated, info = env.step(action)
        env_s += time.perf_counter() - t1
        policy_s += t1 - t0
        steps += 1
        total += float(reward)
        evaluator.step(info)
        if key:
            values.append(float(info[key]))
        if frames is not None:
            frames.append(env.render())
        done = terminated or truncated or (bool(getattr(policy, "finished", False))
                                           and evaluator.done_when_finished(info))
    return Episode(seed, steps, total, evaluator.finish(), policy_s, env_s, values)


@dataclass
class EvalResult:
    """Episodes of one policy and their summary."""

    policy: str
    summary: dict[str, Any]
    episodes: list[Episode] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Summary, episode count, settings and every episode's record."""
        return {"policy": self.policy, **self.summary, "episodes": len(self.episodes), "settings": self.settings,
                "per_episode": [e.record() for e in self.episodes]}

    def row(self) -> tuple[str, dict[str, Any]]:
        """``(policy, summary with the episode count)`` for :meth:`EpisodeEvaluator.format_table`."""
        return self.policy, {**self.summary, "episodes": len(self.episodes)}


def evaluate(policy: Any, env: gym.Env, seeds: Sequence[int], evaluator: EpisodeEvaluator, *, name: str = "agent",
             options: Mapping[str, Any] | None = None, max_steps: int | None = None, deterministic: bool = True,
             progress: bool = False, frames: list[np.ndarray] | None = None, trace: bool = False) -> EvalResult:
    """One episode per seed; ``frames`` and ``trace`` are collected for the first episode only."""
    episodes = []
    for i, seed in enumerate(tqdm(seeds, desc=f"eval {name}", disable=not progress, leave=False)):
        episodes.append(run_episode(policy, env, seed, evaluator, options=options, max_steps=max_steps,
                                    deterministic=deterministic, frames=frames if i == 0 else None,
                                    trace=trace and i == 0))
    return EvalResult(name, evaluator.summarize([e.record() for e in episodes]), episodes)


def speed_figures(episodes: Sequence[Episode]) -> dict[str, float]:
    """Policy-only FPS against the whole pipeline's (simulation, rendering, perception and policy)."""
    steps = sum(e.steps for e in episodes)
    policy_s = sum(e.policy_seconds for e in episodes)
    env_s = sum(e.env_seconds for e in episodes)
    return {"steps": steps, "policy_fps": round(steps / max(policy_s, 1e-9), 1),
            "pipeline_fps": round(steps / max(policy_s + env_s, 1e-9), 1)}


def _free_name(folder: Path, stem: str, suffix: str) -> str:
    """``stem + suffix`` if no such file is in ``folder``, else the first free ``stem_2``, ``stem_3``... name."""
    name, n = f"{stem}{suffix}", 1
    while (folder / name).exists():
        n += 1
        name = f"{stem}_{n}{suffix}"
    return name


def _check_output(folder: Path, names: Sequence[str], overwrite: bool) -> None:
    """The checks of :func:`common.io.prepare_output` without its side effect (it creates the folder)."""
    from common.errors import OutputExistsError
    from common.io import prepare_output

    if folder.exists():
        prepare_output(folder, names, overwrite=overwrite)
        return
    existing = next((parent for parent in folder.parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputExistsError(f"output folder {folder}: {existing} is a file; choose another folder")


def evaluate_target(target: str | Path, policy: str = "agent", *, episodes: int = 20, seed: int = 0,
                    overrides: Mapping[str, Any] | None = None, stochastic: bool = False,
                    max_steps: int | None = None, out: str | Path | None = None, video: str | Path | None = None,
                    progress: bool = False, overwrite: bool = False) -> tuple[EvalResult, EpisodeEvaluator, Path]:
    """``vantage eval``: a run's agent, or one of its task's baselines, on unseen seeded episodes.

    Every output is checked before the first episode runs and written atomically after the last one: nothing is
    replaced without ``overwrite``, and nothing is written into a run, a model or a dataset folder.

    Args:
        target: a training run directory, or a task name (baselines only).
        policy: ``"agent"`` or a baseline of the task (its spec's ``baselines``).
        episodes: number of episodes; their seeds derive from ``seed`` (:func:`agents.training.seeds_for`).
        seed: seed of the episode seeds.
        overrides: environment settings replacing the run's (e.g. ``{"motion": "switching"}``).
        stochastic: sample the agent's actions instead of taking the most likely one.
        max_steps: step cap per episode (default: the task's evaluation cap).
        out: folder for ``eval_<policy>[_<overrides>].json``; an existing file there is an error unless
            ``overwrite``. Default ``runs/eval/<run or task name>``, where an existing file is kept and the new
            result numbered (``eval_agent_2.json``) unless ``overwrite``. Results never go into the run directory,
            which may be a shipped, read-only model.
        video: write the first episode (overview beside the agent's view) to this ``.mp4``/``.gif``; an existing
            file is an error unless ``overwrite``.
        progress: show a progress bar over episodes.
        overwrite: replace existing result files.

    Returns:
        The result, the task's evaluator (for :meth:`~EpisodeEvaluator.format_table`) and the JSON's path.

    Raises:
        InvalidArgumentError: ``target`` is neither a run nor a task, the agent is asked of a task name, or the
            video path does not end in ``.mp4``/``.gif``.
        UnknownNameError: an unknown baseline.
        OutputExistsError: an output file exists (without ``overwrite``), or an output folder is a run, a model
            or a dataset.
    """
    from agents.training import load_agent, load_config, seeds_for
    from common.io import atomic_path, atomic_write_json, prepare_output
    from envs.errors import InvalidArgumentError, check_choice
    from envs.specs import TASKS, get_task

    target = Path(target)
    overrides = dict(overrides or {})
    if target.is_dir():
        config = load_config(target)
        spec, env_kwargs = config.spec, {**config.env_kwargs, **overrides}
    elif str(target) in TASKS:
        config, spec = None, get_task(str(target))
        env_kwargs = {**spec.defaults(), **overrides}
    else:
        raise InvalidArgumentError(f"{target} is neither a run directory nor a task name; tasks: {sorted(TASKS)}")
    check_choice(f"{spec.name} policy", policy, ("agent", *spec.baselines))
    if policy == "agent" and config is None:
        raise InvalidArgumentError(f"{target} is a task name, not a run directory: policy agent needs a run "
                                   f"(`vantage train {spec.name} --out RUN`); baselines: {sorted(spec.baselines)}")
    if stochastic and policy != "agent":
        raise InvalidArgumentError("stochastic=True samples a trained agent's actions; baselines are rules")

    # Where the results go, checked before any episode runs: a refused command has spent no time.
    folder = Path(out) if out is not None else Path("runs") / "eval" / (target.name if config else spec.name)
    stem = f"eval_{policy}" + "".join(f"_{k}-{v}" for k, v in sorted(overrides.items()))
    # The default folder keeps every earlier result: a new one takes the next free name there.
    name = _free_name(folder, stem, ".json") if out is None and not overwrite and folder.is_dir() else f"{stem}.json"
    _check_output(folder, [name], overwrite)
    if video is not None:
        video = Path(video)
        if video.suffix.lower() not in (".mp4", ".gif"):
            raise InvalidArgumentError(f"--video {video} must end in .mp4 or .gif")
        _check_output(video.parent, [video.name], overwrite)

    import envs  # noqa: F401  (registers the environments)

    env = gym.make(spec.env_id, render_mode="rgb_array" if video else None, **env_kwargs)
    frames: list[np.ndarray] | None = [] if video else None
    evaluator = spec.make_evaluator()
    try:
        agent = load_agent(target)[1] if policy == "agent" else spec.make_baseline(policy, env)
        result = evaluate(agent, env, seeds_for(seed, episodes), evaluator, name=policy,
                          max_steps=max_steps or spec.eval_max_steps, deterministic=not stochastic,
                          progress=progress, frames=frames)
    finally:
        env.close()
    result.settings = {"task": spec.name, "seed": seed, "env_kwargs": env_kwargs, "overrides": overrides,
                       "actions": "sampled" if stochastic else "most likely"}
    path = atomic_write_json(prepare_output(folder, [name], overwrite=overwrite) / name, result.to_json())
    if video is not None and frames:
        from agents.media import write_video

        prepare_output(video.parent, [video.name], overwrite=overwrite)
        with atomic_path(video) as tmp:
            write_video(tmp, frames, fps=int(env.metadata.get("render_fps", 20)))
    return result, evaluator, path
