"""``vantage bench env TASK`` and ``vantage bench rewards TASK`` (the tasks whose specs list them)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from envs.specs import TASKS
from scripts.options import note_kept, overwrite_option, split_list


def _tasks_with(benchmark: str) -> list[str]:
    return [spec.name for spec in TASKS.values() if benchmark in spec.benchmarks]


@click.command("env")
@click.argument("task", type=click.Choice(_tasks_with("env")))
@click.option("--steps", type=click.IntRange(min=100), default=3000, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench"), show_default=True,
              help="Folder for env_<task>.json.")
@overwrite_option("env_<task>.json in --out")
def bench_env(task: str, steps: int, repeats: int, as_json: bool, out: Path, overwrite: bool) -> None:
    """Control steps/s of TASK's environment vs bare MuJoCo doing the same physics steps + one render."""
    from common.io import atomic_write_json, prepare_output
    from envs.benchmark import env_throughput
    from envs.specs import get_task

    name = f"env_{task}.json"
    prepare_output(out, [name], overwrite=overwrite)  # before the minutes of measuring, not after
    note_kept(f"no result was written ({out / name} is written when the benchmark ends)")
    result = env_throughput(get_task(task).env_id, n_steps=steps, repeats=repeats)
    atomic_write_json(out / name, result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(
            f"{result['env']}: {result['env_steps_per_s']:.0f} steps/s; bare MuJoCo (physics + render): "
            f"{result['raw_steps_per_s']:.0f} steps/s; ratio {result['ratio']:.2f} (target >= 0.60)"
        )


@click.command("rewards")
@click.argument("task", type=click.Choice(_tasks_with("rewards")))
@click.option("--steps", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Training steps per run.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated training seeds.")
@click.option("--episodes", type=click.IntRange(min=1), default=10, show_default=True,
              help="Evaluation episodes per run and setup.")
@click.option("--rewards", default="td,negative,hint", show_default=True)
@click.option("--action-modes", default="discrete,continuous", show_default=True)
@click.option("--setups", default="constant,switching,obstacles", show_default=True)
@click.option("--jobs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Runs trained at once (Ray Tune trials; 0: as many as the CPUs allow).")
@click.option("--address", default=None, help="Ray cluster to run on (auto, HOST:PORT; also RAY_ADDRESS); default: "
                                               "a local Ray on this machine.")
@click.option("--normalize-rewards/--no-normalize-rewards", default=False, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/reward_study"), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def bench_rewards(task: str, steps: int, seeds: str, episodes: int, rewards: str, action_modes: str, setups: str,
                  jobs: int, address: str | None, normalize_rewards: bool, out: Path, as_json: bool) -> None:
    """The TD-reward paper's comparison (reward x action mode x motion, several seeds): table + plot.

    A preset of `vantage sweep tracking`: each (reward, action mode, seed) is a Ray Tune trial training into
    --out/runs/; finished runs are reused and an interrupted one resumes from its checkpoint, so after Ctrl-C
    the same command continues. reward_study.json, .md and .png
    summarise the runs this call selects and are rewritten on every call (they need no --overwrite: the runs
    they are made from are kept, so nothing is lost). A finished run trained with other settings is refused.
    """
    from agents.reward_study import (
        ACTION_MODES,
        REWARDS,
        SETUPS,
        RewardStudyConfig,
        format_study,
        run_reward_study,
    )
    from envs.errors import check_choice

    def _split(text: str, allowed: tuple[str, ...], kind: str, option: str) -> tuple[str, ...]:
        return tuple(check_choice(kind, t, allowed) for t in split_list(text, option))

    study = RewardStudyConfig(
        out=out, steps=steps, seeds=split_list(seeds, "--seeds", int), episodes=episodes,
        rewards=_split(rewards, REWARDS, "reward scheme", "--rewards"),
        action_modes=_split(action_modes, ACTION_MODES, "action mode", "--action-modes"),
        setups=_split(setups, SETUPS, "motion", "--setups"), jobs=jobs, normalize_rewards=normalize_rewards,
    )
    note_kept(f"the finished training runs under {out / 'runs'} are kept, and an interrupted one resumes from its "
              "last checkpoint: rerun the same command to continue")
    from agents.sweeps import EngineOptions

    payload = run_reward_study(study, progress=not as_json, options=EngineOptions(address=address, max_concurrent=jobs))
    if as_json:
        click.echo(json.dumps(payload["summary"], indent=2))
    else:
        click.echo(format_study(payload["summary"], study))
        click.echo(f"table, JSON and plot in {out}")
