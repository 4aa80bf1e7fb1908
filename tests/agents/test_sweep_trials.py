"""One sweep trial without Ray: reports while training, the evaluation cache, the reward study's old cache."""

import json

import torch

from agents.sweeps import EvalSettings, SweepSpace, run_trial
from agents.sweeps.trials import EVAL_FILE, cached_result
from agents.training import load_agent

TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 1,
        "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 16}, "net_arch": [8]}}


def _trial(steps=96):
    space = SweepSpace(task="tracking", steps=steps, seeds=(0,), fixed={"reward": "hint", **TINY},
                       base={"n_envs": 1, "checkpoint_every": 32})
    return space.trials()[0]


def _weights(run):
    _, agent = load_agent(run)
    return [p.detach().clone() for p in agent.policy.parameters()]


def test_reports_reach_the_scheduler_and_leave_training_as_it_is(tmp_path):
    trial = _trial()
    settings = EvalSettings(setups={"constant": {"motion": "constant"}, "switching": {"motion": "switching"}},
                            episodes=1, metric="distance_error", mode="min", report_every=32, report_episodes=1,
                            max_steps=20)
    reports = []
    result = run_trial(trial, tmp_path / "reported", settings, report=reports.append, log=lambda line: None)
    assert [r["timesteps"] for r in reports] == [32, 64, 96]  # the last: the final report, after evaluation
    assert all(r["score"] == r["distance_error"] for r in reports[:-1])
    final = reports[-1]
    assert final["final"] and final["score"] == (result["eval"]["constant"]["distance_error"]
                                                 + result["eval"]["switching"]["distance_error"]) / 2
    quiet = run_trial(trial, tmp_path / "quiet", settings, log=lambda line: None)
    assert quiet["eval"] == result["eval"]
    assert all(torch.equal(a, b) for a, b in zip(_weights(tmp_path / "reported"), _weights(tmp_path / "quiet")))


def test_a_finished_trial_is_neither_trained_nor_evaluated_again(tmp_path):
    trial = _trial(32)
    settings = EvalSettings(episodes=1, metric="distance_error", mode="min", max_steps=20)
    run = tmp_path / "run"
    first = run_trial(trial, run, settings, log=lambda line: None)
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    assert run_trial(trial, run, settings, log=lambda line: None) == first
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # Other evaluation settings: the run is reused, only the evaluation is made again.
    other = EvalSettings(episodes=2, metric="distance_error", mode="min", max_steps=20)
    assert cached_result(run, trial, other) is None
    again = run_trial(trial, run, other, log=lambda line: None)
    assert again["train_wall_s"] == first["train_wall_s"]
    assert json.loads((run / EVAL_FILE).read_text())["settings"]["episodes"] == 2


def test_the_reward_studys_old_cache_is_read_as_motion_setups(tmp_path):
    trial = _trial(32)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.zip").write_bytes(b"")
    figures = {"distance_error": 0.02, "steps": 1000.0, "angle_error": 0.02, "lost_fraction": 0.0}
    (run / EVAL_FILE).write_text(json.dumps({
        "settings": {"episodes": 5, "setups": ["constant", "switching"]},
        "result": {"reward": "hint", "action_mode": "discrete", "seed": 0, "train_wall_s": 1.0,
                   "eval": {"constant": figures, "switching": figures}}}))
    motions = EvalSettings(setups={"constant": {"motion": "constant"}, "switching": {"motion": "switching"}},
                           episodes=5)
    assert cached_result(run, trial, motions)["eval"]["constant"] == figures
    assert cached_result(run, trial, EvalSettings(setups={"constant": {"motion": "constant"}}, episodes=5)) is None
    assert cached_result(run, trial, EvalSettings(setups={"constant": {"k": 3}, "switching": {}}, episodes=5)) is None
