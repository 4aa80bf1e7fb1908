"""Tiny trained runs and their bundles, shared by the deployment tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.training import TrainConfig, train

PPO = {"n_steps": 32, "batch_size": 16, "n_epochs": 1,
       "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 16}, "net_arch": {"pi": [8], "vf": [8]}}}
RAINBOW = {"learning_starts": 8, "buffer_size": 200, "batch_size": 8, "target_update_interval": 16, "train_freq": 4,
           "policy_kwargs": {"net_arch": [16], "features_extractor_kwargs": {"features_dim": 16}}}
#: A 48 px camera (about the smallest Rainbow's Nature CNN takes) and a long patience keep the tracking episodes
#: cheap and unterminated.
TRACKING_ENV = {"reward": "td", "action_mode": "discrete", "image_size": 48, "lost_patience": 500}
FACE_ENV = {"action_set": "paper", "reward": "shaped", "max_episode_steps": 40}


def _run(root: Path, task: str, algo: str, env: dict, preset: str | None = None) -> Path:
    config = TrainConfig(task=task, algo=algo, steps=32, n_envs=1, checkpoint_every=32, preset=preset,
                         agent_overrides=RAINBOW if algo == "rainbow" else PPO, env_kwargs=env)
    run = root / f"{task}_{algo}"
    train(config, run, progress_bar=False, log=lambda line: None)
    return run


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Briefly trained (32 steps) PPO and Rainbow runs on tracking and face recognition."""
    root = tmp_path_factory.mktemp("deploy_runs")
    return {"tracking_ppo": _run(root, "tracking", "ppo", TRACKING_ENV),
            "tracking_rainbow": _run(root, "tracking", "rainbow", TRACKING_ENV),
            "face_ppo": _run(root, "face-recognition", "ppo", FACE_ENV, "face-cpu"),
            "face_rainbow": _run(root, "face-recognition", "rainbow", FACE_ENV, "tracking")}


@pytest.fixture(scope="session")
def bundles(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An fp32 bundle of each run, parity measured on 64 observations."""
    from agents.export_bundle import export_bundle

    root = tmp_path_factory.mktemp("deploy_bundles")
    out = {}
    for name, run in runs.items():
        out[name] = root / name
        export_bundle(run, out[name], samples=64, calibration_samples=32)
    return out
