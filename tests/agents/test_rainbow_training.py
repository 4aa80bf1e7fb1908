"""`vantage train tracking --algo rainbow` end to end on a toy budget."""

import json

from click.testing import CliRunner

from agents.rainbow import Rainbow
from agents.training import load_agent
from scripts.cli import main


def test_cli_trains_evaluates_and_resumes_rainbow(tmp_path):
    run = tmp_path / "rainbow"
    tiny = [
        "--set",
        "learning_starts=16",
        "--set",
        "buffer_size=500",
        "--set",
        "batch_size=8",
        "--set",
        "target_update_interval=16",
        "--set",
        "train_freq=4",
    ]
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "train",
            "tracking",
            "--algo",
            "rainbow",
            "--steps",
            "64",
            "--n-envs",
            "1",
            "--checkpoint-every",
            "32",
            "--no-progress",
            "--out",
            str(run),
            *tiny,
        ],
    )
    assert result.exit_code == 0, result.output
    config, agent = load_agent(run)
    assert config.algo == "rainbow" and isinstance(agent, Rainbow)
    result = runner.invoke(main, ["train", "tracking", "--steps", "96", "--resume", "--no-progress", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "train_summary.json").read_text())["num_timesteps"] == 96
    result = runner.invoke(main, ["eval", str(run), "--episodes", "1", "--json", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["episodes"] == 1


def test_rainbow_rejects_continuous_tracking(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "train",
            "tracking",
            "--algo",
            "rainbow",
            "--action-mode",
            "continuous",
            "--steps",
            "32",
            "--no-progress",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code != 0
    assert "Discrete" in result.output or "discrete" in result.output
