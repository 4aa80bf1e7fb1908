"""Evaluation of drone face-recognition policies: episodes, the seeds' evaluation grids, speed, tables, heatmap.

The score of an episode is the answer of its *last* recognition: the confidence of the correct identity
(0 when the answer is wrong, ``unknown`` or no face) and whether it was correct. An episode ends when the
environment terminates or truncates, after ``max_steps``, or once a baseline that has stopped
(``policy.finished``) has recognised from where it stopped.

Setups (``shared/specs/drone-face-recognition.md``):

* ``setup1``: frontal starts at 1, 2, 3, 4, 5, 6, 7, 10, 15, 20 m;
* ``setup2``: starts at 3, 5, 7 m x 0, 60, ..., 300 deg around the person;
* ``random``: the environment's own random starts (identification accuracy over random starts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

SETUP1_DISTANCES: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 7, 10, 15, 20)
SETUP2_DISTANCES: tuple[float, ...] = (3, 5, 7)
SETUP2_ANGLES: tuple[float, ...] = (0, 60, 120, 180, 240, 300)

#: A policy factory: environment -> object with SB3's ``predict`` (and optionally ``reset``, ``finished``).
PolicyFactory = Callable[[gym.Env], Any]


@dataclass
class FaceEpisode:
    """One episode's outcome."""

    seed: int
    start: dict[str, float] | None
    steps: int
    return_: float
    identity_true: str
    identity_pred: str
    confidence_correct: float
    correct: bool
    recognition_calls: int
    collision: bool
    final_distance: float
    final_frontal_angle: float
    policy_seconds: float
    env_seconds: float


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
    episodes: list[FaceEpisode] = field(default_factory=list)


def run_face_episode(policy: Any, env: gym.Env, seed: int, options: dict[str, Any] | None = None,
                     max_steps: int = 300, frames: list[np.ndarray] | None = None,
                     deterministic: bool = True) -> FaceEpisode:
    """Run ``policy`` for one episode and score its last recognition.

    ``deterministic=False`` samples a learned policy's actions instead of taking the most likely one; torch's
    generator is seeded with ``seed`` first, so a sampled episode is as reproducible as a deterministic one.
    ``frames``, if given, receives ``env.render()`` after the reset and after every step.
    """
    if not deterministic:
        torch.manual_seed(seed)
    obs, info = env.reset(seed=seed, options=options)
    if frames is not None:
        frames.append(env.render())
    if hasattr(policy, "reset"):
        policy.reset()
    last = {"identity_pred": "", "confidence_correct": 0.0, "correct": False}
    total, steps, policy_s, env_s = 0.0, 0, 0.0, 0.0
    done = False
    while not done and steps < max_steps:
        t0 = time.perf_counter()
        action, _ = policy.predict(obs, deterministic=deterministic)
        t1 = time.perf_counter()
        obs, reward, terminated, truncated, info = env.step(action)
        env_s += time.perf_counter() - t1
        policy_s += t1 - t0
        steps += 1
        total += float(reward)
        if frames is not None:
            frames.append(env.render())
        if info["recognized"]:
            last = info
        done = terminated or truncated or (bool(getattr(policy, "finished", False)) and info["recognized"])
    return FaceEpisode(
        seed=seed, start=(options or {}).get("start"), steps=steps, return_=total,
        identity_true=info["identity_true"], identity_pred=last["identity_pred"] or "",
        confidence_correct=float(last["confidence_correct"]), correct=bool(last["correct"]),
        recognition_calls=int(info["recognition_calls"]), collision=bool(info["collision"]),
        final_distance=float(info["distance"]), final_frontal_angle=float(info["frontal_angle"]),
        policy_seconds=policy_s, env_seconds=env_s,
    )


def _cell(setup: str, distance: float | None, angle: float | None, episodes: list[FaceEpisode]) -> FaceCell:
    return FaceCell(
        setup=setup, distance=distance, angle_deg=angle,
        confidence_mean=float(np.mean([e.confidence_correct for e in episodes])),
        accuracy=float(np.mean([e.correct for e in episodes])),
        steps_mean=float(np.mean([e.steps for e in episodes])),
        recognition_calls_mean=float(np.mean([e.recognition_calls for e in episodes])),
        episodes=episodes,
    )


def episode_seeds(seed: int, n: int) -> list[int]:
    """``n`` episode seeds derived from ``seed`` (disjoint from small training seeds)."""
    return [int(s) for s in np.random.SeedSequence([seed, 4_243]).generate_state(n) % (2**31 - 1)]


def evaluate_cells(policy: Any, env: gym.Env, cells: Iterable[tuple[str, float | None, float | None]],
                   episodes: int, seed: int = 0, max_steps: int = 300, progress: bool = False,
                   desc: str = "", deterministic: bool = True) -> list[FaceCell]:
    """Evaluate ``policy`` on each ``(setup, distance, angle_deg)`` cell; ``None`` distance = random starts.

    Each cell uses the same episode seeds, so identities and furniture match across cells and policies.
    ``deterministic=False`` samples the policy's actions (see :func:`run_face_episode`).
    """
    cells = list(cells)
    seeds = episode_seeds(seed, episodes)
    out = []
    for setup, distance, angle in tqdm(cells, desc=desc or "cells", disable=not progress, leave=False):
        options = None if distance is None else {"start": {"distance": float(distance), "angle_deg": float(angle or 0)}}
        eps = [run_face_episode(policy, env, s, options, max_steps, deterministic=deterministic) for s in seeds]
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
            from envs.errors import UnknownNameError

            raise UnknownNameError("setup", setup, ("setup1", "setup2", "random"))
    return cells


def speed_figures(cells: list[FaceCell]) -> dict[str, float]:
    """Policy-only FPS vs full-pipeline FPS (simulation, rendering, perception and policy) over ``cells``."""
    eps = [e for c in cells for e in c.episodes]
    steps = sum(e.steps for e in eps)
    policy_s = sum(e.policy_seconds for e in eps)
    env_s = sum(e.env_seconds for e in eps)
    calls = sum(e.recognition_calls for e in eps)
    return {
        "steps": steps,
        "policy_fps": round(steps / max(policy_s, 1e-9), 1),
        "pipeline_fps": round(steps / max(policy_s + env_s, 1e-9), 1),
        "recognition_calls_per_step": round(calls / max(steps, 1), 3),
    }


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
    out = []
    for c in cells:
        d = asdict(c)
        d["episodes"] = [{k: v for k, v in asdict(e).items() if k not in ("policy_seconds", "env_seconds")}
                         for e in c.episodes]
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
