"""``vantage train`` and ``vantage eval``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agents.training import ALGOS, TASKS, TrainConfig
from scripts.options import parse_key_values


@click.command("train")
@click.argument("task", type=click.Choice(sorted(TASKS)))
@click.option("--algo", type=click.Choice(ALGOS), default="ppo", show_default=True)
@click.option("--reward", type=click.Choice(["td", "negative", "hint"]), default="td", show_default=True)
@click.option("--action-mode", type=click.Choice(["discrete", "continuous"]), default="discrete", show_default=True)
@click.option("--motion", type=click.Choice(["constant", "switching", "obstacles"]), default="constant",
              show_default=True)
@click.option("--backend", type=click.Choice(["mujoco", "webots"]), default="mujoco", show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Total environment steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-envs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--vec-env", type=click.Choice(["dummy", "subproc"]), default="dummy", show_default=True)
@click.option("--preset", default="paper", show_default=True, help="Named agent preset.")
@click.option("--gamma", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Override the preset's discount.")
@click.option("--normalize-rewards/--no-normalize-rewards", default=False, show_default=True,
              help="Min-max normalise rewards per episode before each PPO update (the paper's option).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any preset entry.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train_cmd(task: str, algo: str, reward: str, action_mode: str, motion: str, backend: str, steps: int,
              seed: int, n_envs: int, vec_env: str, preset: str, gamma: float | None, normalize_rewards: bool,
              checkpoint_every: int, overrides: tuple[str, ...], out: Path, resume: bool, progress: bool) -> None:
    """Train an agent on TASK; results, checkpoints and TensorBoard logs go to --out."""
    from agents.training import train

    agent_overrides = parse_key_values(overrides, "--set")
    if gamma is not None:
        agent_overrides["gamma"] = gamma
    config = TrainConfig(
        task=task, algo=algo, steps=steps, seed=seed, n_envs=n_envs, vec_env=vec_env, preset=preset,
        normalize_rewards=normalize_rewards, checkpoint_every=checkpoint_every,
        env_kwargs={"reward": reward, "action_mode": action_mode, "motion": motion, "backend": backend},
        agent_overrides=agent_overrides,
    )
    summary = train(config, out, resume=resume, progress_bar=progress)
    click.echo(
        f"trained {summary['num_timesteps']} steps in {summary['wall_time_s']:.0f} s "
        f"({summary['steps_per_s']:.0f} steps/s) -> {out}"
    )


@click.command("eval")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--episodes", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed from which episode seeds derive.")
@click.option("--motion", type=click.Choice(["constant", "switching", "obstacles"]), default=None,
              help="Target motion (default: the run's).")
@click.option("--policy", "policy_name", type=click.Choice(["agent", "static"]), default="agent",
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--video", type=click.Path(path_type=Path), default=None, help="Write the first episode as MP4/GIF.")
def eval_cmd(run_dir: Path, episodes: int, seed: int, motion: str | None, policy_name: str, as_json: bool,
             video: Path | None) -> None:
    """Evaluate RUN_DIR's agent (or a baseline) on unseen seeds; writes eval_<policy>_<motion>.json there."""
    from agents.checkpoints import atomic_write_json
    from agents.evaluation import format_table, run_episodes
    from agents.training import load_agent, load_config, make_eval_env, seeds_for
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
