"""Every ``vantage`` command ends in one line: exit 0, 1 (runtime error), 2 (usage error) or 130 (Ctrl-C).

The traceback appears only with ``vantage --debug ...`` or ``VANTAGE_DEBUG=1``. Checked in-process with
``CliRunner`` (failures injected where a real one is hard to make, e.g. a full disk) and in real
subprocesses (``python -m scripts.cli``), where the interpreter itself would print an escaped traceback.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import envs.benchmark
from scripts.cli import main

ROOT = Path(__file__).resolve().parents[2]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def assert_one_line(result: Result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    (line,) = error_lines(result.output)
    for fragment in fragments:
        assert fragment in line, line
    return line


def bench_env(out: Path, *extra: str) -> list[str]:
    return ["bench", "env", "tracking", "--steps", "100", "--repeats", "1", "--out", str(out), *extra]


# -- usage errors: exit 2 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "fragment"), [
    (["train", "tracking", "--steps", "x", "--out", "r"], "'x' is not a valid integer"),
    (["trian"], "No such command 'trian'"),
    (["--bogus"], "No such option '--bogus'"),
    (["bench", "env", "mars"], "'mars' is not one of 'tracking', 'fusion'"),
    (["train", "tracking", "--set", "=1", "--out", "r"], "has no KEY"),
    (["demo", "--run", "tracking"], "must look like KEY=VALUE"),
])
def test_usage_errors_are_one_line_with_exit_2(args: list[str], fragment: str) -> None:
    line = assert_one_line(CliRunner().invoke(main, args), 2, fragment)
    assert line.startswith("Error: ") and "--help" in line  # says where to look


def test_help_version_and_bare_groups_still_print_help() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--help"]).exit_code == 0
    assert runner.invoke(main, ["--version"]).exit_code == 0
    result = runner.invoke(main, ["bench"])
    assert "Commands:" in result.output and "Traceback" not in result.output
    assert "--debug" in runner.invoke(main, ["--help"]).output


# -- runtime errors: exit 1 -----------------------------------------------------------------------------------
def test_a_vantage_error_is_one_line_with_exit_1(tmp_path: Path) -> None:
    assert_one_line(CliRunner().invoke(main, ["eval", str(tmp_path / "nothing"), "--out", str(tmp_path)]), 1,
                    "Error: InvalidArgumentError:", "neither a run directory nor a task name")


def test_a_missing_file_names_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no_such_folder" / "stats.json"
    monkeypatch.setattr(envs.benchmark, "env_throughput", lambda *a, **k: json.loads(missing.read_text()))
    assert_one_line(CliRunner().invoke(main, bench_env(tmp_path)), 1, "not found", str(missing))


def test_permission_denied_names_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests may run as root, which no file permission stops: the error is raised as open() would.
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/srv/results/env_tracking.json")

    monkeypatch.setattr(envs.benchmark, "env_throughput", denied)
    assert_one_line(CliRunner().invoke(main, bench_env(tmp_path)), 1, "permission denied",
                    "/srv/results/env_tracking.json")


def test_a_full_disk_is_one_line_and_keeps_nothing_half_written(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import common.io

    monkeypatch.setattr(envs.benchmark, "env_throughput", lambda *a, **k: {"env": "x", "ratio": 1.0})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(common.io.os, "fsync", full)
    assert_one_line(CliRunner().invoke(main, bench_env(tmp_path, "--json")), 1, "no space left",
                    "choose another --out")
    assert list(tmp_path.iterdir()) == []  # the temporary file went too


def test_invalid_json_in_a_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "settings.json"
    bad.write_text('{"steps": 3,\n  "seed": }\n')
    monkeypatch.setattr(envs.benchmark, "env_throughput", lambda *a, **k: json.loads(bad.read_text()))
    assert_one_line(CliRunner().invoke(main, bench_env(tmp_path / "out")), 1, "invalid JSON", str(bad),
                    "line 2 column 11")


def test_an_unexpected_exception_is_reported_as_a_bug_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setattr(envs.benchmark, "env_throughput", lambda *a, **k: {}["ratio"])
    assert_one_line(CliRunner().invoke(main, bench_env(tmp_path)), 1, "unexpected KeyError", "a bug in Vantage",
                    "--debug", "VANTAGE_DEBUG=1")


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str) -> None:
    monkeypatch.setattr(envs.benchmark, "env_throughput", lambda *a, **k: {}["ratio"])
    if how == "flag":
        result = CliRunner().invoke(main, ["--debug", *bench_env(tmp_path)])
    else:
        monkeypatch.setenv("VANTAGE_DEBUG", "1")
        result = CliRunner().invoke(main, bench_env(tmp_path))
    assert result.exit_code == 1
    assert "Traceback" in result.output and "KeyError: 'ratio'" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("Error: unexpected KeyError")


def test_ctrl_c_says_what_was_kept_with_exit_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(envs.benchmark, "env_throughput", interrupted)
    result = CliRunner().invoke(main, bench_env(tmp_path))
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert error_lines(result.output) == [f"interrupted; no result was written ({tmp_path / 'env_tracking.json'} is "
                                          "written when the benchmark ends)"]


def test_an_error_message_on_several_lines_is_printed_on_one(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    from envs.errors import SimulatorError

    def fails(*args: object, **kwargs: object) -> None:
        raise SimulatorError("the simulator stopped:\n  exit status 3\n")

    monkeypatch.setattr(envs.benchmark, "env_throughput", fails)
    assert_one_line(CliRunner().invoke(main, bench_env(tmp_path)), 1,
                    "SimulatorError: the simulator stopped: exit status 3")


# -- the same in a real process -------------------------------------------------------------------------------
def run_cli(*args: str, inject: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m scripts.cli ARGS``; ``inject`` runs first (e.g. to plant a fault) in the same interpreter."""
    command = ([sys.executable, "-c", f"import runpy, sys; {inject}; sys.argv[0] = 'vantage'; "
                                      "runpy.run_module('scripts.cli', run_name='__main__')", *args] if inject else
               [sys.executable, "-m", "scripts.cli", *args])
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), **(env or {})})


def test_subprocess_exit_codes_and_single_lines(tmp_path: Path) -> None:
    usage = run_cli("train", "tracking", "--steps", "x", "--out", str(tmp_path / "r"))
    assert usage.returncode == 2 and usage.stdout == "", usage
    assert len(error_lines(usage.stderr)) == 1 and "Traceback" not in usage.stderr
    runtime = run_cli("eval", str(tmp_path / "nothing"), "--out", str(tmp_path / "e"))
    assert runtime.returncode == 1 and "Traceback" not in runtime.stderr
    assert error_lines(runtime.stderr) == [line for line in error_lines(runtime.stderr)
                                           if line.startswith("Error: InvalidArgumentError:")]
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists()


def test_subprocess_bug_is_one_line_unless_debugging(tmp_path: Path) -> None:
    bug = "import envs.benchmark as b; b.env_throughput = lambda *a, **k: 1 / 0"
    args = ("bench", "env", "tracking", "--out", str(tmp_path))
    plain = run_cli(*args, inject=bug)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr, plain.stderr
    (line,) = error_lines(plain.stderr)
    assert line.startswith("Error: unexpected ZeroDivisionError: division by zero") and "--debug" in line
    debug = run_cli(*args, inject=bug, env={"VANTAGE_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == line
