"""``vantage bench active-vs-static TASK``: the seeds' grids for active / static / rule-based policies."""

from __future__ import annotations

import json
from pathlib import Path

import click

from envs.specs import TASKS
from scripts.options import note_kept, overwrite_option, split_list


@click.command("active-vs-static")
@click.argument("task", type=click.Choice([s.name for s in TASKS.values() if "active-vs-static" in s.benchmarks]))
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
@overwrite_option("the JSON, tables and heatmap in --out")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def active_vs_static(task: str, agent_dir: Path | None, stochastic: bool, policies: str, setups: str,
                     setup1_distances: str, setup2_distances: str, setup2_angles: str, episodes: int,
                     random_episodes: int, max_steps: int, speed_steps: int, detector: Path | None,
                     recognizer: Path | None, seed: int, threads: int, out: Path, overwrite: bool,
                     as_json: bool) -> None:
    """Mean confidence of the correct identity and identification accuracy of active / static / rule-based
    policies on setup 1, setup 2 and random starts; policy-only vs full-pipeline FPS; tables + heatmap.

    The result files are written together when the benchmark ends; existing ones are refused before it starts
    unless --overwrite is given."""
    from agents.face_benchmark import FaceBenchConfig, format_speed, run_face_benchmark

    if stochastic and agent_dir is None:
        raise click.UsageError("--stochastic samples a trained agent's actions: pass --agent RUN_DIR too")
    config = FaceBenchConfig(
        out=out, agent_dir=agent_dir, stochastic=stochastic, policies=split_list(policies, "--policies"),
        setups=split_list(setups, "--setups"),
        setup1_distances=split_list(setup1_distances, "--setup1-distances", float),
        setup2_distances=split_list(setup2_distances, "--setup2-distances", float),
        setup2_angles=split_list(setup2_angles, "--setup2-angles", float), episodes=episodes,
        random_episodes=random_episodes, max_steps=max_steps, speed_steps=speed_steps, detector=detector,
        recognizer=recognizer, seed=seed, threads=threads, overwrite=overwrite,
    )
    note_kept(f"no result was written (the files in {out} are written together when the benchmark ends)")
    summary = run_face_benchmark(config, progress=not as_json)
    tables = summary.pop("tables")
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(tables)
    click.echo("")
    click.echo(format_speed(summary))
    click.echo(f"JSON, tables and heatmap in {out}")
