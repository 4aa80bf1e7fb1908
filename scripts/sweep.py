"""``vantage sweep TASK``: grids and searches of training runs on Ray Tune, locally or on a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from envs.specs import TASKS
from scripts.options import note_kept, overwrite_option, split_list


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _axes(pairs: tuple[str, ...], option: str, many: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} must look like {'NAME=A,B,C' if many else 'NAME=VALUE'}",
                                     param_hint=option)
        key = key.strip()
        if key in out:
            raise click.BadParameter(f"{key!r} is given twice", param_hint=option)
        if many:
            # A value that is JSON with commas (a list or mapping) is one value; otherwise commas separate values.
            parsed = _value(raw)
            values = parsed if isinstance(parsed, list) else [_value(v.strip()) for v in raw.split(",") if v.strip()]
            if not values:
                raise click.BadParameter(f"{pair!r} has no values: the grid would be empty", param_hint=option)
            out[key] = values
        else:
            out[key] = _value(raw)
    return out


def _setups(eval_axes: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """``{"motion": [a, b]}`` -> ``{"a": {"motion": a}, "b": ...}``; several axes: every combination, ``a/x``."""
    import itertools

    if not eval_axes:
        return {"default": {}}
    setups = {}
    for combo in itertools.product(*eval_axes.values()):
        name = "/".join(str(v) for v in combo)
        setups[name] = dict(zip(eval_axes, combo, strict=True))
    return setups


def _metric(text: str | None, default: tuple[str, str]) -> tuple[str, str]:
    if not text:
        return default
    figure, _, mode = str(text).partition(":")
    mode = mode or ("min" if figure.endswith(("error", "fraction")) else "max")
    if not figure or mode not in ("min", "max"):
        raise click.BadParameter(f"{text!r} must look like FIGURE or FIGURE:min or FIGURE:max", param_hint="--metric")
    return figure, mode


@click.command("sweep")
@click.argument("task", type=click.Choice(list(TASKS)))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML sweep file (sweeps/*.yaml): set, grid, search ranges, samples, eval, scheduler...; the "
                   "options below replace its values.")
@click.option("--grid", "grid", multiple=True, metavar="NAME=A,B,...",
              help="An axis: every value is tried with every value of the other axes. NAME: a task option "
                   "(reward, action_mode, motion), a reward parameter (c_g, c_m, c_p, margin, weights), an "
                   "environment setting (env.NAME), a run setting (normalize_rewards, preset, n_envs) or an agent "
                   "hyperparameter (gamma, agent.NAME). Repeatable.")
@click.option("--set", "fixed", multiple=True, metavar="NAME=VALUE", help="A setting every trial takes. Repeatable.")
@click.option("--seeds", default=None, help="Comma-separated training seeds (an axis of every sweep)  [default: 0]")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps per trial  [default: 100000]")
@click.option("--algo", type=click.Choice(["ppo", "rainbow"]), default=None, help="[default: ppo]")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Points drawn from the YAML file's search ranges.")
@click.option("--sampler", type=click.Choice(["random", "quasi"]), default=None,
              help="Random or quasi-random (Halton) points  [default: random]")
@click.option("--eval", "eval_axes", multiple=True, metavar="NAME=A,B",
              help="Evaluate every trained agent with these environment settings (e.g. motion=constant,switching); "
                   "default: the settings it trained with.")
@click.option("--episodes", type=click.IntRange(min=1), default=None,
              help="Evaluation episodes per trial and setup  [default: 5]")
@click.option("--scheduler", type=click.Choice(["fifo", "asha"]), default=None,
              help="fifo: every trial to the end; asha: stop poor trials early on the reported metric  "
                   "[default: fifo]")
@click.option("--report-every", type=click.IntRange(min=1), default=None,
              help="Steps between the evaluations a trial reports while training (ASHA's milestones).")
@click.option("--grace-steps", type=click.IntRange(min=1), default=None,
              help="ASHA: steps before a trial can be stopped  [default: --report-every]")
@click.option("--reduction-factor", type=click.IntRange(min=2), default=None, help="ASHA  [default: 3]")
@click.option("--metric", default=None, metavar="FIGURE[:min|max]",
              help="What trials report and are ranked by: a figure of the task's evaluation without _mean (tracking: "
                   "distance_error, steps, lost_fraction, return)  [default: the task's, tracking distance_error:min]")
@click.option("--cpus-per-trial", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPUs Ray reserves per trial; also its PyTorch and BLAS threads.")
@click.option("--max-concurrent", type=click.IntRange(min=0), default=0, show_default=True,
              help="Trials at once (0: as many as the CPUs allow).")
@click.option("--address", default=None, help="Ray cluster to run on: auto or HOST:PORT (also RAY_ADDRESS); "
                                               "default: a local Ray on this machine.")
@click.option("--storage", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder every node mounts at the same path, for the trial runs (needed on a multi-node cluster).")
@click.option("--dashboard", is_flag=True, help="Start Ray's dashboard with a local Ray (off by default).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Sweep folder.")
@click.option("--resume", is_flag=True, help="Continue the sweep in --out: finished trials are skipped, "
                                             "interrupted ones continue from their checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sweep_cmd(task: str, config_file: Path | None, grid: tuple[str, ...], fixed: tuple[str, ...], seeds: str | None,
              steps: int | None, algo: str | None, samples: int | None, sampler: str | None,
              eval_axes: tuple[str, ...], episodes: int | None, scheduler: str | None, report_every: int | None,
              grace_steps: int | None, reduction_factor: int | None, metric: str | None, cpus_per_trial: int,
              max_concurrent: int,
              address: str | None, storage: Path | None, dashboard: bool, out: Path, resume: bool,
              as_json: bool) -> None:
    """Train and evaluate TASK over a grid or a search, as Ray Tune trials; table, plot and JSON in --out.

    Each trial is an ordinary training run in --out/runs/NAME (config, TensorBoard, checkpoints, model.zip)
    with its evaluation; the summary groups over seeds (mean ± std). Runs locally by default; --address joins
    a Ray cluster (docs/sweeps.md). --resume continues an interrupted sweep.
    """
    from agents.sweeps import EngineOptions, EvalSettings, Sweep, SweepSpace, load_yaml, run_sweep
    from common.errors import InvalidArgumentError
    from envs.specs import get_task

    spec = get_task(task)
    conf = load_yaml(config_file) if config_file else {}
    if conf.get("task", task) != task:
        raise InvalidArgumentError(f"{config_file} is a sweep of task {conf['task']!r}, not {task!r}")
    seed_list = split_list(seeds, "--seeds", int) if seeds is not None else tuple(conf.get("seeds", [0]))
    grid_axes = {**conf.get("grid", {}), **_axes(grid, "--grid", many=True)}
    fixed_axes = {**conf.get("set", {}), **_axes(fixed, "--set", many=False)}
    space = SweepSpace(task=task, algo=algo or conf.get("algo", "ppo"), steps=steps or conf.get("steps", 100_000),
                       seeds=seed_list, fixed=fixed_axes, grid=grid_axes, search=conf.get("search", {}),
                       samples=samples if samples is not None else conf.get("samples", 0),
                       sampler=sampler or conf.get("sampler", "random"), sample_seed=conf.get("sample_seed", 0),
                       base={**conf.get("base", {}), "vec_env": "dummy", "torch_threads": cpus_per_trial})
    trials = space.trials()
    setups = _setups({**conf.get("eval", {}), **_axes(eval_axes, "--eval", many=True)})
    metric, mode = _metric(metric or conf.get("metric"), spec.sweep_metric)
    chosen = scheduler or conf.get("scheduler", "fifo")
    every = report_every or conf.get("report_every")
    if chosen == "asha" and not every:
        every = max(1, space.steps // 9)  # ASHA needs reports to compare on: 9 milestones by default
    settings = EvalSettings(setups=setups, episodes=episodes or conf.get("episodes", 5), metric=metric, mode=mode,
                            report_every=every, report_episodes=conf.get("report_episodes", 2),
                            max_steps=spec.eval_max_steps)
    options = EngineOptions(address=address, storage=storage, cpus_per_trial=cpus_per_trial,
                            max_concurrent=max_concurrent, scheduler=chosen,
                            grace_steps=grace_steps or conf.get("grace_steps"),
                            reduction_factor=reduction_factor or conf.get("reduction_factor", 3), dashboard=dashboard)
    space_json = space.to_json()
    space_json["base"] = {k: v for k, v in space_json["base"].items() if k != "torch_threads"}
    sweep_spec = {**space_json, "eval": setups, "episodes": settings.episodes, "report_every": every,
                  "metric": [metric, mode],
                  "scheduler": chosen, "grace_steps": options.grace_steps, "reduction_factor": options.reduction_factor}
    group_by = [*space.search, *space.grid]
    sweep = Sweep(task=task, out=out, trials=trials, settings=settings, spec=sweep_spec, group_by=group_by,
                  title=f"{task}: {len(trials)} trials, {space.steps} steps, {len(seed_list)} seed(s)")
    note_kept(f"the finished trials in {out / 'runs'}, and the checkpoints of the interrupted ones: continue with "
              f"the same command and --resume")
    payload = run_sweep(sweep, options, resume=resume, log=(lambda line: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(payload["summary"], indent=2, default=str))
        return
    click.echo((out / "sweep.md").read_text().rstrip())
    best = payload["best"]
    if best:
        click.echo(f"best: {', '.join(f'{k}={best.get(k)}' for k in group_by) or 'all'} ({best['setup']}): "
                   f"{metric} {best[f'{metric}_mean']:.4g}")
    click.echo(f"table, JSON and plot in {out} (sweep.md, sweep.json, sweep.png)")


@click.command("sweep-overhead")
@click.option("--trials", "n_trials", type=click.IntRange(min=2), default=8, show_default=True,
              help="Trivial trials per measurement.")
@click.option("--steps", type=click.IntRange(min=32), default=64, show_default=True,
              help="Training steps of each (a tiny PPO on tracking).")
@click.option("--concurrency", default="1,2", show_default=True, help="Trials at once, one measurement each.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench"), show_default=True,
              help="Folder for sweep_overhead.json (the trial runs go to sweep_overhead/ beside it).")
@overwrite_option("sweep_overhead.json and its runs in --out")
def bench_sweep_overhead(n_trials: int, steps: int, concurrency: str, out: Path, overwrite: bool) -> None:
    """The sweep engine's cost: wall time of N trivial Ray Tune trials against the sum of the trials' own time.

    overhead = wall x concurrency / sum(trial time) - 1 (0: the engine costs nothing); speed-up = wall at the
    first concurrency / wall at each other. Trials are tiny PPO runs on tracking (64 steps, one evaluation
    episode of at most 50 steps), so the engine's fixed costs (Ray, a worker per trial) show.
    """
    import shutil
    import time as clock

    from agents.sweeps import EngineOptions, EvalSettings, Sweep, SweepSpace, run_sweep
    from common.io import atomic_write_json, prepare_output

    levels = split_list(concurrency, "--concurrency", int)
    if not levels or min(levels) < 1:
        raise click.BadParameter(f"{concurrency!r} must list trials at once, each >= 1", param_hint="--concurrency")
    prepare_output(out, ["sweep_overhead.json", "sweep_overhead"], overwrite=overwrite)
    tiny = {"n_steps": 32, "batch_size": 32, "n_epochs": 1,
            "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 16}, "net_arch": [8]}}
    results = []
    options = EngineOptions(max_concurrent=max(levels))
    from agents.sweeps.engine import connect

    with connect(options):  # one Ray for every measurement: its start is not a trial's cost
        for level in levels:
            folder = out / "sweep_overhead" / f"c{level}"
            if folder.exists():
                shutil.rmtree(folder)
            space = SweepSpace(task="tracking", steps=steps, seeds=tuple(range(n_trials)), fixed=tiny,
                               base={"n_envs": 1, "checkpoint_every": steps})
            settings = EvalSettings(episodes=1, metric="distance_error", mode="min", max_steps=50)
            sweep = Sweep(task="tracking", out=folder, trials=space.trials(), settings=settings, spec={"level": level})
            started = clock.perf_counter()
            payload = run_sweep(sweep, EngineOptions(max_concurrent=level), log=lambda line: None)
            total = clock.perf_counter() - started
            engine = payload["engine"]
            overhead = engine["wall_s"] * level / engine["trial_s_sum"] - 1
            results.append({"concurrency": level, "trials": n_trials, "tune_wall_s": engine["wall_s"],
                            "call_wall_s": round(total, 3), "trial_s_sum": engine["trial_s_sum"],
                            "overhead": round(overhead, 4)})
            click.echo(f"{n_trials} trials, {level} at once: Tune wall {engine['wall_s']:.1f} s, trials' own time "
                       f"{engine['trial_s_sum']:.1f} s in all, overhead {100 * overhead:.0f} % of trial time")
    for r in results:
        r["speedup"] = round(results[0]["tune_wall_s"] / r["tune_wall_s"], 3)
    click.echo("speed-up over " + f"{levels[0]} at once: " + ", ".join(f"{r['concurrency']}: {r['speedup']:.2f}x"
                                                                          for r in results))
    atomic_write_json(out / "sweep_overhead.json", {"steps": steps, "results": results, "load": _load()})


def _load() -> list[float]:
    import os

    return [round(x, 2) for x in os.getloadavg()]
