"""Gymnasium registration of every Vantage environment.

Entry points are strings so that ``import envs`` loads no simulator. Episode limits live here, not in the
classes. The simulator is a ``backend=`` keyword argument, never part of an id.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

#: id -> (entry point, max_episode_steps)
ENVIRONMENTS: dict[str, tuple[str, int]] = {
    "vantage/ActiveTracking-v0": ("envs.tasks.active_tracking:ActiveTrackingEnv", 1000),
    "vantage/DroneFaceRecognition-v0": ("envs.tasks.face_recognition:DroneFaceEnv", 2000),
}


def register_all() -> None:
    """Register the Vantage environments with Gymnasium (idempotent)."""
    for env_id, (entry_point, max_steps) in ENVIRONMENTS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)
