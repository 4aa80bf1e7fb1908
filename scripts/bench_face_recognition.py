"""``vantage bench active-vs-static face-recognition``: the seeds' grids for active / static / rule-based."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} must be comma-separated numbers", param_hint=option) from exc


@click.command("active-vs-static")
@click.argument("task", type=click.Choice(["face-recognition"]))
@click.option("--agent", "agent_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Run directory of a trained agent (`vantage train face-recognition`): the active policy.")
@click.option("--stochastic", is_flag=True,
              help="Sample the trained agent's actions instead of taking the most likely one (seeded per episode; "
                   "the baselines are rules and unaffected).")
@click.option("--policies", default="static,rule", show_default=True,
              help="Baselines to run (static, rule); the agent is added when --agent is given.")
@click.option("--setups", default="setup1,setup2,random", show_default=True)
@click.option("--setup1-distances", default="1,2,3,4,5,6,7,10,15,20", show_default=True)
@click.option("--setup2-distances", default="3,5,7", show_default=True)
@click.option("--setup2-angles", default="0,60,120,180,240,300", show_default=True)
@click.option("--episodes", type=click.IntRange(min=1), default=3, show_default=True,
              help="Episodes per grid cell (different identities and furniture; same seeds in every cell).")
@click.option("--random-episodes", type=click.IntRange(min=1), default=20, show_default=True,
              help="Episodes from random starts (identification accuracy).")
@click.option("--max-steps", type=click.IntRange(min=1), default=300, show_default=True,
              help="Step cap per evaluation episode.")
@click.option("--speed-steps", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Steps of the navigation-only throughput run (0 skips it).")
@click.option("--detector", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Face detector model folder (default: assets/models/face_detector).")
@click.option("--recognizer", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Face recogniser model folder (default: assets/models/face_recognizer).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch threads for the agent's policy (the face models use one ONNX Runtime thread each).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench/face_recognition"),
              show_default=True, help="Folder for the JSON, tables and heatmap.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def active_vs_static(task: str, agent_dir: Path | None, stochastic: bool, policies: str, setups: str,
                     setup1_distances: str, setup2_distances: str, setup2_angles: str, episodes: int,
                     random_episodes: int,
                     max_steps: int, speed_steps: int, detector: Path | None, recognizer: Path | None, seed: int,
                     threads: int, out: Path, as_json: bool) -> None:
    """Mean confidence of the correct identity and identification accuracy of active / static / rule-based
    policies on setup 1, setup 2 and random starts; policy-only vs full-pipeline FPS; tables + heatmap."""
    import gymnasium as gym

    import envs  # noqa: F401
    from agents.face_evaluation import (
        cells_to_json,
        env_throughput,
        evaluate_cells,
        format_tables,
        grid_cells,
        plot_heatmaps,
        speed_figures,
    )
    from common.io import atomic_write_json
    from envs.baselines import FACE_BASELINES
    from envs.errors import check_choice

    if stochastic and agent_dir is None:
        raise click.UsageError("--stochastic samples a trained agent's actions: pass --agent RUN_DIR too")
    env_id = "vantage/DroneFaceRecognition-v0"
    names = [check_choice("face-recognition baseline", p.strip(), FACE_BASELINES) for p in policies.split(",")
             if p.strip()]
    setup_list = [check_choice("setup", s.strip(), ("setup1", "setup2", "random")) for s in setups.split(",")
                  if s.strip()]
    grid = [c for c in grid_cells([s for s in setup_list if s != "random"],
                                  _floats(setup1_distances, "--setup1-distances"),
                                  _floats(setup2_distances, "--setup2-distances"),
                                  _floats(setup2_angles, "--setup2-angles"))]
    models: dict[str, Any] = {}
    if detector is not None:
        models["detector_dir"] = str(detector)
    if recognizer is not None:
        models["recognizer_dir"] = str(recognizer)

    runs: list[tuple[str, dict[str, Any], Any, bool]] = []  # (name, env kwargs, policy factory, deterministic)
    if agent_dir is not None:
        import torch

        from agents.training import load_agent

        # Two torch threads next to the renderer's and another job's threads measured 22 policy FPS here
        # against 600 with one: the threads wait on each other, and the policy-only figure measured that.
        torch.set_num_threads(threads)

        config, model = load_agent(agent_dir)
        if config.task != "face-recognition":
            raise click.BadParameter(f"{agent_dir} is a {config.task!r} run, not face-recognition",
                                     param_hint="--agent")
        label = "active (PPO, sampled)" if stochastic else "active (PPO)"
        runs.append((label, {**config.env_kwargs, **models}, lambda env, m=model: m, not stochastic))
    for name in names:
        runs.append((name, dict(models), FACE_BASELINES[name], True))

    results: dict[str, list] = {}
    speed: dict[str, dict[str, float]] = {}
    for label, env_kwargs, factory, deterministic in runs:
        env = gym.make(env_id, **env_kwargs)
        policy = factory(env)
        cells = evaluate_cells(policy, env, grid, episodes, seed, max_steps, progress=not as_json, desc=label,
                               deterministic=deterministic)
        if "random" in setup_list:
            cells += evaluate_cells(policy, env, [("random", None, None)], random_episodes, seed + 1, max_steps,
                                    progress=not as_json, desc=f"{label} random", deterministic=deterministic)
        env.close()
        results[label] = cells
        speed[label] = speed_figures(cells)

    throughput = None
    if speed_steps:
        env = gym.make(env_id, **models)
        throughput = env_throughput(env, n_steps=speed_steps, seed=seed)
        env.close()

    summary: dict[str, Any] = {
        "env": env_id,
        "episodes_per_cell": episodes,
        "random_episodes": random_episodes if "random" in setup_list else 0,
        "max_steps": max_steps,
        "models": {"detector": models.get("detector_dir", "assets/models/face_detector"),
                   "recognizer": models.get("recognizer_dir", "assets/models/face_recognizer")},
        "agent": str(agent_dir) if agent_dir else None,
        "agent_actions": ("sampled" if stochastic else "most likely") if agent_dir else None,
        "torch_threads": threads if agent_dir else None,
        "policies": {
            label: {
                "cells": [{k: v for k, v in c.items() if k != "episodes"} for c in cells_to_json(cells)],
                "speed": speed[label],
            }
            for label, cells in results.items()
        },
        "env_throughput": throughput,
    }
    out.mkdir(parents=True, exist_ok=True)
    tables = format_tables(results)
    atomic_write_json(out / "face_recognition_bench.json", summary)
    atomic_write_json(out / "face_recognition_episodes.json",
                      {label: cells_to_json(cells) for label, cells in results.items()})
    (out / "face_recognition_tables.md").write_text(tables + "\n")
    heatmap = plot_heatmaps(results, out / "face_recognition_heatmap.png") if grid else None
    summary["files"] = {"tables": str(out / "face_recognition_tables.md"),
                        "heatmap": str(heatmap) if heatmap else None}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(tables)
    click.echo("")
    for label, figures in speed.items():
        click.echo(f"{label}: policy only {figures['policy_fps']:.0f} FPS, full pipeline {figures['pipeline_fps']:.0f} "
                   f"FPS ({figures['recognition_calls_per_step']:.2f} recognitions per step)")
    if throughput:
        click.echo(f"environment, navigation camera only: {throughput['nav_steps_per_s']:.0f} steps/s (target >= 100); "
                   f"one recognition call: {throughput['recognition_ms']:.1f} ms")
    click.echo(f"JSON, tables and heatmap in {out}")


def eval_face(target: Path, episodes: int, seed: int, policy_name: str, out: Path | None, as_json: bool,
              video: Path | None, max_steps: int = 300) -> dict[str, Any]:
    """``vantage eval`` for face recognition: a run's agent or a baseline over random starts.

    Args:
        target: a face-recognition run directory, or the task name (baselines only).
        episodes: episodes from random starts (seeds derived from ``seed``).
        seed: seed of the episode seeds.
        policy_name: ``agent``, ``static`` or ``rule``.
        out: folder for ``eval_<policy>_face.json`` (default: the run directory, or ``runs/eval/face-recognition``).
        as_json: print the summary as JSON instead of a table.
        video: write the first episode (chase view + navigation frame) here.
        max_steps: step cap per episode.
    """
    import gymnasium as gym

    import envs  # noqa: F401
    from agents.face_evaluation import cells_to_json, evaluate_cells, run_face_episode, speed_figures
    from agents.training import load_agent, load_config, seeds_for
    from common.io import atomic_write_json
    from envs.baselines import FACE_BASELINES

    is_run = Path(target).is_dir()
    if not is_run and policy_name == "agent":
        raise click.BadParameter(f"{target} is a task name, not a run directory: --policy agent needs a run "
                                 "(`vantage train face-recognition --out RUN`); baselines: --policy static|rule",
                                 param_hint="RUN_DIR")
    env_kwargs = dict(load_config(target).env_kwargs) if is_run else {}
    out = out or (Path(target) if is_run else Path("runs/eval/face-recognition"))
    env = gym.make("vantage/DroneFaceRecognition-v0", render_mode="rgb_array" if video else None, **env_kwargs)
    policy = load_agent(target)[1] if policy_name == "agent" else FACE_BASELINES[policy_name](env)
    seeds = seeds_for(seed, episodes)
    if video:
        from agents.media import write_video

        frames: list = []
        run_face_episode(policy, env, seeds[0], max_steps=max_steps, frames=frames)
        write_video(video, frames, fps=10)
    cells = []
    for s in seeds:  # the same seeds `vantage eval` uses for tracking, one cell per seed
        cells += evaluate_cells(policy, env, [("random", None, None)], 1, s, max_steps)
    env.close()
    eps = [e for c in cells for e in c.episodes]
    payload = {
        "policy": policy_name,
        "env_kwargs": env_kwargs,
        "episodes": len(eps),
        "accuracy": float(sum(e.correct for e in eps) / len(eps)),
        "confidence_mean": float(sum(e.confidence_correct for e in eps) / len(eps)),
        "steps_mean": float(sum(e.steps for e in eps) / len(eps)),
        "recognition_calls_mean": float(sum(e.recognition_calls for e in eps) / len(eps)),
        "collision_fraction": float(sum(e.collision for e in eps) / len(eps)),
        "speed": speed_figures(cells),
        "seed": seed,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"eval_{policy_name}_face.json",
                      {**payload, "per_episode": [e for c in cells_to_json(cells) for e in c["episodes"]]})
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo("| policy | accuracy | mean confidence (correct) | steps/episode | recognitions/episode | "
                   "collisions | episodes |\n|---|---|---|---|---|---|---|")
        click.echo(f"| {policy_name} | {100 * payload['accuracy']:.0f} % | {payload['confidence_mean']:.3f} | "
                   f"{payload['steps_mean']:.0f} | {payload['recognition_calls_mean']:.1f} | "
                   f"{100 * payload['collision_fraction']:.0f} % | {len(eps)} |")
    return payload
