"""PPO presets, split learning rates, per-episode normalisation, checkpoints, train -> eval -> resume."""

import json
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from stable_baselines3.common.logger import configure

from agents.checkpoints import load_model, save_model_atomic
from agents.normalization import EpisodeMinMaxRolloutBuffer, episode_segments
from agents.ppo import VantagePPO, make_ppo, ppo_kwargs
from agents.training import TrainConfig, load_agent, make_env, train
from common.errors import OutputExistsError
from envs.errors import CheckpointError, UnknownNameError
from scripts.cli import main

TINY = {
    "n_steps": 64,
    "batch_size": 32,
    "n_epochs": 1,
    "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 32}, "net_arch": {"pi": [16], "vf": [16]}},
}


def _tiny_config(**kw):
    base = dict(
        task="tracking",
        steps=128,
        n_envs=1,
        checkpoint_every=64,
        agent_overrides=TINY,
        env_kwargs={"reward": "td", "action_mode": "discrete"},
    )
    base.update(kw)
    return TrainConfig(**base)


def test_preset_lookup_and_errors():
    kwargs = ppo_kwargs("tracking-paper", {"gamma": 0.5, "policy_kwargs": {"critic_lr_scale": 2.0}})
    assert kwargs["gamma"] == 0.5 and kwargs["clip_range"] == 0.2 and kwargs["n_epochs"] == 10
    assert kwargs["policy_kwargs"]["critic_lr_scale"] == 2.0
    assert kwargs["policy_kwargs"]["share_features_extractor"] is False
    known = "face-cpu, face-paper, face-toolkit, fusion-end-to-end, fusion-latent, tracking-paper, vqa"
    with pytest.raises(UnknownNameError, match=known):
        ppo_kwargs("fast")


def test_split_learning_rates_follow_schedule():
    env = make_env(_tiny_config())
    model = make_ppo(env, "tracking-paper", overrides=TINY, learning_rate=1e-4)
    groups = model.policy.optimizer.param_groups
    assert [g["lr_scale"] for g in groups] == [1.0, 3.0]
    model.set_logger(configure(None, []))
    model._update_learning_rate(model.policy.optimizer)
    assert groups[0]["lr"] == pytest.approx(1e-4) and groups[1]["lr"] == pytest.approx(3e-4)
    critic = {id(p) for p in model.policy.vf_features_extractor.parameters()}
    actor = {id(p) for p in model.policy.pi_features_extractor.parameters()}
    assert critic <= {id(p) for p in groups[1]["params"]}
    assert actor <= {id(p) for p in groups[0]["params"]}
    env.close()


def test_episode_segments_and_minmax_buffer():
    assert episode_segments(np.array([1, 0, 0, 1, 0])) == [(0, 3), (3, 5)]
    assert episode_segments(np.array([0, 0])) == [(0, 2)]
    import gymnasium as gym

    buf = EpisodeMinMaxRolloutBuffer(
        5, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2), n_envs=1, gamma=0.0, gae_lambda=1.0
    )
    for r, start in zip([1.0, 3.0, 2.0, -1.0, 5.0], [1, 0, 0, 1, 0]):
        buf.add(np.zeros((1, 1)), np.zeros((1, 1)), np.array([r]), np.array([start]), torch.zeros(1), torch.zeros(1))
    buf.compute_returns_and_advantage(torch.zeros(1), np.array([0]))
    assert buf.rewards[:, 0] == pytest.approx([0.0, 1.0, 0.5, 0.0, 1.0])
    assert buf.returns[:, 0] == pytest.approx([0.0, 1.0, 0.5, 0.0, 1.0])  # gamma 0: returns are rewards


def test_train_writes_run_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    summary = train(_tiny_config(), run, progress_bar=False)
    assert summary["num_timesteps"] == 128
    for name in ("config.json", "model.zip", "train_summary.json", "checkpoints/latest.zip", "checkpoints/latest.json"):
        assert (run / name).is_file(), name
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    with pytest.raises(OutputExistsError, match="--resume"):
        train(_tiny_config(), run, progress_bar=False)
    summary = train(_tiny_config(steps=256), run, resume=True, progress_bar=False)
    assert summary["num_timesteps"] == 256 and summary["resumed"]
    assert json.loads((run / "checkpoints/latest.json").read_text())["num_timesteps"] == 256
    config, agent = load_agent(run)
    assert config.steps == 256 and isinstance(agent, VantagePPO)


def test_an_interrupted_resume_loads_the_newer_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(_tiny_config(), run, progress_bar=False)
    stale = {name: (run / name).read_bytes() for name in ("model.zip", "train_summary.json")}
    train(_tiny_config(steps=256), run, resume=True, progress_bar=False)
    # An interrupt after the last checkpoint leaves the previous session's final model and summary behind.
    for name, content in stale.items():
        (run / name).write_bytes(content)
    assert load_agent(run)[1].num_timesteps == 256
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"num_timesteps": 128}))
    assert load_agent(run)[1].num_timesteps == 128  # not newer: the final model


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="is not a training run"):
        train(_tiny_config(), tmp_path, resume=True, progress_bar=False)


def test_corrupt_checkpoints_give_named_errors(tmp_path):
    bad = tmp_path / "model.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a zip"):
        load_model(VantagePPO, bad)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("data", "{}")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(VantagePPO, tmp_path / "empty.zip")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(VantagePPO, tmp_path / "missing.zip")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_agent(tmp_path / "run")


def test_atomic_save_round_trip_reproduces_actions(tmp_path):
    env = make_env(_tiny_config())
    model = make_ppo(env, "tracking-paper", overrides=TINY, seed=0)
    save_model_atomic(model, tmp_path / "m.zip")
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]  # no temporary files left behind
    loaded = load_model(VantagePPO, tmp_path / "m.zip")
    obs = env.reset()
    for _ in range(5):
        a1, _ = model.predict(obs, deterministic=True)
        a2, _ = loaded.predict(obs, deterministic=True)
        np.testing.assert_array_equal(a1, a2)
        obs, *_ = env.step(a1)
    env.close()


def test_cli_train_eval_resume(tmp_path):
    runner = CliRunner()
    run = tmp_path / "cli_run"
    tiny = [
        "--set",
        "n_steps=64",
        "--set",
        "batch_size=32",
        "--set",
        "n_epochs=1",
        "--set",
        'policy_kwargs={"features_extractor_kwargs": {"features_dim": 32}, "net_arch": [16]}',
    ]
    result = runner.invoke(
        main,
        [
            "train",
            "tracking",
            "--steps",
            "64",
            "--n-envs",
            "1",
            "--checkpoint-every",
            "64",
            "--no-progress",
            "--gamma",
            "0.5",
            "--out",
            str(run),
            *tiny,
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["agent_overrides"]["gamma"] == 0.5
    result = runner.invoke(
        main, ["train", "tracking", "--steps", "128", "--resume", "--no-progress", "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    assert "128 steps" in result.output
    result = runner.invoke(
        main, ["eval", str(run), "--episodes", "2", "--seed", "3", "--motion", "switching", "--json", "--out",
               str(tmp_path / "eval")]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["episodes"] == 2
    for key in ("distance_error_mean", "distance_error_std", "steps_mean"):
        assert isinstance(payload[key], float)
    assert (tmp_path / "eval" / "eval_agent_motion-switching.json").is_file()
    assert not list(run.glob("eval_*"))  # results never go into the run directory
    result = runner.invoke(main, ["eval", str(run), "--episodes", "1", "--policy", "static", "--out",
                                  str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "| static |" in result.output


def test_cli_rejects_bad_names(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "tracking", "--reward", "positive", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "positive" in result.output
    result = runner.invoke(main, ["train", "flying", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "flying" in result.output


def test_eval_never_replaces_results_without_overwrite(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(_tiny_config(steps=64), run, progress_bar=False, log=lambda line: None)
    monkeypatch.chdir(tmp_path)  # the default folder, runs/eval/<run>, is relative to the working directory
    runner = CliRunner()
    base = ["eval", str(run), "--episodes", "1", "--max-steps", "5"]
    out = tmp_path / "eval"
    assert runner.invoke(main, [*base, "--out", str(out)]).exit_code == 0
    first = (out / "eval_agent.json").read_bytes()
    result = runner.invoke(main, [*base, "--seed", "9", "--out", str(out)])
    assert result.exit_code == 1 and "already holds eval_agent.json; pass --overwrite" in result.output
    assert (out / "eval_agent.json").read_bytes() == first
    result = runner.invoke(main, [*base, "--seed", "9", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "eval_agent.json").read_text())["settings"]["seed"] == 9
    # Without --out, the default folder keeps every result: the next one is numbered.
    for expected in ("eval_agent.json", "eval_agent_2.json"):
        result = runner.invoke(main, base)
        assert result.exit_code == 0 and expected in result.output, result.output
    assert sorted(p.name for p in (tmp_path / "runs" / "eval" / "run").iterdir()) == ["eval_agent.json",
                                                                                      "eval_agent_2.json"]
    # Results never go into a run folder, and a video is never replaced silently either.
    result = runner.invoke(main, [*base, "--out", str(run)])
    assert result.exit_code == 1 and "holds a training run (config.json)" in result.output, result.output
    video = tmp_path / "clip.gif"
    video.write_bytes(b"mine")
    result = runner.invoke(main, [*base, "--out", str(tmp_path / "v"), "--video", str(video)])
    assert result.exit_code == 1 and "clip.gif" in result.output and video.read_bytes() == b"mine"
    assert not (tmp_path / "v").exists()  # refused before any episode ran or anything was written
    result = runner.invoke(main, [*base, "--out", str(tmp_path / "v"), "--video", str(tmp_path / "clip.avi")])
    assert result.exit_code == 1 and "must end in .mp4 or .gif" in result.output
    result = runner.invoke(main, [*base, "--out", str(tmp_path / "v"), "--video", str(video), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert video.read_bytes()[:3] == b"GIF" and not [p for p in tmp_path.glob(".clip*")]
