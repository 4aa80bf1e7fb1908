"""A real local Ray Tune sweep of three tiny trials: the table, a crashing trial, resume, early stopping."""

import json
import os

import pytest
from click.testing import CliRunner

from agents.sweeps.engine import start_local
from scripts.cli import main

TINY = ["--set", "n_envs=1", "--set", "n_steps=32", "--set", "batch_size=32", "--set", "n_epochs=1",
        "--set", 'policy_kwargs={"features_extractor_kwargs": {"features_dim": 16}, "net_arch": [8]}']


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # One local Ray for the tests of this process (seconds and over a gigabyte to start): sweeps reuse it.
    return start_local(num_cpus=2)


def _sweep(out, *extra):
    # A learning rate of 1e30 turns the weights to NaN at the first update: the next rollout raises.
    return CliRunner().invoke(main, ["sweep", "tracking", "--set", "reward=hint", "--grid",
                                     "learning_rate=0.0003,0.001,1e30", "--seeds", "0", "--steps", "96",
                                     "--episodes", "1", "--eval", "motion=constant,switching", *TINY, "--out",
                                     str(out), *extra])


def test_a_local_sweep_makes_the_table_and_a_crashing_trial_does_not_stop_the_others(tmp_path):
    out = tmp_path / "sweep"
    result = _sweep(out)
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "sweep.json").read_text())
    assert [r["trial"] for r in payload["runs"]] == ["0.0003_s0", "0.001_s0"]
    assert [f["trial"] for f in payload["failed"]] == ["1e+30_s0"]
    assert "ValueError" in payload["failed"][0]["error"] and "invalid values" in payload["failed"][0]["error"]
    assert {(r["setup"], r["learning_rate"]) for r in payload["summary"]} == {
        ("constant", 0.0003), ("constant", 0.001), ("switching", 0.0003), ("switching", 0.001)}
    row = payload["summary"][0]
    assert row["seeds"] == 1 and row["distance_error_mean"] > 0 and "steps_mean" in row
    table = (out / "sweep.md").read_text()
    assert "| learning_rate | setup | distance_error (mean ± std)" in table
    assert "Failed (1" in table and "1e+30_s0: ValueError" in table
    assert (out / "sweep.png").stat().st_size > 1000
    for name in ("0.0003_s0", "0.001_s0"):
        run = out / "runs" / name
        for part in ("config.json", "model.zip", "train_summary.json", "study_eval.json", "tb", "checkpoints"):
            assert (run / part).exists(), (name, part)
        assert json.loads((run / "config.json").read_text())["agent_overrides"]["n_steps"] == 32
    failed = json.loads((out / "runs" / "1e+30_s0" / "sweep_trial.json").read_text())
    assert failed["status"] == "failed" and "ValueError" in failed["error"]
    assert payload["engine"]["trial_s_sum"] > 0 and payload["engine"]["wall_s"] > 0

    # --resume skips the finished trials (their files untouched) and tries the failed one again.
    stamps = {p: os.stat(p).st_mtime_ns for p in out.glob("runs/0.0*_s0/*") if p.is_file()}
    again = _sweep(out, "--resume")
    assert again.exit_code == 0, again.output
    assert "3 trial(s): 2 done before, 1 to run" in again.output
    assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps
    assert [f["trial"] for f in json.loads((out / "sweep.json").read_text())["failed"]] == ["1e+30_s0"]


@pytest.mark.slow
def test_asha_stops_poor_trials_early_and_resume_keeps_them_stopped(tmp_path):
    out = tmp_path / "asha"
    args = ["sweep", "tracking", "--set", "reward=hint", "--grid", "c_g=0.25,0.5,1.0,1.5,2.0,3.0", "--seeds", "0",
            "--steps", "256", "--episodes", "1", "--scheduler", "asha", "--report-every", "32", "--grace-steps",
            "32", "--reduction-factor", "2", *TINY, "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "sweep.json").read_text())
    assert payload["stopped"], "ASHA stopped no trial"
    assert all(s["steps"] < 256 for s in payload["stopped"])
    assert payload["engine"]["steps_trained"] < payload["engine"]["steps_full_grid"]
    again = CliRunner().invoke(main, [*args, "--resume"])
    assert again.exit_code == 0 and "6 trial(s): 6 done before, 0 to run" in again.output
