"""Environment throughput against the raw cost of the same simulation work in bare MuJoCo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


def env_steps_per_second(env_id: str, n_steps: int, seed: int = 0, **env_kwargs: Any) -> float:
    """Control steps per second of ``env_id`` under uniformly random actions (resets included)."""
    env = gym.make(env_id, **env_kwargs)
    try:  # closed on an error or Ctrl-C too: the simulator (a Webots process, a GL context) must not linger
        env.action_space.seed(seed)
        env.reset(seed=seed)
        for _ in range(20):  # warm up the renderer and caches
            env.step(env.action_space.sample())
        env.reset(seed=seed)
        actions = [env.action_space.sample() for _ in range(n_steps)]
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        elapsed = time.perf_counter() - start
    finally:
        env.close()
    return n_steps / elapsed


def raw_mujoco_steps_per_second(world: str | Path, camera: str, size: tuple[int, int], substeps: int,
                                n_steps: int) -> float:
    """The bound: ``substeps`` calls of ``mj_step`` plus one ``size`` (height, width) render of ``camera`` per
    step, in bare MuJoCo on the world file ``world``."""
    from envs.sim.mujoco import mujoco  # the same GL choice as the backend

    model = mujoco.MjModel.from_xml_path(str(world))
    model.vis.quality.offsamples = 0
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, *size)
    try:
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            renderer.scene.flags[flag] = False
        cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        data.qvel[:] = 0.01
        for _ in range(20):
            mujoco.mj_step(model, data)
            renderer.update_scene(data, cam_id)
            renderer.render()
        start = time.perf_counter()
        for _ in range(n_steps):
            for _ in range(substeps):
                mujoco.mj_step(model, data)
            renderer.update_scene(data, cam_id)
            renderer.render()
        elapsed = time.perf_counter() - start
    finally:
        renderer.close()
    return n_steps / elapsed


def env_throughput(env_id: str, n_steps: int = 3000, repeats: int = 3, seed: int = 0,
                   **env_kwargs: Any) -> dict[str, Any]:
    """Benchmark ``env_id`` on MuJoCo against its raw bound: the same physics steps and one render of the
    agent's camera per step, with nothing else.

    Each figure is the best of ``repeats`` runs, which filters out interference from other processes.
    """
    import envs  # noqa: F401  (registers the environments)

    probe = gym.make(env_id, **env_kwargs).unwrapped
    try:
        world, camera = probe.sim.world, probe.camera
        size, substeps = tuple(probe.sim.camera_shape(camera)), probe.sim.n_substeps
    finally:
        probe.close()
    env_sps = max(env_steps_per_second(env_id, n_steps, seed, **env_kwargs) for _ in range(repeats))
    raw_sps = max(raw_mujoco_steps_per_second(world, camera, size, substeps, n_steps) for _ in range(repeats))
    return {
        "env": env_id,
        "backend": "mujoco",
        "image_size": size[0] if size[0] == size[1] else list(size),
        "physics_substeps_per_step": substeps,
        "n_steps": n_steps,
        "repeats": repeats,
        "env_steps_per_s": round(env_sps, 1),
        "raw_steps_per_s": round(raw_sps, 1),
        "ratio": round(env_sps / raw_sps, 3),
        "target_ratio": 0.6,
        "meets_target": bool(env_sps / raw_sps >= 0.6),
        "ms_per_env_step": round(1000 / env_sps, 3),
        "ms_per_raw_step": round(1000 / raw_sps, 3),
        "numpy": np.__version__,
    }
