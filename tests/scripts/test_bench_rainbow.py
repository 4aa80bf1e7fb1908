"""``vantage bench rainbow`` on a toy budget: runs, reuse, the summary-only mode and bad input.

The library behind it (summaries, run keys, steps to threshold) is tested in tests/agents/test_rainbow_ablation.py.
"""

import json

import pytest
from click.testing import CliRunner

from scripts.cli import main

# CartPole's preset learns from step 1000 and collects 256 steps per round: 1536 steps end on a round.
TOY = ["bench", "rainbow", "--env", "cartpole", "--steps", "1536", "--eval-every", "768", "--eval-episodes", "2"]


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_rainbow")
    result = CliRunner().invoke(main, [*TOY, "--seeds", "0", "--variants", "rainbow,dqn", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_runs_write_curves_table_and_summary(bench_out):
    folder = bench_out / "cartpole"
    runs = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]
    assert {r["variant"] for r in runs} == {"rainbow", "dqn"}
    for run in runs:
        assert [point[0] for point in run["curve"]] == [0, 768, 1536]
        assert all(len(point) == 4 and 0 < point[3] <= 500 for point in run["curve"])  # (step, mean, sd, length)
        assert run["n_updates"] > 0 and run["steps_per_s_cpu"] > 0
    summary = json.loads((folder / "summary.json").read_text())
    rainbow, dqn = summary["variants"]["rainbow"], summary["variants"]["dqn"]
    assert rainbow["slowdown_vs_dqn_cpu"] == pytest.approx(dqn["steps_per_s_cpu"] / rainbow["steps_per_s_cpu"])
    # Rainbow's 51-atom dueling noisy head is bigger than DQN's on the same trunk.
    assert rainbow["n_parameters"] > dqn["n_parameters"]
    assert "| rainbow |" in (folder / "table.md").read_text()
    assert (folder / "curves.png").stat().st_size > 0


def test_stored_runs_are_reused_and_no_train_summarises_other_seed_sets(bench_out):
    log = bench_out / "cartpole" / "runs.jsonl"
    before = log.read_text()
    # Seed 1 is not stored: --no-train must not train it, only summarise the seed-0 runs.
    result = CliRunner().invoke(main, [*TOY, "--seeds", "0,1", "--variants", "rainbow,dqn", "--no-train",
                                       "--json", "--out", str(bench_out)])
    assert result.exit_code == 0, result.output
    assert log.read_text() == before
    assert json.loads(result.output)["variants"]["rainbow"]["seeds"] == [0]


def test_runs_of_another_preset_are_not_reused(bench_out, monkeypatch):
    from agents.rainbow import PRESETS

    log = bench_out / "cartpole" / "runs.jsonl"
    stored = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(r["hyperparameters"]["learning_rate"] == PRESETS["cartpole"]["learning_rate"] for r in stored)
    # A changed preset (shared with DQN) makes every stored run stale: the summary-only mode finds none.
    monkeypatch.setitem(PRESETS["cartpole"], "learning_rate", 1e-3)
    result = CliRunner().invoke(main, [*TOY, "--seeds", "0", "--variants", "rainbow,dqn", "--no-train",
                                       "--out", str(bench_out)])
    assert result.exit_code != 0
    assert "no stored runs" in result.output


def test_set_rejects_unknown_settings(tmp_path):
    result = CliRunner().invoke(main, [*TOY, "--set", "learning_rat=1e-3", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "learning_rat" in result.output


def test_no_train_without_stored_runs_is_an_error(tmp_path):
    result = CliRunner().invoke(main, [*TOY, "--seeds", "0", "--no-train", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "no stored runs" in result.output


def test_unknown_variant_is_named(tmp_path):
    result = CliRunner().invoke(main, [*TOY, "--variants", "rainbow,no_magic", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "no_magic" in str(result.exception) + result.output


def test_throughput_mode_times_training_after_warm_up(tmp_path):
    result = CliRunner().invoke(main, ["bench", "rainbow", "--env", "cartpole", "--throughput", "--steps", "256",
                                       "--repeats", "1", "--variants", "rainbow,dqn", "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload == json.loads((tmp_path / "cartpole" / "throughput.json").read_text())
    for row in payload["variants"].values():
        # The timed steps come after learning_starts, so every collected round is followed by its updates.
        assert row["steps"] == 256 and row["updates"] == 128
    assert payload["variants"]["dqn"]["slowdown_vs_dqn_cpu"] == pytest.approx(1.0)
