"""The face-recognition commands with toy settings: benchmark on a tiny grid, baseline eval, PPO smoke train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.ppo import ppo_kwargs
from agents.training import task_env_kwargs
from envs.errors import InvalidArgumentError
from scripts.cli import main

TINY_PPO = ["--set", "n_steps=16", "--set", "batch_size=16", "--set", "n_epochs=1"]


def test_bench_active_vs_static_on_a_tiny_grid(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, [
        "bench", "active-vs-static", "face-recognition", "--setups", "setup1,setup2,random",
        "--setup1-distances", "2", "--setup2-distances", "3", "--setup2-angles", "0,180", "--episodes", "1",
        "--random-episodes", "1", "--max-steps", "12", "--speed-steps", "100", "--out", str(out), "--json",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert set(summary["policies"]) == {"static", "rule"}
    static = summary["policies"]["static"]
    assert [(c["setup"], c["distance"], c["angle_deg"]) for c in static["cells"]] == [
        ("setup1", 2.0, 0.0), ("setup2", 3.0, 0.0), ("setup2", 3.0, 180.0), ("random", None, None)]
    for cell in static["cells"]:
        assert 0.0 <= cell["confidence_mean"] <= 1.0 and cell["steps_mean"] == 1.0
    assert static["speed"]["policy_fps"] > static["speed"]["pipeline_fps"] > 0
    assert summary["env_throughput"]["nav_steps_per_s"] > 0
    assert summary["env_throughput"]["recognition_ms"] > 0
    for name in ("face_recognition_bench.json", "face_recognition_tables.md", "face_recognition_heatmap.png",
                 "face_recognition_episodes.json"):
        assert (out / name).is_file(), name
    assert "Setup 2" in (out / "face_recognition_tables.md").read_text()


def test_bench_rejects_unknown_names(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "active-vs-static", "face-recognition", "--policies", "oracle",
                                       "--out", str(tmp_path)])
    assert result.exit_code != 0 and "oracle" in result.output
    result = CliRunner().invoke(main, ["bench", "active-vs-static", "face-recognition", "--setups", "setup9",
                                       "--out", str(tmp_path)])
    assert result.exit_code != 0 and "setup9" in result.output


@pytest.mark.parametrize("policy", ["static", "rule"])
def test_eval_baselines_without_a_run(tmp_path: Path, policy: str) -> None:
    result = CliRunner().invoke(main, ["eval", "face-recognition", "--policy", policy, "--episodes", "1",
                                       "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["policy"] == policy and payload["episodes"] == 1
    assert (tmp_path / f"eval_{policy}.json").is_file()


def test_eval_agent_needs_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "face-recognition", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "policy agent needs a run" in result.output


def test_train_face_recognition_smoke_and_eval(tmp_path: Path) -> None:
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(main, ["train", "face-recognition", "--preset", "face-cpu", "--steps", "32", "--n-envs",
                                  "2", "--checkpoint-every", "32", "--no-progress", "--out", str(run), *TINY_PPO])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["env_kwargs"] == {"reward": "shaped", "action_set": "toolkit", "backend": "mujoco"}
    assert config["preset"] == "face-cpu" and config["n_envs"] == 2
    assert (run / "model.zip").is_file()
    result = runner.invoke(main, ["eval", str(run), "--episodes", "1", "--policy", "static", "--json", "--out",
                                  str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["steps_mean"] == 1.0


def test_runs_made_with_the_old_short_preset_names_still_resume(tmp_path: Path) -> None:
    from agents.training import TrainConfig

    assert TrainConfig(task="face-recognition", preset="cpu").preset == "face-cpu"
    assert TrainConfig(task="tracking", preset="paper").preset == "tracking-paper"


def test_train_max_episode_steps_truncates_training_episodes(tmp_path: Path) -> None:
    from agents.training import load_config, make_env

    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "face-recognition", "--preset", "face-cpu", "--action-set", "paper",
                                       "--steps", "16", "--n-envs", "1", "--max-episode-steps", "5",
                                       "--no-progress", "--out", str(run), *TINY_PPO])
    assert result.exit_code == 0, result.output
    config = load_config(run)
    assert config.env_kwargs["max_episode_steps"] == 5
    env = make_env(config, n_envs=1)
    env.reset()
    dones = [bool(env.step([0])[2][0]) for _ in range(5)]  # "recognize": hovers, never collides
    env.close()
    assert dones == [False, False, False, False, True]


def test_bench_samples_the_agent_reproducibly_when_asked(tmp_path: Path) -> None:
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(main, ["train", "face-recognition", "--preset", "face-cpu", "--action-set", "paper",
                                  "--steps", "16", "--n-envs", "1", "--no-progress", "--out", str(run), *TINY_PPO])
    assert result.exit_code == 0, result.output
    bench = ["bench", "active-vs-static", "face-recognition", "--agent", str(run), "--policies", "",
             "--setups", "setup2", "--setup2-distances", "3", "--setup2-angles", "180", "--episodes", "2",
             "--max-steps", "15", "--speed-steps", "0", "--json"]
    outputs = []
    for name in ("a", "b", "greedy"):
        extra = [] if name == "greedy" else ["--stochastic"]
        result = runner.invoke(main, [*bench, *extra, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads((tmp_path / name / "face_recognition_episodes.json").read_text()))
    sampled, again, greedy = outputs
    assert list(sampled) == ["active (PPO, sampled)"] and list(greedy) == ["active (PPO)"]
    drop = ("policy_seconds", "env_seconds")
    strip = lambda eps: [{k: v for k, v in e.items() if k not in drop} for e in eps]  # noqa: E731
    sampled_eps = strip(sampled["active (PPO, sampled)"][0]["episodes"])
    assert sampled_eps == strip(again["active (PPO, sampled)"][0]["episodes"])
    assert sampled_eps != strip(greedy["active (PPO)"][0]["episodes"])
    summary = json.loads((tmp_path / "greedy" / "face_recognition_bench.json").read_text())
    assert summary["torch_threads"] == 1 and summary["agent_actions"] == "most likely"
    result = runner.invoke(main, ["bench", "active-vs-static", "face-recognition", "--stochastic",
                                  "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--agent RUN_DIR" in result.output


def test_train_options_belong_to_their_task(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "face-recognition", "--motion", "switching", "--out",
                                       str(tmp_path / "x")])
    assert result.exit_code != 0 and "motion='switching' does not apply to task 'face-recognition'" in result.output
    with pytest.raises(InvalidArgumentError, match="action_set='paper' does not apply to task 'tracking'"):
        task_env_kwargs("tracking", action_set="paper")
    assert task_env_kwargs("tracking") == {"reward": "td", "action_mode": "discrete", "motion": "constant",
                                           "backend": "mujoco"}


def test_toolkit_preset_is_the_toolkit_settings() -> None:
    kwargs = ppo_kwargs("face-toolkit")
    expected = {"policy": "CnnPolicy", "learning_rate": 3e-4, "n_steps": 6400, "batch_size": 64, "gamma": 0.9,
                "clip_range": 0.1, "target_kl": 0.1}
    assert {k: kwargs[k] for k in expected} == expected
    cpu = ppo_kwargs("face-cpu")
    assert cpu["n_steps"] < 6400
    paper = ppo_kwargs("face-paper")["policy_kwargs"]
    assert paper["features_extractor_kwargs"] == {"features_dim": 256}
    # The CPU preset keeps the paper's CNN: it tells which way a person faces better than the tracking CNN.
    assert cpu["policy_kwargs"]["features_extractor_class"] is paper["features_extractor_class"]


def test_paper_cnn_layers() -> None:
    import gymnasium as gym
    import numpy as np
    import torch as th

    from agents.face_policies import FacePaperCNN

    net = FacePaperCNN(gym.spaces.Box(0, 255, (3, 96, 128), np.uint8))
    convs = [m for m in net.cnn if isinstance(m, th.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(16, (8, 8)), (32, (4, 4))]
    assert net(th.zeros(2, 3, 96, 128)).shape == (2, 256)
    with pytest.raises(InvalidArgumentError, match="uint8 image"):
        FacePaperCNN(gym.spaces.Box(0, 1, (4,), np.float32))
