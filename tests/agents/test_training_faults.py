"""Training survives what stops it: Ctrl-C, kill -9, and a write that fails part-way.

The signal tests run ``vantage train`` in a subprocess (two at once, to keep the suite fast) on a budget it would
take minutes to finish, and signal it once its first checkpoint is on disk.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.rainbow import Rainbow
from agents.training import TrainConfig, load_agent, train
from envs.errors import CheckpointError
from scripts.cli import main

ROOT = Path(__file__).resolve().parents[2]
RAINBOW = {"learning_starts": 16, "buffer_size": 300, "batch_size": 8, "target_update_interval": 16, "train_freq": 4}
FAST_ENV = ["--env", "lost_patience=500"]  # fewer (slow) resets with random actions
TINY_NET = '{"net_arch": [16], "features_extractor_kwargs": {"features_dim": 32}}'
TRAIN = ["train", "tracking", "--algo", "rainbow", "--n-envs", "1", "--checkpoint-every", "16", "--no-progress",
         *FAST_ENV, "--set", f"policy_kwargs={TINY_NET}",
         *[a for k, v in RAINBOW.items() for a in ("--set", f"{k}={v}")]]
#: Generous bounds so a slow machine never fails these tests; they only keep a broken run from hanging the suite.
PATIENCE_S = 300


def _start(run: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.Popen([sys.executable, "-m", "scripts.cli", *TRAIN, "--steps", "1000000", "--out", str(run)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_checkpoint(process: subprocess.Popen[str], run: Path) -> None:
    latest = run / "checkpoints" / "latest.json"
    deadline = time.monotonic() + PATIENCE_S
    while not latest.is_file():
        if process.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint appeared")
        time.sleep(0.05)


def _steps(run: Path) -> int:
    return json.loads((run / "checkpoints" / "latest.json").read_text())["num_timesteps"]


def _resume_to(run: Path, steps: int) -> None:
    result = CliRunner().invoke(main, ["train", "tracking", "--resume", "--steps", str(steps), "--no-progress",
                                       "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "train_summary.json").read_text())["num_timesteps"] == steps
    assert load_agent(run)[1].num_timesteps == steps


def test_ctrl_c_writes_a_checkpoint_and_kill_9_keeps_the_previous_one(tmp_path: Path) -> None:
    interrupted, killed = tmp_path / "interrupted", tmp_path / "killed"
    first, second = _start(interrupted), _start(killed)
    try:
        _wait_for_checkpoint(first, interrupted)
        _wait_for_checkpoint(second, killed)
        first.send_signal(signal.SIGINT)
        time.sleep(0.3)  # let the second run train past its checkpoint, perhaps into writing the next one
        second.kill()  # SIGKILL: no handler runs, whatever was being written stays half-written
        out, _ = first.communicate(timeout=PATIENCE_S)
        second.wait(timeout=PATIENCE_S)
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()

    # Ctrl-C: a checkpoint at the end of the current update, the command says so and exits 130.
    assert first.returncode == 130, out
    assert "interrupt: writing a checkpoint" in out and "stopped at" in out and "Traceback" not in out, out
    assert "--resume" in out.strip().splitlines()[-1]
    done = _steps(interrupted)
    assert isinstance(load_agent(interrupted)[1], Rainbow) and load_agent(interrupted)[1].num_timesteps == done
    assert not (interrupted / "model.zip").exists()  # the run is not finished: no final model yet
    _resume_to(interrupted, done + 16)

    # kill -9: the last complete checkpoint loads, and --resume tidies whatever the kill left half-written.
    assert second.returncode == -signal.SIGKILL
    done = load_agent(killed)[1].num_timesteps  # the zip decides: latest.json may lag it by one checkpoint
    assert done >= _steps(killed) >= 16
    _resume_to(killed, done + 16)
    assert not [p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith(".")]


def _tiny(run: Path, steps: int = 48) -> TrainConfig:
    return TrainConfig(task="tracking", algo="rainbow", steps=steps, n_envs=1, checkpoint_every=16,
                       agent_overrides={**RAINBOW, "policy_kwargs": json.loads(TINY_NET)},
                       env_kwargs={"reward": "td", "action_mode": "discrete", "lost_patience": 500})


def _fail_second_zip_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "latest.zip":
            calls.append(dst)
            if len(calls) == 2:
                raise OSError(errno.EIO, "simulated I/O error", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _fail_second_save_part_way(monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = Rainbow.save, []

    def save(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"PK\x03\x04 half an archive")
            raise OSError(errno.ENOSPC, "No space left on device (simulated)", str(path))
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(Rainbow, "save", save)


@pytest.mark.parametrize("fault", [_fail_second_zip_rename, _fail_second_save_part_way])
def test_a_checkpoint_write_that_fails_leaves_the_previous_one_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       fault) -> None:
    run = tmp_path / "run"
    fault(monkeypatch)
    with pytest.raises(CheckpointError, match="the previous checkpoint is unchanged"):
        train(_tiny(run), run, progress_bar=False)
    monkeypatch.undo()
    config_before = (run / "config.json").read_bytes()
    assert _steps(run) == 16 and load_agent(run)[1].num_timesteps == 16
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["latest.json", "latest.zip", "replay_16.pkl"]
    assert not [p for p in run.rglob(".*") if p.is_file()]  # no temporary files behind
    summary = train(_tiny(run), run, resume=True, progress_bar=False, log=lambda line: None)
    assert summary["num_timesteps"] == 48 and (run / "config.json").read_bytes() == config_before


def test_a_failed_first_checkpoint_leaves_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    monkeypatch.setattr(Rainbow, "save", fail)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, [*TRAIN, "--steps", "32", "--out", str(run)])
    assert result.exit_code == 1 and "No space left" in result.output and "Traceback" not in result.output
    assert not run.exists()
