"""Evaluation: run a policy (trained agent or baseline) for N seeded episodes and summarise the errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm


@dataclass
class EpisodeResult:
    seed: int
    steps: int
    return_: float
    distance_error_mean: float
    angle_error_mean: float
    target_lost: bool
    distance_errors: list[float] = field(default_factory=list, repr=False)
    """Per-step distance errors, kept for the first episode only (for plots)."""


@dataclass
class EvalResult:
    """Summary over episodes: the mean and std across episodes of each episode's mean distance error."""

    policy: str
    distance_error_mean: float
    distance_error_std: float
    angle_error_mean: float
    steps_mean: float
    return_mean: float
    lost_fraction: float
    episodes: list[EpisodeResult] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["episodes"] = len(self.episodes)
        payload["per_episode"] = [{k: v for k, v in asdict(e).items() if k != "distance_errors"} for e in self.episodes]
        return payload


def run_episodes(policy: Any, env: gym.Env, seeds: list[int], name: str = "agent",
                 progress: bool = False, frames: list[np.ndarray] | None = None) -> EvalResult:
    """Run ``policy.predict`` (deterministic) on ``env`` for one episode per seed.

    Args:
        policy: anything with SB3's ``predict(obs, deterministic=True) -> (action, state)``.
        env: the environment (with its TimeLimit).
        seeds: one reset seed per episode.
        name: label stored in the result.
        progress: show a progress bar over episodes.
        frames: if given, ``env.render()`` frames of the first episode are appended to it.
    """
    episodes: list[EpisodeResult] = []
    for i, seed in enumerate(tqdm(seeds, desc=f"eval {name}", disable=not progress, leave=False)):
        obs, info0 = env.reset(seed=seed)
        done, steps, total = False, 0, 0.0
        dist, ang, lost = [], [], False
        if frames is not None and i == 0:
            frames.append(env.render())
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            steps += 1
            total += float(reward)
            dist.append(info["distance_error"])
            ang.append(info["angle_error"])
            lost = lost or bool(info.get("target_lost", False))
            if frames is not None and i == 0:
                frames.append(env.render())
        episodes.append(EpisodeResult(seed, steps, total, float(np.mean(dist)), float(np.mean(ang)), lost,
                                      distance_errors=[info0["distance_error"], *dist] if i == 0 else []))
    errors = np.array([e.distance_error_mean for e in episodes])
    return EvalResult(
        policy=name,
        distance_error_mean=float(errors.mean()),
        distance_error_std=float(errors.std()),
        angle_error_mean=float(np.mean([e.angle_error_mean for e in episodes])),
        steps_mean=float(np.mean([e.steps for e in episodes])),
        return_mean=float(np.mean([e.return_ for e in episodes])),
        lost_fraction=float(np.mean([e.target_lost for e in episodes])),
        episodes=episodes,
    )


def format_table(results: list[EvalResult]) -> str:
    """A Markdown table comparing evaluation results."""
    lines = [
        "| policy | distance error (m) | angle error (rad) | steps/episode | target lost | episodes |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.policy} | {r.distance_error_mean:.4f} ± {r.distance_error_std:.4f} | {r.angle_error_mean:.3f} "
            f"| {r.steps_mean:.0f} | {100 * r.lost_fraction:.0f} % | {len(r.episodes)} |"
        )
    return "\n".join(lines)
