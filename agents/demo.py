"""The demo: a tour of every task that ships a trained agent, each against its baselines, from its spec.

For each task (:data:`envs.specs.TASKS` entries with a ``shipped_agent`` and a ``demo``) it evaluates the
agent and the task's baselines on the same unseen seeded episodes, for each of the demo's variants, and
writes into ``OUT/<task>/``: ``results.md`` / ``results.json`` (the task's own table), ``<task>.png`` (one
episode's trace per policy and a bar chart of the headline figure) and ``<task>_active.mp4`` / ``.gif`` (the
agent's first episode, overview beside its own view). ``OUT/README.md`` collects the tables.

Existing result files are refused before anything runs unless ``overwrite`` is given
(:func:`common.io.prepare_output`); each task's files are written together once the task is done (all or
none), and ``README.md`` last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.evaluation import EvalResult, evaluate
from agents.media import write_video
from agents.training import TrainConfig, load_agent, seeds_for, train
from common.io import atomic_path, atomic_write_json, atomic_write_text, prepare_output
from envs.errors import InvalidArgumentError
from envs.specs import TASKS, TaskSpec, get_task

AGENT = "active (PPO)"


def demo_tasks(names: Sequence[str] | None = None) -> list[TaskSpec]:
    """The tasks the demo shows: ``names`` (checked), or every task with a shipped agent and a demo."""
    if names:
        specs = [get_task(name) for name in names]
        for spec in specs:
            if spec.demo is None:
                raise InvalidArgumentError(f"task {spec.name!r} has no demo in its spec")
        return specs
    return [spec for spec in TASKS.values() if spec.demo is not None and spec.shipped_agent is not None]


def demo_files(spec: TaskSpec) -> tuple[str, ...]:
    """The files the demo writes into ``OUT/<task>/`` for ``spec``."""
    return ("results.md", "results.json", f"{spec.name}.png", f"{spec.name}_active.mp4", f"{spec.name}_active.gif")


def demo_task(spec: TaskSpec, out: Path, run_dir: Path | None = None, episodes: int | None = None, seed: int = 0,
              progress: bool = True, overwrite: bool = False) -> list[EvalResult]:
    """Evaluate one task's agent (``run_dir``, default the shipped one) and baselines; write its files.

    Raises:
        OutputExistsError: a file of :func:`demo_files` exists in ``out/<task>`` and ``overwrite`` is false.
    """
    demo = spec.demo
    if demo is None:
        raise InvalidArgumentError(f"task {spec.name!r} has no demo in its spec")
    folder = prepare_output(out / spec.name, demo_files(spec), overwrite=overwrite)
    run_dir = Path(run_dir or spec.shipped_agent)
    config, agent = load_agent(run_dir)
    if config.task != spec.name:
        raise InvalidArgumentError(f"{run_dir} is a {config.task!r} run, not {spec.name!r}")
    seeds = seeds_for(seed, episodes or demo.episodes)
    results: list[EvalResult] = []
    frames: list[np.ndarray] = []
    for variant, overrides in demo.variants:
        for label in (AGENT, *demo.baselines):
            first = not frames and label == AGENT
            env = gym.make(spec.env_id, **{**config.env_kwargs, **overrides},
                           render_mode="rgb_array" if first else None)
            try:
                policy = agent if label == AGENT else spec.make_baseline(label, env)
                name = label if len(demo.variants) == 1 else f"{label}, {variant}"
                result = evaluate(policy, env, seeds, spec.make_evaluator(), name=name, max_steps=demo.max_steps,
                                  deterministic=not (label == AGENT and spec.agent_sampled), progress=progress,
                                  frames=frames if first else None, trace=True)
            finally:
                env.close()
            result.settings = {"variant": variant, "overrides": dict(overrides), "seed": seed, "run": str(run_dir)}
            results.append(result)

    table = spec.make_evaluator().format_table([r.row() for r in results])
    results_md, results_json, plot, mp4, gif = demo_files(spec)
    # The task's files all or none: each goes to a temporary file, renamed over the old one once all are written.
    with contextlib.ExitStack() as stack:
        staged = {name: stack.enter_context(atomic_path(folder / name))
                  for name in (results_md, results_json, plot, *((mp4, gif) if frames else ()))}
        atomic_write_text(staged[results_md], table + "\n")
        atomic_write_json(staged[results_json], {"task": spec.name, "agent": str(run_dir),
                                                 "agent_actions": "sampled" if spec.agent_sampled else "most likely",
                                                 "results": [r.to_json() for r in results]})
        plot_demo(spec, results, staged[plot])
        if frames:
            write_video(staged[mp4], frames, fps=demo.video_fps)
            write_video(staged[gif], frames[:300:2], fps=max(1, demo.video_fps // 2))
    return results


def run_demo(out: str | Path, tasks: Sequence[str] | None = None, runs: Mapping[str, Path] | None = None,
             train_steps: int | None = None, episodes: int | None = None, seed: int = 0,
             progress: bool = True, overwrite: bool = False) -> dict[str, list[EvalResult]]:
    """The tour: every demo task's agent against its baselines, files under ``out``.

    Args:
        out: output folder.
        tasks: task names (default: every task with a shipped agent).
        runs: task -> run directory to show instead of the shipped agent.
        train_steps: train a fresh agent per task for this many steps (its defaults) instead.
        episodes: episodes per policy and variant (default: each demo's).
        seed: seed of the episode seeds.
        progress: show progress bars.
        overwrite: replace the result files of an earlier demo in ``out``.

    Raises:
        OutputExistsError: before anything runs, when ``out`` already holds a result file of this tour and
            ``overwrite`` is false, or ``out`` (or a task's folder) is another kind of artefact.
    """
    out = Path(out)
    specs = demo_tasks(tasks)
    runs = dict(runs or {})
    for name in runs:
        get_task(name)
    # Every output folder is checked before the first (long) evaluation, not when its turn comes.
    prepare_output(out, ["README.md"], overwrite=overwrite)
    for spec in specs:
        prepare_output(out / spec.name, demo_files(spec), overwrite=overwrite)
    tables: dict[str, list[EvalResult]] = {}
    for spec in specs:
        run_dir = runs.get(spec.name)
        if train_steps is not None:
            run_dir = out / spec.name / "run"
            print(f"training a {spec.name} agent ({spec.presets.get('ppo')}) for {train_steps} steps -> {run_dir}")
            train(TrainConfig(task=spec.name, steps=train_steps, env_kwargs={**spec.defaults(), "backend": "mujoco"}),
                  run_dir, resume=(run_dir / "checkpoints" / "latest.zip").exists(), progress_bar=progress)
        tables[spec.name] = demo_task(spec, out, run_dir, episodes, seed, progress, overwrite=overwrite)
    lines = ["# Vantage demo", ""]
    for spec in specs:
        lines += [f"## {spec.name}: {spec.summary}", "", spec.make_evaluator().format_table(
            [r.row() for r in tables[spec.name]]), "",
            f"Files: `{spec.name}/results.md`, `{spec.name}/results.json`, `{spec.name}/{spec.name}.png`, "
            f"`{spec.name}/{spec.name}_active.mp4` (and `.gif`).", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))
    return tables


def plot_demo(spec: TaskSpec, results: Sequence[EvalResult], path: Path) -> Path:
    """One episode's trace per policy beside a bar chart of the demo's headline figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    demo = spec.demo
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        trace = r.episodes[0].trace
        if trace:
            ax1.plot(trace, label=r.policy, lw=1.2, ls="-" if r.policy.startswith(AGENT) else "--")
    positive = [v for r in results for v in r.episodes[0].trace if v > 0]
    if positive and max(positive) / max(min(positive), 1e-12) > 100:
        ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel(demo.trace_label or "trace")
    ax1.set_title("One unseen episode")
    ax1.legend(fontsize=8)
    key = demo.metric
    std_key = key.removesuffix("_mean") + "_std"
    values = [r.summary[key] for r in results]
    errors = [r.summary.get(std_key, 0.0) for r in results]
    names = [r.policy for r in results]
    ax2.bar(range(len(results)), values, yerr=errors, capsize=4,
            color=["tab:blue" if n.startswith(AGENT) else "tab:gray" for n in names])
    for i, r in enumerate(results):
        ax2.text(i, values[i], f"steps: {r.summary['steps_mean']:.0f}", ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(range(len(results)))
    ax2.set_xticklabels([n.replace(", ", "\n") for n in names], fontsize=8)
    ax2.set_ylabel(demo.metric_label)
    ax2.set_title(f"{spec.name}: agent vs baselines, {len(results[0].episodes)} episodes each")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def headline(results: Mapping[str, Sequence[EvalResult]]) -> dict[str, Any]:
    """Each task's headline figure for the agent and baselines (printed as the demo's last line)."""
    return {task: {r.policy: round(float(r.summary[get_task(task).demo.metric]), 4) for r in rows}
            for task, rows in results.items()}
