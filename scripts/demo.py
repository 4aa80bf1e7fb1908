"""``vantage demo``: active vs static tracking with the shipped PPO tracker, ending in a table, a plot and a video.

By default it evaluates the checkpoint shipped in ``assets/models/tracking_ppo_td`` (trained by the command
in ``assets/models/README.md``); ``--train STEPS`` trains a fresh agent first instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

SHIPPED_RUN = Path(__file__).resolve().parents[1] / "assets" / "models" / "tracking_ppo_td"


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--episodes", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--run", "run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Evaluate this run directory instead of the shipped checkpoint.")
@click.option("--train", "train_steps", type=click.IntRange(min=1), default=None,
              help="Train a fresh PPO tracker for this many steps first (instead of the shipped checkpoint).")
def demo(out: Path, episodes: int, seed: int, run_dir: Path | None, train_steps: int | None) -> None:
    """Active (PPO, TD reward) vs static tracking on the embedded MuJoCo backend."""
    import numpy as np

    from agents.evaluation import format_table, run_episodes
    from agents.media import write_video
    from agents.training import TrainConfig, load_agent, make_eval_env, seeds_for, train
    from common.io import atomic_write_json
    from envs.baselines import StaticPolicy

    out.mkdir(parents=True, exist_ok=True)
    if train_steps is not None:
        run_dir = out / "run"
        click.echo(f"training a PPO tracker (TD reward, discrete) for {train_steps} steps -> {run_dir}")
        train(TrainConfig(steps=train_steps, env_kwargs={"reward": "td", "action_mode": "discrete"}), run_dir,
              resume=(run_dir / "config.json").exists())
        source = f"freshly trained for {train_steps} steps"
    else:
        run_dir = run_dir or SHIPPED_RUN
        source = f"checkpoint {run_dir}"
    config, agent = load_agent(run_dir)
    click.echo(f"evaluating {source} against a static tracker over {episodes} unseen episodes per motion")

    results, traces = [], {}
    seeds = seeds_for(seed, episodes)
    for motion in ("constant", "switching"):
        for name, policy_of in (("active (PPO)", lambda env: agent), ("static", StaticPolicy)):
            env = make_eval_env(config, motion=motion, render_mode="rgb_array")
            frames: list[np.ndarray] | None = [] if (motion == "constant" and name != "static") else None
            result = run_episodes(policy_of(env.action_space), env, seeds, name=f"{name}, {motion}", progress=True,
                                  frames=frames)
            env.close()
            results.append(result)
            if frames:
                write_video(out / "tracking_active.mp4", frames, fps=20)
                write_video(out / "tracking_active.gif", frames[:300:2], fps=10)
            traces[(name, motion)] = result.episodes[0].distance_errors

    table = format_table(results)
    (out / "results.md").write_text(table + "\n")
    atomic_write_json(out / "results.json", {"source": source, "results": [r.to_json() for r in results]})
    _plot(results, traces, out / "tracking.png")
    click.echo("\n" + table + "\n")
    click.echo(f"Wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'tracking.png'}, "
               f"{out / 'tracking_active.mp4'} (and a short .gif).")
    active = next(r for r in results if r.policy.startswith("active") and r.policy.endswith("constant"))
    click.echo(json.dumps({"active_constant_distance_error_m": round(active.distance_error_mean, 4),
                           "active_constant_steps_mean": active.steps_mean}))


def _plot(results, traces, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for (name, motion), errors in traces.items():
        ax1.plot(errors, label=f"{name}, {motion}", lw=1.2, ls="-" if motion == "constant" else "--")
    ax1.set_yscale("log")
    ax1.set_xlabel("step (0.05 s)")
    ax1.set_ylabel("distance error |d - 0.2 m| (m)")
    ax1.set_title("One unseen episode")
    ax1.legend(fontsize=8)
    names = [r.policy for r in results]
    ax2.bar(range(len(results)), [r.distance_error_mean for r in results],
            yerr=[r.distance_error_std for r in results], capsize=4,
            color=["tab:blue" if n.startswith("active") else "tab:gray" for n in names])
    for i, r in enumerate(results):
        ax2.text(i, r.distance_error_mean, f"{r.steps_mean:.0f} steps", ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(range(len(results)))
    ax2.set_xticklabels([n.replace(", ", "\n") for n in names], fontsize=8)
    ax2.set_ylabel("mean distance error (m)")
    ax2.set_title("Active vs static, mean ± std over episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
