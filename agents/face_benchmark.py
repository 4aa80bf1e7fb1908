"""The drone face-recognition benchmark: the seeds' evaluation grids for active, static and rule-based
policies, speed, tables and heatmaps (``vantage bench active-vs-static face-recognition``).

An episode's score is the answer of its *last* recognition (:class:`envs.tasks.face_recognition.FaceEvaluator`).
Setups (``shared/specs/drone-face-recognition.md``):

* ``setup1``: frontal starts at 1, 2, 3, 4, 5, 6, 7, 10, 15, 20 m;
* ``setup2``: starts at 3, 5, 7 m x 0, 60, ..., 300 deg around the person;
* ``random``: the environment's own random starts (identification accuracy over random starts).

Every cell uses the same episode seeds, so identities and furniture match across cells and policies.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from agents.evaluation import Episode, run_episode, speed_figures
from common.io import atomic_path, atomic_write_json, atomic_write_text, prepare_output
from common.seeding import GRID_STREAM, derive_seeds
from envs.errors import InvalidArgumentError, UnknownNameError, check_choice
from envs.specs import get_task
from envs.tasks.face_recognition import FaceEvaluator

SETUP1_DISTANCES: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 10, 15, 20)
SETUP2_DISTANCES: tuple[float, ...] = (3, 5, 7)
SETUP2_ANGLES: tuple[float, ...] = (0, 60, 120, 180, 240, 300)
SETUPS = ("setup1", "setup2", "random")
ENV_ID = "vantage/DroneFaceRecognition-v0"
#: The benchmark's result files in ``out`` (the heatmap only when a grid setup runs).
BENCH_FILES = ("face_recognition_bench.json", "face_recognition_episodes.json", "face_recognition_tables.md",
               "face_recognition_heatmap.png")


@dataclass
class FaceCell:
    """Episodes from one start cell (or from random starts)."""

    setup: str
    distance: float | None
    angle_deg: float | None
    confidence_mean: float
    accuracy: float
    steps_mean: float
    recognition_calls_mean: float
    episodes: list[Episode] = field(default_factory=list)


def _cell(setup: str, distance: float | None, angle: float | None, episodes: list[Episode]) -> FaceCell:
    return FaceCell(
        setup=setup, distance=distance, angle_deg=angle,
        confidence_mean=float(np.mean([e.metrics["confidence_correct"] for e in episodes])),
        accuracy=float(np.mean([e.metrics["correct"] for e in episodes])),
        steps_mean=float(np.mean([e.steps for e in episodes])),
        recognition_calls_mean=float(np.mean([e.metrics["recognition_calls"] for e in episodes])),
        episodes=episodes,
    )


def _start(distance: float | None, angle: float | None) -> dict[str, float] | None:
    return None if distance is None else {"distance": float(distance), "angle_deg": float(angle or 0)}


def evaluate_cells(policy: Any, env: gym.Env, cells: Iterable[tuple[str, float | None, float | None]],
                   episodes: int, seed: int = 0, max_steps: int = 300, progress: bool = False,
                   desc: str = "", deterministic: bool = True) -> list[FaceCell]:
    """Evaluate ``policy`` on each ``(setup, distance, angle_deg)`` cell; ``None`` distance = random starts.

    ``deterministic=False`` samples the policy's actions (see :func:`agents.evaluation.run_episode`).
    """
    cells = list(cells)
    seeds = derive_seeds(seed, episodes, GRID_STREAM)
    evaluator = FaceEvaluator()
    out = []
    for setup, distance, angle in tqdm(cells, desc=desc or "cells", disable=not progress, leave=False):
        start = _start(distance, angle)
        eps = [run_episode(policy, env, s, evaluator, options=None if start is None else {"start": start},
                           max_steps=max_steps, deterministic=deterministic) for s in seeds]
        out.append(_cell(setup, distance, angle, eps))
    return out


def grid_cells(setups: Iterable[str], setup1: Iterable[float] = SETUP1_DISTANCES,
               setup2_distances: Iterable[float] = SETUP2_DISTANCES,
               setup2_angles: Iterable[float] = SETUP2_ANGLES) -> list[tuple[str, float | None, float | None]]:
    """The ``(setup, distance, angle)`` cells of the named setups (``setup1``, ``setup2``, ``random``)."""
    cells: list[tuple[str, float | None, float | None]] = []
    for setup in setups:
        if setup == "setup1":
            cells += [("setup1", float(d), 0.0) for d in setup1]
        elif setup == "setup2":
            cells += [("setup2", float(d), float(a)) for d in setup2_distances for a in setup2_angles]
        elif setup == "random":
            cells.append(("random", None, None))
        else:
            raise UnknownNameError("setup", setup, SETUPS)
    return cells


def speed(cells: list[FaceCell]) -> dict[str, float]:
    """Policy-only FPS vs full-pipeline FPS over ``cells``, and recognition calls per step."""
    episodes = [e for c in cells for e in c.episodes]
    figures = speed_figures(episodes)
    calls = sum(e.metrics["recognition_calls"] for e in episodes)
    figures["recognition_calls_per_step"] = round(calls / max(figures["steps"], 1), 3)
    return figures


def env_throughput(env: gym.Env, n_steps: int = 2000, seed: int = 0, n_recognitions: int = 50) -> dict[str, Any]:
    """Environment steps/s with the navigation camera only (random moves, no recognition), and the cost of
    one recognition call (recognition camera render + detector + recogniser) measured separately.
    """
    inner = env.unwrapped
    moves = [i for i, n in enumerate(inner.action_names) if n not in ("recognize",)]
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(20):  # warm up the renderer
        env.step(np.int64(rng.choice(moves)))
    env.reset(seed=seed)
    actions = rng.choice(moves, size=n_steps)
    resets = 0
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(np.int64(a))
        if terminated or truncated:
            env.reset()
            resets += 1
    elapsed = time.perf_counter() - start
    env.reset(seed=seed, options={"start": {"distance": 2.0, "angle_deg": 0.0}})
    inner.recognize()
    t0 = time.perf_counter()
    for _ in range(n_recognitions):
        inner.recognize()
    rec = (time.perf_counter() - t0) / n_recognitions
    return {
        "nav_steps_per_s": round(n_steps / elapsed, 1),
        "ms_per_nav_step": round(1000 * elapsed / n_steps, 3),
        "resets": resets,
        "recognition_ms": round(1000 * rec, 2),
        "recognition_calls_per_s": round(1 / rec, 1),
        "target_nav_steps_per_s": 100,
        "meets_target": bool(n_steps / elapsed >= 100),
    }


# -- presentation -------------------------------------------------------------------------------------------
def cells_to_json(cells: list[FaceCell]) -> list[dict[str, Any]]:
    """Cells with every episode's record (its start included)."""
    out = []
    for c in cells:
        d = {k: v for k, v in vars(c).items() if k != "episodes"}
        d["episodes"] = [{**e.record(), "start": _start(c.distance, c.angle_deg)} for e in c.episodes]
        out.append(d)
    return out


def format_tables(results: dict[str, list[FaceCell]]) -> str:
    """Markdown tables (mean confidence of the correct identity / accuracy) per setup, one column per policy."""
    policies = list(results)
    lines: list[str] = []
    setups = []
    for cells in results.values():
        for c in cells:
            if c.setup not in setups:
                setups.append(c.setup)
    for setup in setups:
        keys = []
        for cells in results.values():
            for c in cells:
                if c.setup == setup and (c.distance, c.angle_deg) not in keys:
                    keys.append((c.distance, c.angle_deg))
        title = {"setup1": "Setup 1 (frontal start)", "setup2": "Setup 2 (distance x angle around the person)",
                 "random": "Random starts"}[setup]
        lines += ["", f"**{title}**: mean confidence of the correct identity / identification accuracy", "",
                  "| start | " + " | ".join(policies) + " |", "|---|" + "---|" * len(policies)]
        for distance, angle in keys:
            label = "random" if distance is None else (f"{distance:g} m" if setup == "setup1"
                                                        else f"{distance:g} m, {angle:g} deg")
            row = []
            for p in policies:
                hit = [c for c in results[p] if c.setup == setup and (c.distance, c.angle_deg) == (distance, angle)]
                row.append(f"{hit[0].confidence_mean:.2f} / {100 * hit[0].accuracy:.0f} %" if hit else "-")
            lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines).strip()


def plot_heatmaps(results: dict[str, list[FaceCell]], path: str | Path) -> Path:
    """One column per policy: setup 2 as a distance x angle heatmap above setup 1 as a 1-row heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(results)
    fig, axes = plt.subplots(2, len(policies), figsize=(4.8 * len(policies) + 1.2, 6.0), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1.2]}, layout="constrained")
    image = None
    for col, policy in enumerate(policies):
        cells = results[policy]
        s2 = [c for c in cells if c.setup == "setup2"]
        s1 = [c for c in cells if c.setup == "setup1"]
        for row, group, kind in ((0, s2, "setup2"), (1, s1, "setup1")):
            ax = axes[row][col]
            if not group:
                ax.axis("off")
                continue
            ds = sorted({c.distance for c in group})
            angles = sorted({c.angle_deg for c in group})
            grid = np.full((len(ds), len(angles)), np.nan)
            for c in group:
                grid[ds.index(c.distance), angles.index(c.angle_deg)] = c.confidence_mean
            if kind == "setup1":
                grid = grid.T
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7 if kind == "setup2" else 5.5,
                        color="white" if v < 0.5 else "black")
            if kind == "setup2":
                ax.set_xticks(range(len(angles)), [f"{a:g}" for a in angles])
                ax.set_yticks(range(len(ds)), [f"{d:g} m" for d in ds])
                ax.set_xlabel("start angle around the person (deg)")
                ax.set_title(f"{policy}: setup 2")
            else:
                ax.set_xticks(range(len(ds)), [f"{d:g}" for d in ds])
                ax.set_yticks([])
                ax.set_xlabel("frontal start distance (m)")
                ax.set_title(f"{policy}: setup 1", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02,
                     label="mean confidence of the correct identity (0 when wrong)")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


@dataclass
class FaceBenchConfig:
    """Settings of ``vantage bench active-vs-static face-recognition``."""

    out: Path = Path("runs/bench/face_recognition")
    """folder for the JSON, tables and heatmap"""
    agent_dir: Path | None = None
    """run directory of a trained agent (the active policy); ``None`` runs the baselines only"""
    stochastic: bool = False
    """sample the agent's actions (seeded per episode) instead of taking the most likely one"""
    policies: tuple[str, ...] = ("static", "rule")
    """baselines to run beside the agent"""
    setups: tuple[str, ...] = SETUPS
    setup1_distances: tuple[float, ...] = SETUP1_DISTANCES
    setup2_distances: tuple[float, ...] = SETUP2_DISTANCES
    setup2_angles: tuple[float, ...] = SETUP2_ANGLES
    episodes: int = 3
    """episodes per grid cell"""
    random_episodes: int = 20
    """episodes from random starts"""
    max_steps: int = 300
    """step cap per episode"""
    speed_steps: int = 2000
    """steps of the navigation-only throughput run (0 skips it)"""
    detector: Path | None = None
    """face detector model folder (default: the shipped one)"""
    recognizer: Path | None = None
    """face recogniser model folder (default: the shipped one)"""
    seed: int = 0
    threads: int = 1
    """torch threads for the agent's policy"""
    overwrite: bool = False
    """replace result files already in ``out`` (otherwise they make the benchmark refuse to start)"""

    def validate(self) -> None:
        """Check names and sizes before anything runs; raises naming the bad value."""
        spec = get_task("face-recognition")
        for name in self.policies:
            check_choice("face-recognition baseline", name, spec.baselines)
        for setup in self.setups:
            check_choice("setup", setup, SETUPS)
        if self.stochastic and self.agent_dir is None:
            raise InvalidArgumentError("stochastic=True samples a trained agent's actions: give agent_dir too")
        for name in ("episodes", "random_episodes", "max_steps", "threads"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name}={getattr(self, name)!r} must be >= 1")


def run_face_benchmark(config: FaceBenchConfig, progress: bool = True) -> dict[str, Any]:
    """Run the grids for the agent (if any) and the baselines; write JSON, tables and a heatmap to ``out``.

    The result files are checked before anything runs (:func:`common.io.prepare_output`: existing ones need
    ``config.overwrite``) and written at the end, all of them or none.

    Returns:
        The summary written to ``face_recognition_bench.json`` (plus ``files``).

    Raises:
        OutputExistsError: a result file exists in ``out`` and ``config.overwrite`` is false, or ``out`` is
            another kind of artefact.
    """
    config.validate()
    spec = get_task("face-recognition")
    grid = grid_cells([s for s in config.setups if s != "random"], config.setup1_distances,
                      config.setup2_distances, config.setup2_angles)
    names = BENCH_FILES if grid else BENCH_FILES[:-1]
    out = prepare_output(config.out, names, overwrite=config.overwrite)
    models: dict[str, Any] = {}
    if config.detector is not None:
        models["detector_dir"] = str(config.detector)
    if config.recognizer is not None:
        models["recognizer_dir"] = str(config.recognizer)

    runs: list[tuple[str, dict[str, Any], Any, bool]] = []  # (label, env kwargs, policy factory, deterministic)
    if config.agent_dir is not None:
        import torch

        from agents.training import load_agent

        # Two torch threads next to the renderer's and another job's threads measured 22 policy FPS here
        # against 600 with one: the threads wait on each other, and the policy-only figure measured that.
        torch.set_num_threads(config.threads)
        agent_config, model = load_agent(config.agent_dir)
        if agent_config.task != spec.name:
            raise InvalidArgumentError(f"{config.agent_dir} is a {agent_config.task!r} run, not {spec.name}")
        label = "active (PPO, sampled)" if config.stochastic else "active (PPO)"
        runs.append((label, {**agent_config.env_kwargs, **models}, lambda env, m=model: m, not config.stochastic))
    for name in config.policies:
        runs.append((name, dict(models), lambda env, n=name: spec.make_baseline(n, env), True))

    results: dict[str, list[FaceCell]] = {}
    speeds: dict[str, dict[str, float]] = {}
    for label, env_kwargs, factory, deterministic in runs:
        env = gym.make(spec.env_id, **env_kwargs)
        try:
            policy = factory(env)
            cells = evaluate_cells(policy, env, grid, config.episodes, config.seed, config.max_steps,
                                   progress=progress, desc=label, deterministic=deterministic)
            if "random" in config.setups:
                cells += evaluate_cells(policy, env, [("random", None, None)], config.random_episodes,
                                        config.seed + 1, config.max_steps, progress=progress, desc=f"{label} random",
                                        deterministic=deterministic)
        finally:
            env.close()
        results[label] = cells
        speeds[label] = speed(cells)

    throughput = None
    if config.speed_steps:
        env = gym.make(spec.env_id, **models)
        try:
            throughput = env_throughput(env, n_steps=config.speed_steps, seed=config.seed)
        finally:
            env.close()

    summary: dict[str, Any] = {
        "env": spec.env_id,
        "episodes_per_cell": config.episodes,
        "random_episodes": config.random_episodes if "random" in config.setups else 0,
        "max_steps": config.max_steps,
        "models": {"detector": models.get("detector_dir", "assets/models/face_detector"),
                   "recognizer": models.get("recognizer_dir", "assets/models/face_recognizer")},
        "agent": str(config.agent_dir) if config.agent_dir else None,
        "agent_actions": ("sampled" if config.stochastic else "most likely") if config.agent_dir else None,
        "torch_threads": config.threads if config.agent_dir else None,
        "policies": {
            label: {"cells": [{k: v for k, v in c.items() if k != "episodes"} for c in cells_to_json(cells)],
                    "speed": speeds[label]}
            for label, cells in results.items()
        },
        "env_throughput": throughput,
    }
    tables = format_tables(results)
    # All files or none: each goes to a temporary file, renamed over the old one once all are written.
    with contextlib.ExitStack() as stack:
        staged = {name: stack.enter_context(atomic_path(out / name)) for name in names}
        atomic_write_json(staged["face_recognition_bench.json"], summary)
        atomic_write_json(staged["face_recognition_episodes.json"],
                          {label: cells_to_json(cells) for label, cells in results.items()})
        atomic_write_text(staged["face_recognition_tables.md"], tables + "\n")
        if grid:
            plot_heatmaps(results, staged["face_recognition_heatmap.png"])
    heatmap = out / "face_recognition_heatmap.png" if grid else None
    summary["files"] = {"tables": str(out / "face_recognition_tables.md"),
                        "heatmap": str(heatmap) if heatmap else None}
    summary["tables"] = tables
    return summary


def format_speed(summary: dict[str, Any]) -> str:
    """The benchmark's speed lines for people."""
    lines = []
    for label, figures in summary["policies"].items():
        f = figures["speed"]
        lines.append(f"{label}: policy only {f['policy_fps']:.0f} FPS, full pipeline {f['pipeline_fps']:.0f} FPS "
                     f"({f['recognition_calls_per_step']:.2f} recognitions per step)")
    throughput = summary["env_throughput"]
    if throughput:
        lines.append(f"environment, navigation camera only: {throughput['nav_steps_per_s']:.0f} steps/s (target >= "
                     f"100); one recognition call: {throughput['recognition_ms']:.1f} ms")
    return "\n".join(lines)
