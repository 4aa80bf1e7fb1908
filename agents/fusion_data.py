"""``vantage data fusion``: collect a fusion dataset from scripted and random motions in the peg world.

Each episode is driven by the scripted insertion controller (:mod:`agents.fusion_scripted`) with Gaussian
action noise, or, with probability ``random_fraction``, by uniformly random actions: the data covers free
motion, contact with the block top, search and insertion. No labels are recorded: the encoder's objectives
compute theirs from the samples (:mod:`perception.fusion.dataset`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the environments)
from agents.fusion_scripted import ScriptedInsertion
from common.io import prepare_output
from envs.errors import InvalidArgumentError
from envs.tasks.peg_insertion import FUSION_MODALITIES
from perception.fusion.dataset import DATASET_FILE, SAMPLES_FILE, FusionDataset, write_dataset

__all__ = ["collect_fusion_data"]


def collect_fusion_data(out: str | Path, episodes: int, seed: int = 0, peg: str = "round", max_steps: int = 80,
                        random_fraction: float = 0.3, action_noise: float = 0.3, overwrite: bool = False,
                        progress: bool = True) -> FusionDataset:
    """Run ``episodes`` seeded episodes and write every step's sensors, action and next proprioception.

    Raises:
        InvalidArgumentError: a count or fraction out of range (checked before anything is written).
        OutputExistsError: ``out`` holds a dataset and ``overwrite`` is false.
    """
    for name, value, low in (("episodes", episodes, 1), ("max_steps", max_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgumentError(f"{name}={value!r} must be an integer >= {low}")
    if not 0.0 <= random_fraction <= 1.0:
        raise InvalidArgumentError(f"random_fraction={random_fraction!r} must be in [0, 1]")
    if not 0.0 <= action_noise <= 2.0:
        raise InvalidArgumentError(f"action_noise={action_noise!r} must be in [0, 2]")
    prepare_output(out, (DATASET_FILE, SAMPLES_FILE), overwrite=overwrite)
    env = gym.make("vantage/PegInsertion-v0", peg=peg)
    policy = ScriptedInsertion(env)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[Any]] = {k: [] for k in (*FUSION_MODALITIES, "action", "next_proprio", "episode", "step")}
    start = time.perf_counter()
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed * 100_003 + episode)
            policy.reset()
            random_episode = rng.random() < random_fraction
            for step in range(max_steps):
                if random_episode:
                    action = rng.uniform(-1, 1, env.action_space.shape)
                else:
                    action = policy.predict(obs)[0] + rng.normal(0, action_noise, env.action_space.shape)
                action = np.clip(action, -1, 1).astype(np.float32)
                next_obs, _, terminated, truncated, _ = env.step(action)
                for name in FUSION_MODALITIES:
                    rows[name].append(obs[name].astype(np.float16) if name == "depth" else obs[name])
                rows["action"].append(np.pad(action, (0, 4 - len(action))))
                rows["next_proprio"].append(next_obs["proprio"])
                rows["episode"].append(episode)
                rows["step"].append(step)
                obs = next_obs
                if terminated or truncated:
                    break
            if progress and (episode + 1) % 10 == 0:
                print(f"{episode + 1}/{episodes} episodes, {len(rows['step'])} samples", flush=True)
    finally:
        env.close()
    arrays = {k: np.asarray(v, np.int32 if k in ("episode", "step") else None) for k, v in rows.items()}
    description = {"collected_by": "vantage data fusion", "peg": peg, "seed": seed, "episodes_asked": episodes,
                   "max_steps": max_steps, "random_fraction": random_fraction, "action_noise": action_noise,
                   "seconds": round(time.perf_counter() - start, 1)}
    return write_dataset(out, arrays, description, overwrite=overwrite)
