"""``vantage train`` and ``vantage eval``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agents.training import ALGOS, DEFAULT_PRESETS, TASKS, TrainConfig
from scripts.options import parse_key_values


@click.command("train")
@click.argument("task", type=click.Choice(sorted(TASKS)))
@click.option("--algo", type=click.Choice(ALGOS), default="ppo", show_default=True)
@click.option("--reward", type=click.Choice(["td", "negative", "hint", "shaped", "paper"]), default=None,
              help="Reward scheme: tracking td (default) | negative | hint; face-recognition shaped (default) | paper.")
@click.option("--action-mode", type=click.Choice(["discrete", "continuous"]), default=None,
              help="tracking: discrete (default) or continuous.")
@click.option("--motion", type=click.Choice(["constant", "switching", "obstacles"]), default=None,
              help="tracking: target motion (default constant).")
@click.option("--action-set", type=click.Choice(["toolkit", "paper"]), default=None,
              help="face-recognition: toolkit (10 actions, default) or paper (5).")
@click.option("--backend", type=click.Choice(["mujoco", "webots"]), default="mujoco", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Total environment steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-envs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--vec-env", type=click.Choice(["dummy", "subproc"]), default="dummy", show_default=True)
@click.option("--preset", default=None,
              help="Named agent preset (default: tracking paper, face-recognition toolkit; face-recognition also "
                   "has paper and cpu).")
@click.option("--gamma", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Override the preset's discount.")
@click.option("--normalize-rewards/--no-normalize-rewards", default=False, show_default=True,
              help="Min-max normalise rewards per episode before each PPO update (the paper's option).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--max-episode-steps", type=click.IntRange(min=1), default=None,
              help="Truncate training episodes after this many steps (default: the task's registered limit, "
                   "1000 for tracking, 2000 for face recognition).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any preset entry.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train_cmd(task: str, algo: str, reward: str | None, action_mode: str | None, motion: str | None,
              action_set: str | None, backend: str, steps: int, seed: int, n_envs: int, vec_env: str,
              preset: str | None, gamma: float | None, normalize_rewards: bool, checkpoint_every: int,
              max_episode_steps: int | None, overrides: tuple[str, ...], out: Path, resume: bool,
              progress: bool) -> None:
    """Train an agent on TASK; results, checkpoints and TensorBoard logs go to --out."""
    from agents.training import task_env_kwargs, train
    from envs.errors import InvalidArgumentError

    agent_overrides = parse_key_values(overrides, "--set")
    if gamma is not None:
        agent_overrides["gamma"] = gamma
    try:
        env_kwargs = task_env_kwargs(task, backend, reward=reward, action_mode=action_mode, motion=motion,
                                     action_set=action_set)
    except InvalidArgumentError as exc:
        raise click.UsageError(str(exc)) from exc
    if max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = max_episode_steps  # gymnasium.make's own TimeLimit argument
    config = TrainConfig(
        task=task, algo=algo, steps=steps, seed=seed, n_envs=n_envs, vec_env=vec_env,
        preset=preset or DEFAULT_PRESETS[task], normalize_rewards=normalize_rewards,
        checkpoint_every=checkpoint_every, env_kwargs=env_kwargs, agent_overrides=agent_overrides,
    )
    summary = train(config, out, resume=resume, progress_bar=progress)
    click.echo(
        f"trained {summary['num_timesteps']} steps in {summary['wall_time_s']:.0f} s "
        f"({summary['steps_per_s']:.0f} steps/s) -> {out}"
    )


@click.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--episodes", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed from which episode seeds derive.")
@click.option("--motion", type=click.Choice(["constant", "switching", "obstacles"]), default=None,
              help="Target motion (default: the run's).")
@click.option("--policy", "policy_name", type=click.Choice(["agent", "static", "rule"]), default="agent",
              show_default=True, help="rule: face-recognition only.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="face-recognition baselines given a task name instead of a run: folder for the JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--video", type=click.Path(path_type=Path), default=None, help="Write the first episode as MP4/GIF.")
def eval_cmd(run_dir: Path, episodes: int, seed: int, motion: str | None, policy_name: str, out: Path | None,
             as_json: bool, video: Path | None) -> None:
    """Evaluate RUN_DIR's agent (or a baseline) on unseen seeds; writes eval_<policy>_<motion>.json there.

    For face recognition RUN_DIR may also be the task name (``vantage eval face-recognition --policy rule``):
    baselines need no trained run.
    """
    if (str(run_dir) in TASKS and not run_dir.is_dir()) or _is_face_run(run_dir):
        from scripts.bench_face_recognition import eval_face

        eval_face(run_dir, episodes, seed, policy_name, out, as_json, video)
        return
    if not run_dir.is_dir():
        raise click.BadParameter(f"{run_dir} is not a run directory", param_hint="RUN_DIR")
    if policy_name == "rule":
        raise click.BadParameter("the rule-based baseline exists for face-recognition only", param_hint="--policy")
    from agents.evaluation import format_table, run_episodes
    from agents.training import load_agent, load_config, make_eval_env, seeds_for
    from common.io import atomic_write_json
    from envs.baselines import StaticPolicy

    config = load_config(run_dir)
    overrides = {"motion": motion} if motion else {}
    env = make_eval_env(config, render_mode="rgb_array" if video else None, **overrides)
    if policy_name == "static":
        policy = StaticPolicy(env.action_space)
    else:
        _, policy = load_agent(run_dir)
    frames: list = [] if video else None  # type: ignore[assignment]
    result = run_episodes(policy, env, seeds_for(seed, episodes), name=policy_name, progress=not as_json,
                          frames=frames)
    env.close()
    result.settings = {"motion": motion or config.env_kwargs.get("motion", "constant"), "seed": seed,
                       "env_kwargs": config.env_kwargs}
    payload = result.to_json()
    atomic_write_json(Path(run_dir) / f"eval_{policy_name}_{result.settings['motion']}.json", payload)
    if video and frames:
        from agents.media import write_video

        write_video(video, frames, fps=20)
    if as_json:
        click.echo(json.dumps({k: v for k, v in payload.items() if k != "per_episode"}, indent=2))
    else:
        click.echo(format_table([result]))


def _is_face_run(run_dir: Path) -> bool:
    config = Path(run_dir) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("task") == "face-recognition"
