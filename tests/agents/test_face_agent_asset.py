"""The shipped face-recognition agent (``assets/models/face_ppo_paper_shaped``) still flies and recognises."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym

import envs  # noqa: F401
from agents.evaluation import run_episode
from agents.training import load_agent
from envs.tasks.face_recognition import FaceEvaluator

AGENT = Path(__file__).resolve().parents[2] / "assets" / "models" / "face_ppo_paper_shaped"
# Behind the person's left shoulder, 3 m away: the static camera sees only hair there.
BEHIND = {"start": {"distance": 3.0, "angle_deg": 240.0}}
SEED = 1  # identity id_004; actions sampled, as the benchmark runs the agent (seeded, so reproducible)


def test_shipped_agent_flies_round_to_the_face_and_recognises() -> None:
    config, model = load_agent(AGENT)
    assert config.task == "face-recognition" and config.env_kwargs["action_set"] == "paper"
    assert model.num_timesteps >= 500_000
    env = gym.make(config.env_id, **config.env_kwargs)
    try:
        active = run_episode(model, env, SEED, FaceEvaluator(), options=BEHIND, max_steps=120, deterministic=False)
        static = run_episode(config.spec.make_baseline("static", env), env, SEED, FaceEvaluator(), options=BEHIND,
                             max_steps=120)
    finally:
        env.close()
    got = active.metrics
    assert got["correct"] and got["confidence_correct"] > 0.7 and not got["collision"]
    # It ended the episode by recognising inside the target zone, in front of the face.
    assert active.steps < 120 and abs(got["final_distance"] - 1.0) <= 0.3 and got["final_frontal_angle"] < 0.15
    assert not static.metrics["correct"]
