"""`vantage sweep` and `vantage bench rewards` without Ray's cost: bad input, refused folders, adopted runs."""

import functools
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.training import TrainConfig, train
from scripts.cli import main

TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 1,
        "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 16}, "net_arch": [8]}}


@pytest.mark.parametrize(("args", "message"), [
    (["--grid", "rewards=td,hint"], "unknown sweep axis 'rewards' for task 'tracking'"),
    (["--grid", "reward=td,bonus"], "reward='bonus' is not allowed; choose from td, negative, hint"),
    (["--grid", "reward="], "'reward=' has no values: the grid would be empty"),
    (["--grid", "reward"], "'reward' must look like NAME=A,B,C"),
    (["--set", "motion=spiral"], "motion='spiral' is not allowed"),
    (["--seeds", "0,x"], "must be a comma-separated list"),
    (["--grid", "gamma=fast"], "gamma='fast' must be a finite number"),
    (["--address", "127.0.0.1:9"], "cannot reach the Ray cluster at 127.0.0.1:9"),
    (["--address", "nowhere"], "must be HOST:PORT"),
])
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, args, message):
    out = tmp_path / "sweep"
    started = time.monotonic()
    result = CliRunner().invoke(main, ["sweep", "tracking", *args, "--steps", "64", "--out", str(out)])
    assert result.exit_code in (1, 2), result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()
    assert time.monotonic() - started < 60  # an unreachable cluster is refused, not waited for


def test_a_bad_yaml_file_is_named(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("search:\n  c_g: {normal: [0, 1]}\nsamples: 4\n")
    result = CliRunner().invoke(main, ["sweep", "tracking", "--config", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "search range kind 'normal' of c_g is unknown" in result.output
    path.write_text("task: face-recognition\n")
    result = CliRunner().invoke(main, ["sweep", "tracking", "--config", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "is a sweep of task 'face-recognition', not 'tracking'" in result.output


def _finished_runs(root: Path, names_configs: dict[str, TrainConfig], setups: list[str], episodes: int) -> None:
    """Runs as the reward study wrote them before it was a sweep: trained, with its own eval cache format."""
    for name, config in names_configs.items():
        train(config, root / "runs" / name, progress_bar=False)
        figures = {"distance_error": 0.01 * (1 + config.seed), "steps": 900.0, "angle_error": 0.1,
                   "lost_fraction": 0.0}
        result = {"reward": config.env_kwargs["reward"], "action_mode": config.env_kwargs["action_mode"],
                  "seed": config.seed, "train_wall_s": 1.0, "eval": dict.fromkeys(setups, figures)}
        (root / "runs" / name / "study_eval.json").write_text(
            json.dumps({"settings": {"setups": setups, "episodes": episodes}, "result": result}))


def _legacy(reward, mode, seed):
    return TrainConfig(task="tracking", algo="ppo", steps=32, seed=seed, n_envs=1, checkpoint_every=32,
                       env_kwargs={"reward": reward, "action_mode": mode, "motion": "constant"},
                       agent_overrides=TINY)


@pytest.fixture
def tiny_study(monkeypatch):
    import agents.reward_study as study

    monkeypatch.setattr(study, "RewardStudyConfig", functools.partial(
        study.RewardStudyConfig, agent_overrides=TINY, base={"n_envs": 1, "checkpoint_every": 32}))


def test_bench_rewards_adopts_the_runs_of_the_old_study_without_training(tmp_path, tiny_study):
    out = tmp_path / "reward_study"
    runs = {f"{r}_discrete_s{s}": _legacy(r, "discrete", s) for r in ("td", "hint") for s in (0, 1)}
    _finished_runs(out, runs, ["constant", "switching"], 2)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["bench", "rewards", "tracking", "--steps", "32", "--seeds", "0,1",
                                       "--episodes", "2", "--rewards", "td,hint", "--action-modes", "discrete",
                                       "--setups", "constant,switching", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 trial(s): 4 done before, 0 to run" in result.output  # no Ray, no training, no evaluation
    assert {p: p.stat().st_mtime_ns for p in before} == before
    payload = json.loads((out / "reward_study.json").read_text())
    td = next(r for r in payload["summary"] if (r["setup"], r["reward"]) == ("constant", "td"))
    assert td["distance_error_mean"] == pytest.approx(0.015) and td["seeds"] == 2
    assert "| constant, discrete | 0.015 ± 0.005 / 900 |" in (out / "reward_study.md").read_text()
    assert (out / "reward_study.png").stat().st_size > 1000
    # The same folder through `vantage sweep --resume`: the study's grid gives the same trials, adopted as well.
    conf = tmp_path / "study.yaml"
    conf.write_text(json.dumps({"set": {"motion": "constant", **TINY}, "grid": {"reward": ["td", "hint"],
                                "action_mode": ["discrete"]}, "seeds": [0, 1], "steps": 32,
                                "base": {"n_envs": 1, "checkpoint_every": 32},
                                "eval": {"motion": ["constant", "switching"]}, "episodes": 2}))  # JSON is YAML
    result = CliRunner().invoke(main, ["sweep", "tracking", "--config", str(conf), "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert "4 trial(s): 4 done before, 0 to run" in result.output
    assert "| td | discrete | constant | 0.015 ± 0.005" in (out / "sweep.md").read_text()
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_a_run_trained_with_other_settings_is_refused_naming_them(tmp_path, tiny_study):
    out = tmp_path / "reward_study"
    _finished_runs(out, {"td_discrete_s0": _legacy("td", "discrete", 0)}, ["constant"], 1)
    result = CliRunner().invoke(main, ["bench", "rewards", "tracking", "--steps", "64", "--seeds", "0",
                                       "--rewards", "td", "--action-modes", "discrete", "--out", str(out)])
    assert result.exit_code == 1
    assert "td_discrete_s0 was trained with steps=32 (this sweep: 64)" in result.output


def test_resume_refuses_another_sweeps_folder_and_a_new_sweep_refuses_a_used_one(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep_spec.json").write_text(json.dumps({"task": "tracking", "steps": 64}))
    base = ["sweep", "tracking", "--grid", "reward=td", "--steps", "128", "--out", str(out)]
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 1 and "already holds a sweep (sweep_spec.json); pass --resume" in result.output
    result = CliRunner().invoke(main, [*base, "--resume"])
    assert result.exit_code == 1 and "holds another sweep" in result.output and "steps: 64 there, 128 now" in (
        result.output)
    assert sorted(p.name for p in out.iterdir()) == ["sweep_spec.json"]


def test_a_training_run_folder_is_never_a_sweep_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = CliRunner().invoke(main, ["sweep", "tracking", "--grid", "reward=td", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "holds a training run (config.json)" in result.output


def test_several_nodes_need_shared_storage(tmp_path):
    from agents.sweeps.engine import ClusterError, check_storage

    class TwoNodes:
        @staticmethod
        def nodes():
            return [{"Alive": True, "NodeID": "a"}, {"Alive": True, "NodeID": "b"}, {"Alive": False}]

    with pytest.raises(ClusterError, match=r"has 2 nodes.*pass --storage DIR"):
        check_storage(TwoNodes, tmp_path, None)
    check_storage(type("One", (), {"nodes": staticmethod(lambda: [{"Alive": True}])}), tmp_path, None)
