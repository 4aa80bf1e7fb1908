"""Golden trajectories: seeded episodes of every registered environment recorded step by step.

Recorded before the architecture refactor (issue 13) and compared after it, so a change of behaviour in the
environments (rewards, ``info`` values, observations, termination) shows up as a failing test. Observations
are recorded as pixel sums: exact integers that any change of a rendered frame moves.

``python -m tests.envs.golden`` rewrites ``tests/data/golden_trajectories.json``; only do that for an
intended change of behaviour, and say so in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the environments)

GOLDEN_FILE = Path(__file__).resolve().parents[1] / "data" / "golden_trajectories.json"

#: (label, env id, gym.make kwargs, reset options, steps)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, int]] = [
    ("tracking td discrete constant", "vantage/ActiveTracking-v0",
     {"reward": "td", "action_mode": "discrete", "motion": "constant"}, None, 120),
    ("tracking negative discrete switching", "vantage/ActiveTracking-v0",
     {"reward": "negative", "action_mode": "discrete", "motion": "switching", "switch_interval": 40}, None, 120),
    ("tracking hint continuous obstacles", "vantage/ActiveTracking-v0",
     {"reward": "hint", "action_mode": "continuous", "motion": "obstacles", "switch_interval": 50}, None, 120),
    ("tracking td discrete k3 32px", "vantage/ActiveTracking-v0",
     {"reward": "td", "action_mode": "discrete", "k": 3, "image_size": 32}, None, 60),
    ("face toolkit shaped", "vantage/DroneFaceRecognition-v0",
     {"action_set": "toolkit", "reward": "shaped"}, None, 80),
    ("face paper shaped start", "vantage/DroneFaceRecognition-v0",
     {"action_set": "paper", "reward": "shaped"}, {"start": {"distance": 2.0, "angle_deg": 60.0}}, 60),
    ("face paper paper", "vantage/DroneFaceRecognition-v0",
     {"action_set": "paper", "reward": "paper"}, {"identity": "id_003"}, 30),
    ("face toolkit paper distractors", "vantage/DroneFaceRecognition-v0",
     {"action_set": "toolkit", "reward": "paper", "n_distractors": 2}, None, 30),
]
INFO_SKIP = ("action_name",)


def _plain(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return str(value)


def record_case(env_id: str, kwargs: dict[str, Any], options: dict[str, Any] | None, steps: int,
                seed: int = 123) -> dict[str, Any]:
    """Run one seeded episode with seeded random actions; every reward, ``info`` value and pixel sum."""
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed, options=options)
    trace: dict[str, Any] = {"reset": {"obs_sum": int(obs.sum(dtype=np.int64)),
                                       "info": {k: _plain(v) for k, v in sorted(info.items()) if k not in INFO_SKIP}},
                             "steps": []}
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace["steps"].append({"obs_sum": int(obs.sum(dtype=np.int64)), "reward": float(reward),
                               "terminated": bool(terminated), "truncated": bool(truncated),
                               "info": {k: _plain(v) for k, v in sorted(info.items())}})
        if terminated or truncated:
            obs, info = env.reset()
            trace["steps"].append({"reset_obs_sum": int(obs.sum(dtype=np.int64))})
    env.close()
    return trace


def record_all() -> dict[str, Any]:
    return {label: record_case(env_id, kwargs, options, steps) for label, env_id, kwargs, options, steps in CASES}


if __name__ == "__main__":  # pragma: no cover - rewrites the golden file
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN_FILE.write_text(json.dumps(record_all(), indent=None, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN_FILE}")
