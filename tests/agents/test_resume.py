"""`--resume` continues exactly the run in the folder: bit for bit, with its own settings, to its step target."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from stable_baselines3.common.callbacks import BaseCallback

from agents.checkpoints import (
    RESUME_STATE,
    capture_random_state,
    load_model,
    restart_episodes,
    restart_seed,
    restore_random_state,
)
from agents.rainbow import Rainbow
from agents.training import TrainConfig, load_agent, train
from envs.errors import CheckpointError, InvalidArgumentError
from scripts.cli import main

RAINBOW = {"learning_starts": 16, "buffer_size": 300, "batch_size": 8, "target_update_interval": 16, "train_freq": 4,
           "policy_kwargs": {"net_arch": [16], "features_extractor_kwargs": {"features_dim": 32}}}
PPO = {"n_steps": 16, "batch_size": 16, "n_epochs": 2,
       "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 16}, "net_arch": {"pi": [8], "vf": [8]}}}
#: Random actions lose the target within ten steps; a longer patience keeps episodes (and slow resets) fewer.
FAST_ENV = {"reward": "td", "action_mode": "discrete", "lost_patience": 500}
CHECKPOINT = 32  # the interrupted run's checkpoint step; both algorithms' update boundaries fall on it


def _config(algo: str, steps: int) -> TrainConfig:
    return TrainConfig(task="tracking", algo=algo, steps=steps, n_envs=2, checkpoint_every=CHECKPOINT,
                       agent_overrides=RAINBOW if algo == "rainbow" else PPO,
                       env_kwargs=FAST_ENV)


class _CrashAfterCheckpoint(BaseCallback):
    """Dies (as a crash would) a few steps after the checkpoint, before the next one."""

    def _on_step(self) -> bool:
        if self.num_timesteps >= CHECKPOINT + 8:
            raise RuntimeError("simulated crash")
        return True


class _RestartAt(BaseCallback):
    """What a resume does at its checkpoint, done at the same step by a run that never stops."""

    def __init__(self, step: int, seed: int) -> None:
        super().__init__()
        self.step, self.seed, self.done = step, seed, False

    def _on_rollout_start(self) -> None:
        if not self.done and self.num_timesteps == self.step:
            restart_episodes(self.model, restart_seed(self.seed, self.step))
            self.done = True

    def _on_step(self) -> bool:
        return True


def _state(model) -> dict[str, torch.Tensor]:
    state = {f"policy.{k}": v for k, v in model.policy.state_dict().items()}
    for group, values in model.policy.optimizer.state_dict()["state"].items():
        state.update({f"optimizer.{group}.{k}": v for k, v in values.items() if isinstance(v, torch.Tensor)})
    return state


@pytest.mark.parametrize(("algo", "steps"), [("rainbow", 80), ("ppo", 96)])
def test_resumed_run_equals_the_run_that_went_straight_on(tmp_path: Path, algo: str, steps: int) -> None:
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    restart = _RestartAt(CHECKPOINT, seed=0)
    train(_config(algo, steps), straight, progress_bar=False, callbacks=[restart])
    assert restart.done
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_config(algo, steps), cut, progress_bar=False, callbacks=[_CrashAfterCheckpoint()])
    assert json.loads((cut / "checkpoints" / "latest.json").read_text())["num_timesteps"] == CHECKPOINT
    at_checkpoint = _state(load_agent(cut)[1])
    logs: list[str] = []
    summary = train(_config(algo, steps), cut, resume=True, progress_bar=False, log=logs.append)
    assert summary["num_timesteps"] == steps and summary["steps_this_session"] == steps - CHECKPOINT
    assert any(f"at {CHECKPOINT} steps" in line for line in logs)

    want, got = load_agent(straight)[1], load_agent(cut)[1]
    assert got.num_timesteps == want.num_timesteps == steps and got._n_updates == want._n_updates
    want_state, got_state = _state(want), _state(got)
    assert want_state.keys() == got_state.keys()
    for key in want_state:
        assert torch.equal(want_state[key], got_state[key]), key  # bit for bit, optimiser moments included
    assert any(not torch.equal(at_checkpoint[k], got_state[k]) for k in at_checkpoint)  # it did train on
    if algo == "rainbow":
        # The replay buffers (transitions, n-step windows flushed at the restart, sum-tree) agree too.
        folder_a, folder_b = straight / "checkpoints", cut / "checkpoints"
        buf_a = pickle.loads((folder_a / f"replay_{steps}.pkl").read_bytes())
        buf_b = pickle.loads((folder_b / f"replay_{steps}.pkl").read_bytes())
        assert buf_a.pos == buf_b.pos and np.array_equal(buf_a.observations, buf_b.observations)
        assert np.array_equal(buf_a.tree[np.arange(buf_a.buffer_size)], buf_b.tree[np.arange(buf_b.buffer_size)])
        assert buf_a.tree.total == buf_b.tree.total and buf_a.max_priority == buf_b.max_priority
        assert sorted(p.name for p in folder_b.glob("replay_*.pkl")) == [f"replay_{steps}.pkl"]


def test_random_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    model = Rainbow("MlpPolicy", env, learning_starts=8, buffer_size=64, seed=3, device="cpu")
    state = capture_random_state(model)
    draws = (np.random.rand(), torch.rand(1).item(), model.action_space.sample())
    np.random.rand(5), torch.rand(5), model.action_space.sample()  # move every stream on
    restore_random_state(model, pickle.loads(pickle.dumps(state)), tmp_path)
    assert (np.random.rand(), torch.rand(1).item(), model.action_space.sample()) == draws
    with pytest.raises(CheckpointError, match=r"vantage\.resume"):
        restore_random_state(model, {"format": "other"}, tmp_path / "x.zip")
    env.close()


@pytest.fixture(scope="module")
def rainbow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "rainbow"
    settings = [a for k, v in RAINBOW.items() if k != "policy_kwargs" for a in ("--set", f"{k}={v}")]
    result = CliRunner().invoke(main, ["train", "tracking", "--algo", "rainbow", "--steps", "32", "--n-envs", "1",
                                       "--checkpoint-every", "16", "--no-progress", "--out", str(run),
                                       "--env", "lost_patience=500", *settings])
    assert result.exit_code == 0, result.output
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


@pytest.mark.parametrize(("args", "named"), [
    (["face-recognition"], ["TASK 'face-recognition' (the run: 'tracking')"]),
    (["tracking", "--algo", "ppo", "--motion", "switching", "--seed", "3"],
     ["--algo 'ppo' (the run: 'rainbow')", "--motion 'switching' (the run: 'constant')", "--seed 3 (the run: 0)"]),
    (["tracking", "--set", "batch_size=16", "--gamma", "0.5"],
     ["--set batch_size 16 (the run: 8)", "--gamma 0.5 (the run: not set)"]),
    (["tracking", "--n-envs", "2", "--no-save-replay-buffer"],
     ["--n-envs 2 (the run: 1)", "--save-replay-buffer False (the run: True)"]),
])
def test_resume_refuses_settings_that_differ_from_the_run(rainbow_run: Path, tmp_path: Path, args: list[str],
                                                          named: list[str]) -> None:
    run = _copy(rainbow_run, tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["train", *args, "--resume", "--steps", "64", "--no-progress", "--out", str(run)])
    assert result.exit_code == 1, result.output
    assert "InvalidArgumentError: --resume continues the run" in result.output and "Traceback" not in result.output
    for text in named:
        assert text in result.output, text
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing written


def test_resume_takes_the_saved_settings_and_steps_is_the_total(rainbow_run: Path, tmp_path: Path) -> None:
    run = _copy(rainbow_run, tmp_path)
    runner = CliRunner()
    # Options given equal to the run's are fine; those not given come from config.json (rainbow, its --set values).
    result = runner.invoke(main, ["train", "tracking", "--resume", "--steps", "48", "--seed", "0", "--motion",
                                  "constant", "--no-progress", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "trained 48 steps, 16 this session" in result.output
    assert json.loads((run / "config.json").read_text())["steps"] == 48
    result = runner.invoke(main, ["train", "tracking", "--resume", "--steps", "40", "--no-progress", "--out", str(run)])
    assert result.exit_code == 1 and "--steps 40 is fewer than the 48 steps" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    for extra in ([], ["--steps", "48"]):  # the saved target, or the same number again
        result = runner.invoke(main, ["train", "tracking", "--resume", *extra, "--no-progress", "--out", str(run)])
        assert result.exit_code == 0 and "nothing to do" in result.output, result.output
    assert load_agent(run)[1].num_timesteps == 48


def test_resume_restarts_a_run_that_has_no_checkpoint_yet(rainbow_run: Path, tmp_path: Path) -> None:
    run = _copy(rainbow_run, tmp_path)
    for name in ("checkpoints", "tb"):
        shutil.rmtree(run / name)
    (run / "model.zip").unlink()
    result = CliRunner().invoke(main, ["train", "tracking", "--resume", "--no-progress", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "no checkpoint yet" in result.output and load_agent(run)[1].num_timesteps == 32


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


@pytest.mark.parametrize(("damage", "named"), [
    (lambda run: _truncate(run / "config.json"), "config.json is corrupt"),
    (lambda run: (run / "config.json").write_text('{"task": "tracking", "steps": "many"}'), "steps='many'"),
    (lambda run: _truncate(run / "checkpoints" / "latest.zip"), "latest.zip is corrupt"),
    (lambda run: (run / "checkpoints" / "latest.json").write_text("{"), "latest.json is corrupt"),
    (lambda run: _truncate(run / "checkpoints" / "replay_32.pkl"), "replay buffer"),
])
def test_corrupt_files_give_one_named_error(rainbow_run: Path, tmp_path: Path, damage, named: str) -> None:
    run = _copy(rainbow_run, tmp_path)
    damage(run)
    result = CliRunner().invoke(main, ["train", "tracking", "--resume", "--steps", "48", "--no-progress", "--out",
                                       str(run)])
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "CheckpointError" in line and named in line and str(run) in line and "Traceback" not in line, line
    assert len(line.splitlines()) == 1


def test_a_missing_replay_buffer_resumes_with_an_empty_one_and_says_so(rainbow_run: Path, tmp_path: Path) -> None:
    run = _copy(rainbow_run, tmp_path)
    (run / "checkpoints" / "replay_32.pkl").unlink()
    result = CliRunner().invoke(main, ["train", "tracking", "--resume", "--steps", "40", "--no-progress", "--out",
                                       str(run)])
    assert result.exit_code == 0, result.output
    assert "replay buffer" in result.output and "empty replay buffer" in result.output


def test_checkpoints_hold_the_random_states_and_the_replay_buffer(rainbow_run: Path) -> None:
    folder = rainbow_run / "checkpoints"
    meta = json.loads((folder / "latest.json").read_text())
    assert meta["num_timesteps"] == 32 and meta["replay_buffer"] == "replay_32.pkl"
    with zipfile.ZipFile(folder / "latest.zip") as archive:
        state = pickle.loads(archive.read(RESUME_STATE))
    assert state["num_timesteps"] == 32 and {"python", "numpy", "torch", "action_space"} <= set(state)
    assert isinstance(load_model(Rainbow, folder / "latest.zip"), Rainbow)  # SB3's load ignores the extra member
    buffer = pickle.loads((folder / "replay_32.pkl").read_bytes())
    assert buffer.size() > 0 and buffer.tree.total > 0
    assert not [p for p in rainbow_run.rglob(".*") if p.is_file()]  # no temporary files


def test_new_run_folder_must_be_empty_and_bad_settings_write_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", "tracking", "--steps", "8", "--n-envs", "1", "--no-progress"]
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    result = runner.invoke(main, [*base, "--out", str(tmp_path / "busy")])
    assert result.exit_code == 1 and "is not empty (it holds notes.txt)" in result.output, result.output
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "manifest.json").write_text("{}")
    result = runner.invoke(main, [*base, "--out", str(tmp_path / "model")])
    assert result.exit_code == 1 and "holds a saved perception model" in result.output, result.output
    for bad, message in [("learning_rate=-1", "learning_rate=-1 must be > 0"),
                         ('learning_rate="abc"', "learning_rate='abc' must be a finite number"),
                         ("ent_coef=abc", "ent_coef='abc' must be a finite number"),
                         ("n_epochs=2.5", "n_epochs=2.5 must be an integer"),
                         ("gamma=2", "gamma=2 must be in [0, 1]"),
                         ("seed=3", "'seed' is set by the run (--seed)")]:
        run = tmp_path / "bad"
        result = runner.invoke(main, [*base, "--set", bad, "--out", str(run)])
        assert result.exit_code == 1 and message in result.output, (bad, result.output)
        assert "Traceback" not in result.output and not run.exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    class Fail(BaseCallback):
        def _on_step(self) -> bool:
            raise RuntimeError("boom")

    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        train(_config("ppo", 64), run, progress_bar=False, callbacks=[Fail()])
    assert not run.exists()  # the corrected command finds nothing in its way


def test_steps_are_echoed_asked_against_trained_and_progress_lines_without_a_terminal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "tracking", "--steps", "100", "--n-envs", "1", "--out", str(run),
                                       *[a for k, v in PPO.items() if k != "policy_kwargs"
                                         for a in ("--set", f"{k}={v}")]])
    assert result.exit_code == 0, result.output
    assert "asked 100 steps; PPO collects whole rollouts of 16 x 1 = 16 steps, so it trains 112" in result.output
    assert "step 10/100 (10%)" in result.output and "steps/s" in result.output  # not a terminal: plain lines
    assert "trained 112 steps (asked 100)" in result.output


def test_library_resume_compares_every_field(rainbow_run: Path, tmp_path: Path) -> None:
    run = _copy(rainbow_run, tmp_path)
    config = TrainConfig(task="tracking", algo="rainbow", steps=32, n_envs=1, checkpoint_every=16,
                         agent_overrides={k: v for k, v in RAINBOW.items() if k != "policy_kwargs"},
                         env_kwargs={"reward": "td", "action_mode": "discrete", "motion": "constant",
                                     "backend": "mujoco", "lost_patience": 500})
    summary = train(config, run, resume=True, progress_bar=False, log=lambda line: None)
    assert summary.get("nothing_to_do")
    config.normalize_rewards = True
    with pytest.raises(InvalidArgumentError, match="normalize_rewards True"):
        train(config, run, resume=True, progress_bar=False)
