"""The benchmark and demo commands on toy budgets."""

import json

import pytest
from click.testing import CliRunner

from agents.training import TrainConfig, train
from scripts.cli import main

TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 1,
        "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 16}, "net_arch": [8]}}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(task="tracking", steps=32, n_envs=1, checkpoint_every=32, agent_overrides=TINY), run,
          progress_bar=False)
    return run


def test_bench_env_json(tmp_path):
    result = CliRunner().invoke(main, ["bench", "env", "tracking", "--steps", "200", "--repeats", "1", "--json",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["env_steps_per_s"] > 0 and payload["raw_steps_per_s"] > 0
    assert payload["ratio"] == pytest.approx(payload["env_steps_per_s"] / payload["raw_steps_per_s"], rel=1e-2)
    assert json.loads((tmp_path / "env_tracking.json").read_text())["n_steps"] == 200


def test_bench_rewards_tiny_grid(tmp_path, monkeypatch):
    # Toy agents: the study's own training settings are replaced by a tiny PPO (its trials run on a local Ray).
    import functools

    import agents.reward_study as study

    monkeypatch.setattr(study, "RewardStudyConfig", functools.partial(
        study.RewardStudyConfig, agent_overrides=TINY, base={"n_envs": 1, "checkpoint_every": 32}))
    out = tmp_path / "study"
    result = CliRunner().invoke(main, ["bench", "rewards", "tracking", "--steps", "32", "--seeds", "0",
                                       "--episodes", "1", "--rewards", "td,hint", "--action-modes", "discrete",
                                       "--setups", "constant,switching", "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "reward_study.json").read_text())
    assert {(r["setup"], r["reward"]) for r in payload["summary"]} == {
        ("constant", "td"), ("constant", "hint"), ("switching", "td"), ("switching", "hint")}
    assert (out / "reward_study.png").stat().st_size > 1000
    assert "| constant, discrete |" in (out / "reward_study.md").read_text()
    # a second call reuses the finished runs
    result = CliRunner().invoke(main, ["bench", "rewards", "tracking", "--steps", "32", "--seeds", "0",
                                       "--episodes", "1", "--rewards", "td", "--action-modes", "discrete",
                                       "--setups", "constant", "--out", str(out)])
    assert result.exit_code == 0, result.output


def test_bench_rewards_rejects_unknown_names(tmp_path):
    result = CliRunner().invoke(main, ["bench", "rewards", "tracking", "--rewards", "td,bonus", "--out",
                                       str(tmp_path)])
    assert result.exit_code != 0
    assert "bonus" in result.output and "Traceback" not in result.output


def test_demo_on_a_given_run(tiny_run, tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--task", "tracking", "--run", f"tracking={tiny_run}", "--episodes",
                                       "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("results.md", "results.json", "tracking.png", "tracking_active.mp4", "tracking_active.gif"):
        assert (out / "tracking" / name).stat().st_size > 0, name
    assert "## tracking" in (out / "README.md").read_text()
    table = (out / "tracking" / "results.md").read_text()
    assert "active (PPO), constant" in table and "static, switching" in table


@pytest.mark.parametrize(("args", "message"), [
    (["tracking", "--set", "no_such_key=1"], "unknown ppo setting 'no_such_key'"),
    (["tracking", "--set", "n_steps=-5"], "PPO setting n_steps=-5 must be an integer >= 1"),
    (["tracking", "--env", "no_such_setting=1"], "TrackingSettings setting 'no_such_setting'"),
    (["tracking", "--preset", "face-turbo"], "unknown ppo preset 'face-turbo'"),
    (["face-recognition", "--algo", "rainbow"], "no default rainbow preset"),
])
def test_train_with_bad_settings_says_one_line_and_leaves_no_run(tmp_path, args, message):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", *args, "--steps", "8", "--no-progress", "--out", str(run)])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output and not run.exists()
