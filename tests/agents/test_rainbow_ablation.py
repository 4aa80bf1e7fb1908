"""The Rainbow ablation library: configs and run keys, reuse of stored runs, summaries and tables.

The ``vantage bench rainbow`` command on a toy budget is tested in tests/scripts/test_bench_rainbow.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch as th

from agents.rainbow import PRESETS, ablation
from agents.rainbow.ablation import (
    VARIANTS,
    AblationConfig,
    NoStoredRunsError,
    UnknownSettingError,
    find_run,
    format_table,
    format_throughput,
    load_runs,
    run_ablation,
    steps_to_threshold,
    summarise,
)
from common.errors import UnknownNameError

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "figures"


def _record(config: AblationConfig, variant: str, seed: int, curve: list[list[float]], speed: float = 100.0,
            n_parameters: int = 10) -> dict[str, Any]:
    """A stored run as :func:`ablation.run_one` writes it, with a given curve and speed."""
    return {
        **config.run_key(variant, seed),
        "curve": curve,
        "train_wall_s": 1.0,
        "train_cpu_s": 1.0,
        "steps_per_s_wall": speed,
        "steps_per_s_cpu": speed,
        "n_updates": 1,
        "n_parameters": n_parameters,
    }


def test_steps_to_threshold():
    curve = [[0, 10.0, 0.0], [100, 480.0, 1.0], [200, 500.0, 0.0]]
    assert steps_to_threshold(curve, 475) == 100
    assert steps_to_threshold(curve, 501) is None
    assert steps_to_threshold(curve, None) is None


def test_steps_to_threshold_on_episode_length():
    """Tracking is judged on episode length (column 3); old 3-column points never count as reaching it."""
    curve = [[0, -1.0, 0.1, 18.0], [5000, -0.9, 0.1, 600.0], [10000, -0.2, 0.1, 1000.0]]
    assert steps_to_threshold(curve, 950, column=3) == 10000
    assert steps_to_threshold(curve, -0.5, column=1) == 10000
    assert steps_to_threshold([[0, 1.0, 0.0]], 950, column=3) is None


def test_env_specs_judge_cartpole_on_return_and_tracking_on_length():
    assert AblationConfig(env="cartpole").spec.column == 1 and AblationConfig(env="cartpole").solved_at == 475
    assert AblationConfig(env="tracking").spec.column == 3 and AblationConfig(env="tracking").solved_at == 950
    assert AblationConfig(env="tracking", threshold=500.0).solved_at == 500.0


def test_set_overrides_the_preset_for_rainbow_and_the_shared_dqn_keys():
    config = AblationConfig(env="tracking", overrides={"learning_rate": 2.5e-4, "sigma0": 0.1})
    assert config.model_kwargs("rainbow")["learning_rate"] == 2.5e-4
    assert config.model_kwargs("rainbow")["sigma0"] == 0.1
    assert config.model_kwargs("dqn")["learning_rate"] == 2.5e-4 and "sigma0" not in config.model_kwargs("dqn")
    assert config.run_key("rainbow", 0) != AblationConfig(env="tracking").run_key("rainbow", 0)


def test_variants_change_only_their_part_and_dqn_gets_only_shared_keys():
    config = AblationConfig()
    rainbow = config.model_kwargs("rainbow")
    for variant, change in VARIANTS.items():
        if variant != "dqn":
            assert config.model_kwargs(variant) == {**rainbow, **change}
    assert set(config.model_kwargs("dqn")) <= {"policy", *ablation.DQN_SHARED_KEYS}


def test_config_rejects_unknown_names():
    with pytest.raises(UnknownNameError, match="no_magic"):
        AblationConfig(variants=("rainbow", "no_magic"))
    with pytest.raises(UnknownNameError, match="pong"):
        AblationConfig(env="pong")
    with pytest.raises(UnknownSettingError, match="learning_rat"):
        AblationConfig(overrides={"learning_rat": 1e-3})


def test_run_key_format_is_stable_so_stored_runs_stay_reusable():
    """The key's fields and its JSON form are what ``runs.jsonl`` lines of earlier versions hold: tuples are
    stored as lists and classes by ``str()``. A change here would silently retrain every stored run."""
    config = AblationConfig(overrides={"policy_kwargs": {"net_arch": (64, 64), "activation_fn": th.nn.ReLU}})
    key = config.run_key("rainbow", 3)
    assert list(key) == ["env", "variant", "seed", "steps", "eval_every", "eval_episodes", "hyperparameters"]
    assert key["hyperparameters"]["policy_kwargs"] == {
        "activation_fn": "<class 'torch.nn.modules.activation.ReLU'>",
        "net_arch": [64, 64],
    }
    # A line as written to runs.jsonl matches its key once read back.
    stored = json.loads(json.dumps(_record(config, "rainbow", 3, [[0, 1.0, 0.0, 1.0]])))
    assert find_run([stored], key) is stored


def test_find_run_needs_every_key_field_to_match():
    config = AblationConfig()
    stored = _record(config, "dqn", 0, [[0, 1.0, 0.0, 1.0]])
    assert find_run([stored], config.run_key("dqn", 0)) is stored
    assert find_run([stored], config.run_key("dqn", 1)) is None
    assert find_run([stored], AblationConfig(steps=1000).run_key("dqn", 0)) is None
    assert find_run([stored], AblationConfig(overrides={"learning_rate": 1e-3}).run_key("dqn", 0)) is None
    # A run stored before hyperparameters were recorded matches no key.
    older = {k: v for k, v in stored.items() if k != "hyperparameters"}
    assert find_run([older], config.run_key("dqn", 0)) is None


def test_summarise_aggregates_seeds_censors_misses_and_compares_with_dqn():
    config = AblationConfig(steps=300, seeds=(0, 1), variants=("rainbow", "no_per", "dqn"))
    runs = [
        _record(config, "rainbow", 1, [[0, 10.0, 0.0, 10.0], [300, 500.0, 0.0, 500.0]], speed=50.0),
        _record(config, "rainbow", 0, [[0, 10.0, 0.0, 10.0], [150, 480.0, 0.0, 480.0], [300, 470.0, 0.0, 470.0]],
                speed=50.0),
        _record(config, "dqn", 0, [[0, 9.0, 0.0], [300, 20.0, 0.0]], speed=100.0),  # stored before lengths
    ]
    rows = summarise(config, runs)["variants"]
    assert list(rows) == ["rainbow", "dqn"]  # no_per has no runs
    rainbow, dqn = rows["rainbow"], rows["dqn"]
    assert rainbow["seeds"] == [0, 1] and rainbow["final_per_seed"] == [470.0, 500.0]
    assert rainbow["final_mean"] == pytest.approx(485.0) and rainbow["best_mean"] == pytest.approx(490.0)
    assert rainbow["steps_to_threshold"] == [150, 300] and rainbow["seeds_reaching_threshold"] == 2
    assert rainbow["seeds_final_above_threshold"] == 1
    assert rainbow["final_length_mean"] == pytest.approx(485.0)
    assert rainbow["slowdown_vs_dqn_cpu"] == rainbow["slowdown_vs_dqn_wall"] == pytest.approx(2.0)
    # A seed that never reaches the threshold counts as the full budget; 3-element points have no length.
    assert dqn["steps_to_threshold"] == [None] and dqn["steps_to_threshold_mean"] == 300.0
    assert dqn["final_length_mean"] is None and dqn["seeds_final_above_threshold"] == 0


def test_summarise_on_tracking_judges_episode_length():
    config = AblationConfig(env="tracking", steps=10_000, seeds=(0,), variants=("rainbow",))
    curve = [[0, -1.0, 0.1, 18.0], [5000, -0.9, 0.1, 960.0], [10000, -0.2, 0.1, 700.0]]
    summary = summarise(config, [_record(config, "rainbow", 0, curve)])
    row = summary["variants"]["rainbow"]
    assert row["steps_to_threshold"] == [5000] and row["seeds_final_above_threshold"] == 0
    assert summary["config"]["threshold_metric"] == "length" and summary["config"]["threshold"] == 950.0
    assert "steps to length 950 (per seed)" in format_table(summary)


@pytest.mark.parametrize("name", ["rainbow_cartpole", "rainbow_tracking"])
def test_format_table_reads_stored_summaries(name):
    """Summaries written by earlier versions (before ``threshold_metric`` existed, for CartPole) still format."""
    summary = json.loads((FIGURES / f"{name}.json").read_text())
    lines = format_table(summary).splitlines()
    assert lines[0].startswith("| variant | final return (mean ± sd) |") and lines[1] == "|" + "---|" * 9
    assert len(lines) == 2 + len(summary["variants"])
    assert lines[2].startswith("| rainbow |") and all(line.count("|") == 10 for line in lines)


@pytest.mark.parametrize("env", ["cartpole", "tracking"])
def test_format_throughput_reads_stored_results(env):
    result = json.loads((FIGURES / f"rainbow_throughput_{env}.json").read_text())
    lines = format_throughput(result).splitlines()
    assert lines[:2] == ["| variant | env steps/s (CPU) | updates | slowdown vs DQN (CPU) | parameters |",
                         "|---|---|---|---|---|"]
    assert any(line.startswith("| dqn |") and "| 1.00x |" in line for line in lines)


@pytest.fixture
def fake_training(monkeypatch):
    """Replace training by a stub that records what it was asked to train."""
    trained: list[tuple[str, int, int]] = []

    def run_one(config: AblationConfig, variant: str, seed: int) -> dict[str, Any]:
        trained.append((variant, seed, config.steps))
        return _record(config, variant, seed, [[0, 1.0, 0.0, 1.0], [config.steps, 2.0, 0.0, 2.0]])

    monkeypatch.setattr(ablation, "run_one", run_one)
    return trained


def test_run_ablation_trains_missing_runs_reuses_stored_ones_and_writes_outputs(tmp_path, fake_training):
    config = AblationConfig(steps=100, seeds=(0, 1), variants=("rainbow", "dqn"), out=tmp_path)
    summary = run_ablation(config, progress=False)
    assert fake_training == [("rainbow", 0, 100), ("rainbow", 1, 100), ("dqn", 0, 100), ("dqn", 1, 100)]
    folder = tmp_path / "cartpole"
    assert len(load_runs(folder / "runs.jsonl")) == 4
    assert json.loads((folder / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert list(summary) == ["config", "command", "machine", "variants"]  # written in this order, not sorted
    assert (folder / "table.md").read_text() == format_table(summary)
    assert (folder / "curves.png").stat().st_size > 0
    # Everything stored: a second run trains nothing.
    run_ablation(config, progress=False)
    assert len(fake_training) == 4


def test_run_ablation_retrains_runs_stored_with_other_settings(tmp_path, fake_training):
    """A stored run of the same (variant, seed) but another budget or preset is not reused, and not counted."""
    run_ablation(AblationConfig(steps=100, seeds=(0,), variants=("dqn",), out=tmp_path), progress=False)
    summary = run_ablation(AblationConfig(steps=200, seeds=(0,), variants=("dqn",), out=tmp_path), progress=False)
    assert fake_training == [("dqn", 0, 100), ("dqn", 0, 200)]
    assert summary["variants"]["dqn"]["seeds"] == [0]


def test_run_ablation_without_training_summarises_stored_seeds_only(tmp_path, fake_training, monkeypatch):
    config = AblationConfig(steps=100, seeds=(0,), variants=("rainbow",), out=tmp_path)
    with pytest.raises(NoStoredRunsError, match="no stored runs"):
        run_ablation(config, progress=False, train=False)
    run_ablation(config, progress=False)
    wider = AblationConfig(steps=100, seeds=(0, 1), variants=("rainbow",), out=tmp_path)
    assert run_ablation(wider, progress=False, train=False)["variants"]["rainbow"]["seeds"] == [0]
    assert len(fake_training) == 1
    # A changed preset makes the stored run stale.
    monkeypatch.setitem(PRESETS["cartpole"], "learning_rate", 1e-3)
    with pytest.raises(NoStoredRunsError):
        run_ablation(config, progress=False, train=False)
