"""``vantage demo``: a tour of every task's shipped agent against its baselines (``agents.demo``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from envs.specs import TASKS
from scripts.options import note_kept, overwrite_option, parse_key_values

_DEMO_TASKS = [s.name for s in TASKS.values() if s.demo is not None]


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--task", "tasks", multiple=True, type=click.Choice(_DEMO_TASKS),
              help="Show only these tasks (repeatable; default: every task with a shipped agent).")
@click.option("--episodes", type=click.IntRange(min=1), default=None,
              help="Episodes per policy and variant (default: each task's demo setting).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--run", "runs", multiple=True, metavar="TASK=RUN_DIR",
              help="Show this run directory's agent for TASK instead of the shipped one.")
@click.option("--train", "train_steps", type=click.IntRange(min=1), default=None,
              help="Train a fresh agent per task for this many steps first (instead of the shipped ones).")
@overwrite_option("the results of an earlier demo in --out (README.md and each task's files)")
def demo(out: Path, tasks: tuple[str, ...], episodes: int | None, seed: int, runs: tuple[str, ...],
         train_steps: int | None, overwrite: bool) -> None:
    """Every task's trained agent against its baselines on the embedded MuJoCo backend: tables, plots, videos.

    An earlier demo's files in --out are refused before anything runs unless --overwrite is given (`make demo`
    passes it). Each task's files are written together when the task is done, README.md last.
    """
    from agents.demo import headline, run_demo

    run_dirs = {task: Path(str(path)) for task, path in parse_key_values(runs, "--run").items()}
    note_kept(f"the tasks finished before the interrupt have their complete files in {out}/<task>/, the others "
              "none (README.md is written last); rerun with --overwrite to redo the tour")
    results = run_demo(out, tasks or None, run_dirs, train_steps, episodes, seed, overwrite=overwrite)
    click.echo("\n" + (out / "README.md").read_text())
    click.echo(f"Wrote {out}/README.md and, per task, results.md, results.json, a plot and a video of the agent.")
    click.echo(json.dumps(headline(results)))
