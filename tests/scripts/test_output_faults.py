"""Nothing lost, nothing half-made: the benchmarks' and the demo's result folders under refusals and faults.

* an existing result is replaced only with ``--overwrite``, checked before anything runs;
* a command killed mid-way (SIGINT in a real process) leaves complete result files or none, and can be rerun
  (the resumable benchmarks continue where they stopped);
* a write that fails part-way (``common.io`` made to fail) leaves the previous results as they were, every
  file of a set, and no temporary file.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import common.io
import envs.benchmark
from agents.training import TrainConfig, train
from scripts.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = {"n_steps": 32, "batch_size": 32, "n_epochs": 1,
        "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 16}, "net_arch": [8]}}
RAINBOW = ["bench", "rainbow", "--env", "cartpole", "--steps", "1536", "--eval-every", "768", "--eval-episodes", "2",
           "--seeds", "0", "--variants", "rainbow,dqn"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporary_files(folder: Path) -> list[Path]:
    """common.io's temporary files (``.<stem>.<random><suffix>``) left under ``folder``."""
    return [p for p in folder.rglob(".*") if p.is_file()]


def fail_nth_fsync(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the ``n``-th file common.io syncs fail as on a full disk (earlier ones succeed)."""
    calls = {"count": 0}
    real = os.fsync

    def fsync(fd: int) -> None:
        calls["count"] += 1
        if calls["count"] >= n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(common.io.os, "fsync", fsync)


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scripts.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})


def interrupt_when(process: subprocess.Popen, ready: Callable[[str], bool], timeout: float = 120) -> tuple[int, str]:
    """Send SIGINT once ``ready(stderr so far)``; returns the exit code and the whole stderr."""
    err = b""
    deadline = time.monotonic() + timeout
    while not ready(err.decode(errors="replace")):
        assert process.poll() is None, f"finished before it could be interrupted: {err.decode()[-2000:]}"
        assert time.monotonic() < deadline, f"never became ready: {err.decode()[-2000:]}"
        if select.select([process.stderr], [], [], 0.1)[0]:
            err += os.read(process.stderr.fileno(), 65536)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    return process.returncode, (err + rest).decode(errors="replace")


def assert_interrupted(code: int, stderr: str, kept: str) -> None:
    assert code == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-4000:]
    assert stderr.rstrip().splitlines()[-1].startswith(f"interrupted; {kept}"), stderr[-1000:]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "tiny"
    train(TrainConfig(task="tracking", steps=32, n_envs=1, checkpoint_every=32, agent_overrides=TINY), run,
          progress_bar=False)
    return run


# -- vantage bench env: one file ---------------------------------------------------------------------------
def test_bench_env_refuses_to_overwrite_and_a_failed_write_keeps_the_old_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = iter([{"ratio": 0.7, "run": 1}, {"ratio": 0.8, "run": 2}, {"ratio": 0.9, "run": 3}])
    monkeypatch.setattr(envs.benchmark, "env_throughput", lambda *a, **k: next(runs))
    args = ["bench", "env", "tracking", "--json", "--out", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    first = snapshot(tmp_path)
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "pass --overwrite" in refused.output and "env_tracking.json" in refused.output
    assert snapshot(tmp_path) == first
    fail_nth_fsync(monkeypatch, 1)
    failed = CliRunner().invoke(main, [*args, "--overwrite"])
    assert failed.exit_code == 1 and "no space left" in failed.output and "Traceback" not in failed.output
    assert snapshot(tmp_path) == first and not temporary_files(tmp_path)
    monkeypatch.undo()
    monkeypatch.setattr(envs.benchmark, "env_throughput", lambda *a, **k: next(runs))
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0
    assert json.loads((tmp_path / "env_tracking.json").read_text())["run"] == 3


@pytest.mark.parametrize("command", [
    ["bench", "env", "tracking"],
    ["bench", "active-vs-static", "face-recognition"],
    ["bench", "rewards", "tracking"],
    ["bench", "rainbow", "--env", "cartpole"],
    ["demo", "--task", "tracking"],
])
def test_no_command_writes_results_into_a_training_run(tmp_path: Path, command: list[str]) -> None:
    # Checked before anything runs: each of these would train or evaluate for minutes otherwise.
    run = "cartpole/config.json" if "rainbow" in command else "config.json"  # rainbow writes to OUT/<env>/
    (tmp_path / run).parent.mkdir(exist_ok=True)
    (tmp_path / run).write_text("{}")
    overwrite = [] if "rewards" in command else ["--overwrite"]  # not even with it (bench rewards has none)
    result = CliRunner().invoke(main, [*command, *overwrite, "--out", str(tmp_path)])
    assert result.exit_code == 1 and "holds a training run (config.json)" in result.output, result.output
    assert snapshot(tmp_path) == {run: b"{}"}


def test_the_face_benchmark_and_rainbow_timing_refuse_before_running(tmp_path: Path) -> None:
    (tmp_path / "face_recognition_tables.md").write_text("earlier\n")
    started = time.monotonic()
    result = CliRunner().invoke(main, ["bench", "active-vs-static", "face-recognition", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "face_recognition_tables.md" in result.output and "--overwrite" in result.output
    (tmp_path / "cartpole").mkdir()
    (tmp_path / "cartpole" / "throughput.json").write_text("{}")
    result = CliRunner().invoke(main, [*RAINBOW, "--throughput", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "throughput.json" in result.output and "--overwrite" in result.output
    assert time.monotonic() - started < 10  # refused before any model loaded or step ran


# -- the summary sets: all files or none ------------------------------------------------------------------
def _fake_study_result(run_dir: Path, trial: Any, settings: Any) -> dict[str, Any]:
    # Every trial of the study counts as finished and evaluated: the summary is written, no run is trained.
    error = {"td": 0.01, "negative": 0.03, "hint": 0.02}[trial.params["reward"]] * (1 + trial.params["seed"])
    figures = {"distance_error": error, "steps": 900.0, "angle_error": 0.1, "lost_fraction": 0.0}
    return {"trial": trial.name, "params": trial.params, **trial.params, "train_wall_s": 1.0,
            "eval": dict.fromkeys(settings.setups, figures)}


def test_a_failed_write_keeps_every_file_of_the_reward_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.sweeps.sweep as sweep

    monkeypatch.setattr(sweep, "cached_result", _fake_study_result)
    args = ["bench", "rewards", "tracking", "--seeds", "0,1", "--action-modes", "discrete", "--setups", "constant",
            "--out", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    first = snapshot(tmp_path)
    assert set(first) == {"reward_study.json", "reward_study.md", "reward_study.png"}
    fail_nth_fsync(monkeypatch, 2)  # the JSON is written, the Markdown fails: neither may replace the old ones
    failed = CliRunner().invoke(main, [*args[:-2], "--rewards", "td,hint", "--out", str(tmp_path)])
    assert failed.exit_code == 1 and "no space left" in failed.output
    assert snapshot(tmp_path) == first and not temporary_files(tmp_path)


def test_a_failed_write_keeps_every_file_of_the_rainbow_summary(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.rainbow.ablation as ablation

    def fake_run(config: Any, variant: str, seed: int) -> dict[str, Any]:
        curve = [[0, 10.0, 1.0, 10.0], [768, 200.0 + seed, 5.0, 200.0], [1536, 480.0, 3.0, 480.0]]
        return {**config.run_key(variant, seed), "curve": curve, "train_wall_s": 1.0, "train_cpu_s": 1.0,
                "steps_per_s_wall": 1536.0, "steps_per_s_cpu": 1536.0, "n_updates": 10, "n_parameters": 100}

    monkeypatch.setattr(ablation, "run_one", fake_run)
    args = [*RAINBOW, "--out", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    first = snapshot(tmp_path)
    assert set(first) == {f"cartpole/{n}" for n in ("runs.jsonl", "summary.json", "table.md", "curves.png")}
    fail_nth_fsync(monkeypatch, 2)  # the runs are stored; the summary is written, the table fails
    failed = CliRunner().invoke(main, [*args, "--no-train", "--threshold", "300"])
    assert failed.exit_code == 1 and "no space left" in failed.output
    assert snapshot(tmp_path) == first and not temporary_files(tmp_path)


def test_a_torn_run_record_is_skipped_and_its_run_trained_again(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.rainbow.ablation as ablation

    trained: list[tuple[str, int]] = []

    def fake_run(config: Any, variant: str, seed: int) -> dict[str, Any]:
        trained.append((variant, seed))
        return {**config.run_key(variant, seed), "curve": [[0, 1.0, 0.0, 1.0], [1536, 2.0, 0.0, 2.0]],
                "train_wall_s": 1.0, "train_cpu_s": 1.0, "steps_per_s_wall": 1.0, "steps_per_s_cpu": 1.0,
                "n_updates": 1, "n_parameters": 1}

    monkeypatch.setattr(ablation, "run_one", fake_run)
    args = [*RAINBOW, "--out", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    log = tmp_path / "cartpole" / "runs.jsonl"
    lines = log.read_text().splitlines()
    log.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # the disk filled up mid-append
    with pytest.warns(UserWarning, match="runs.jsonl:2: skipped a line"):
        assert CliRunner().invoke(main, args).exit_code == 0
    assert trained == [("rainbow", 0), ("dqn", 0), ("dqn", 0)]
    records = [json.loads(line) for line in log.read_text().splitlines()[::2]]  # the torn line stays, skipped
    assert [r["variant"] for r in records] == ["rainbow", "dqn"]


# -- killed mid-way (SIGINT), then rerun ------------------------------------------------------------------
def test_rainbow_interrupted_mid_run_keeps_finished_runs_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "cartpole"
    process = start_cli(*RAINBOW, "--out", str(tmp_path))
    # The second run has started once its progress line is out: the first is stored by then.
    code, stderr = interrupt_when(process, lambda err: "cartpole dqn seed 0 ..." in err)
    assert_interrupted(code, stderr, f"the finished runs in {folder / 'runs.jsonl'} are kept")
    (stored,) = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]
    assert stored["variant"] == "rainbow"
    assert sorted(p.name for p in folder.iterdir()) == ["runs.jsonl"]  # no summary, whole or half
    result = CliRunner().invoke(main, [*RAINBOW, "--out", str(tmp_path)])  # the same command resumes
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]
    assert records[0] == stored and [r["variant"] for r in records] == ["rainbow", "dqn"]
    assert {"summary.json", "table.md", "curves.png"} <= {p.name for p in folder.iterdir()}
    assert not temporary_files(tmp_path)


def test_demo_interrupted_leaves_no_half_made_task_and_reruns(tiny_run: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--task", "tracking", "--run", f"tracking={tiny_run}", "--episodes", "1", "--out", str(out)]
    code, stderr = interrupt_when(start_cli(*args), lambda err: "eval static, constant" in err)
    assert_interrupted(code, stderr, "the tasks finished before the interrupt have their complete files")
    assert snapshot(out) == {}  # the task had not finished: none of its files, no README
    assert CliRunner().invoke(main, args).exit_code == 0  # rerun: nothing was written, nothing to overwrite
    first = snapshot(out)
    assert {"README.md", "tracking/results.json", "tracking/tracking_active.gif"} <= set(first)
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "pass --overwrite" in refused.output and snapshot(out) == first
    fail_nth_fsync(monkeypatch, 2)  # results.md written, results.json fails: the task's old files stay
    failed = CliRunner().invoke(main, [*args, "--overwrite"])
    assert failed.exit_code == 1 and "no space left" in failed.output
    assert snapshot(out) == first and not temporary_files(out)
