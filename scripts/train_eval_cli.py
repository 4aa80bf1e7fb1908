"""``vantage train`` and ``vantage eval``, for every task in the task specs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from agents.training import ALGOS
from envs.specs import TASKS
from scripts.options import note_kept, overwrite_option, parse_key_values, task_options

_BASELINES = sorted({name for spec in TASKS.values() for name in spec.baselines})
#: ``vantage train`` options stored in config.json as one field each: parameter name -> field.
_FIELD_OPTIONS = {"algo": "algo", "seed": "seed", "n_envs": "n_envs", "vec_env": "vec_env", "preset": "preset",
                  "normalize_rewards": "normalize_rewards", "checkpoint_every": "checkpoint_every",
                  "save_replay_buffer": "save_replay_buffer", "steps": "steps"}


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or through the environment)."""
    return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _flag(ctx: click.Context, name: str) -> str:
    """How option ``name`` is spelled on the command line (its first long form)."""
    param = next(p for p in ctx.command.params if p.name == name)
    return max(param.opts, key=len) if isinstance(param, click.Option) else name.upper()


@click.command("train")
@click.argument("task", type=click.Choice(sorted(TASKS)))
@click.option("--algo", type=click.Choice(ALGOS), default="ppo", show_default=True)
@task_options
@click.option("--env", "env_settings", multiple=True, metavar="KEY=VALUE",
              help="Any other environment setting (JSON value), e.g. n_distractors=2.")
@click.option("--backend", type=click.Choice(["mujoco", "webots"]), default="mujoco", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Total environment steps (with --resume: the total to reach, not the steps to add). PPO trains "
                   "whole rollouts and Rainbow whole train_freq chunks, so the count rounds up; the command says so.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-envs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--vec-env", type=click.Choice(["dummy", "subproc"]), default="dummy", show_default=True)
@click.option("--preset", default=None,
              help="Agent preset (default: the task's for the algorithm: "
                   + "; ".join(f"{s.name} {', '.join(f'{a} {p}' for a, p in s.presets.items())}"
                               for s in TASKS.values()) + ").")
@click.option("--gamma", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Override the preset's discount.")
@click.option("--normalize-rewards/--no-normalize-rewards", default=False, show_default=True,
              help="Min-max normalise rewards per episode before each PPO update (the paper's option).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Steps between checkpoints (taken at the next update boundary; Ctrl-C also writes one).")
@click.option("--save-replay-buffer/--no-save-replay-buffer", default=True, show_default=True,
              help="Keep Rainbow's replay buffer with each checkpoint so --resume continues exactly (it can be "
                   "large: buffer_size transitions of two observations).")
@click.option("--max-episode-steps", type=click.IntRange(min=1), default=None,
              help="Truncate training episodes after this many steps (default: the task's registered limit).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any preset entry.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Run directory: new or empty for a new run.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its latest checkpoint, with its saved settings; an option given "
                   "differently is an error.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="A progress bar on a terminal, else a line every tenth of the run or 30 s.")
@click.pass_context
def train_cmd(ctx: click.Context, task: str, algo: str, task_options: dict[str, str], env_settings: tuple[str, ...],
              backend: str, steps: int, seed: int, n_envs: int, vec_env: str, preset: str | None, gamma: float | None,
              normalize_rewards: bool, checkpoint_every: int, save_replay_buffer: bool, max_episode_steps: int | None,
              overrides: tuple[str, ...], out: Path, resume: bool, progress: bool) -> None:
    """Train an agent on TASK; results, checkpoints and TensorBoard logs go to --out.

    The first Ctrl-C writes a checkpoint at the end of the current update and stops; `--resume` continues.
    """
    from agents.training import TrainConfig, task_env_kwargs, train

    agent_overrides = parse_key_values(overrides, "--set")
    if gamma is not None:
        agent_overrides["gamma"] = gamma
    extra_env = parse_key_values(env_settings, "--env")
    env_kwargs = task_env_kwargs(task, backend, **task_options)
    env_kwargs.update(extra_env)
    if max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = max_episode_steps  # gymnasium.make's own TimeLimit argument
    config = TrainConfig(
        task=task, algo=algo, steps=steps, seed=seed, n_envs=n_envs, vec_env=vec_env, preset=preset,
        normalize_rewards=normalize_rewards, checkpoint_every=checkpoint_every, env_kwargs=env_kwargs,
        agent_overrides=agent_overrides, save_replay_buffer=save_replay_buffer,
    )
    # On --resume only what the user chose is compared with the saved run; everything else comes from it.
    given = {"task": "TASK"}
    given.update({field: _flag(ctx, name) for name, field in _FIELD_OPTIONS.items() if _given(ctx, name)})
    given.update({f"env_kwargs.{key}": f"--{key.replace('_', '-')}" for key in task_options})
    if _given(ctx, "backend"):
        given["env_kwargs.backend"] = "--backend"
    if max_episode_steps is not None:
        given["env_kwargs.max_episode_steps"] = "--max-episode-steps"
    given.update({f"env_kwargs.{key}": f"--env {key}" for key in extra_env})
    given.update({f"agent_overrides.{key}": f"--set {key}" for key in parse_key_values(overrides, "--set")})
    if gamma is not None:
        given["agent_overrides.gamma"] = "--gamma"
    summary = train(config, out, resume=resume, progress_bar=progress, given=given, log=click.echo, note=note_kept)
    if summary.get("nothing_to_do"):
        return
    asked = summary["asked_steps"]
    rounded = f" (asked {asked})" if asked != summary["num_timesteps"] else ""
    session = (f", {summary['steps_this_session']} this session" if summary["resumed"] else "")
    click.echo(
        f"trained {summary['num_timesteps']} steps{rounded}{session} in {summary['wall_time_s']:.0f} s "
        f"({summary['steps_per_s']:.0f} steps/s) -> {out}"
    )


@click.command("eval")
@click.argument("target")
@click.option("--episodes", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed from which episode seeds derive.")
@click.option("--policy", "policy_name", type=click.Choice(["agent", *_BASELINES]), default="agent",
              show_default=True, help="The run's agent, or a baseline: "
              + "; ".join(f"{s.name} {', '.join(s.baselines)}" for s in TASKS.values()) + ".")
@task_options
@click.option("--env", "env_settings", multiple=True, metavar="KEY=VALUE",
              help="Any other environment setting to change (JSON value).")
@click.option("--stochastic", is_flag=True, help="Sample the agent's actions instead of taking the most likely one "
              "(seeded per episode).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Step cap per episode (default: the task's evaluation cap).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for the JSON (default: runs/eval/<run or task name>, where an existing result is kept "
                   "and the new one numbered).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--video", type=click.Path(path_type=Path), default=None, help="Write the first episode as MP4/GIF.")
@overwrite_option("the JSON in --out and the --video file",
                  "Without --out nothing is replaced: a new result in the default folder is numbered.")
def eval_cmd(target: str, episodes: int, seed: int, policy_name: str, task_options: dict[str, Any],
             env_settings: tuple[str, ...], stochastic: bool, max_steps: int | None, out: Path | None,
             as_json: bool, video: Path | None, overwrite: bool) -> None:
    """Evaluate TARGET's agent (or a baseline) on unseen seeded episodes.

    TARGET is a training run directory, or a task name for its baselines (``vantage eval face-recognition
    --policy rule``). Results never go into the run directory.
    """
    from agents.evaluation import evaluate_target

    overrides = {**task_options, **parse_key_values(env_settings, "--env")}
    result, evaluator, path = evaluate_target(target, policy_name, episodes=episodes, seed=seed, overrides=overrides,
                                              stochastic=stochastic, max_steps=max_steps, out=out, video=video,
                                              progress=not as_json, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.to_json().items() if k != "per_episode"}, indent=2))
    else:
        click.echo(evaluator.format_table([result.row()]))
        click.echo(f"per-episode results in {path}" + (f"; video in {video}" if video else ""))
