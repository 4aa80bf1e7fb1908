"""``vantage data fusion``, ``vantage fusion pretrain|calibrate|eval`` and ``vantage bench fusion`` from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scripts.cli import main


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_collect_pretrain_calibrate_and_eval(tmp_path: Path) -> None:
    data, model = tmp_path / "data", tmp_path / "model"
    result = run("data", "fusion", "--episodes", "2", "--max-steps", "12", "--out", str(data), "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["samples"] == 24
    one_line(run("data", "fusion", "--episodes", "2", "--out", str(data), "--no-progress"), 1, "already holds")
    result = run("fusion", "pretrain", "--data", str(data), "--out", str(model), "--epochs", "1", "--batch-size", "8",
                 "--latent", "16", "--no-progress")
    assert result.exit_code == 0, result.output
    assert {"manifest.json", "weights.pt", "model.onnx"} <= {p.name for p in model.iterdir()}
    result = run("fusion", "calibrate", str(model), "--data", str(data), "--false-positive-rate", "0.1")
    assert result.exit_code == 0 and "threshold" in json.loads(result.output)["detection"], result.output
    result = run("fusion", "eval", str(model), "--data", str(data), "--samples", "10")
    assert result.exit_code == 0 and "noise:rgb" in json.loads(result.output)["detection"], result.output


@pytest.mark.parametrize(("args", "code", "fragments"), [
    (("data", "fusion", "--episodes", "0", "--out", "x"), 1, ("episodes=0",)),
    (("data", "fusion", "--episodes", "1", "--random-fraction", "1.5", "--out", "x"), 1, ("random_fraction=1.5",)),
    (("fusion", "pretrain", "--data", "nowhere", "--out", "m", "--fusion", "attention"), 1, ("fusion 'attention'",)),
    (("fusion", "pretrain", "--data", "nowhere", "--out", "m", "--objectives", "flow"), 1, ("objective 'flow'",)),
    (("fusion", "pretrain", "--data", "nowhere", "--out", "m", "--modalities", "rgb,sonar"), 1, ("modality 'sonar'",)),
    (("fusion", "pretrain", "--data", "nowhere", "--out", "m"), 1, ("not a fusion dataset",)),
    (("bench", "fusion", "--policies", "scripted", "--conditions", "smoke:rgb", "--episodes", "1"), 1,
     ("unknown condition 'smoke:rgb'",)),
    (("bench", "fusion", "--policies", "scripted,oracle", "--episodes", "1"), 1, ("unknown policy 'oracle'",)),
    (("bench", "fusion", "--run", "latent=runs/x", "--episodes", "1"), 1, ("POLICY=RUN_DIR",)),
])
def test_bad_input_is_one_line(args: tuple[str, ...], code: int, fragments: tuple[str, ...]) -> None:
    one_line(run(*args), code, *fragments)


def test_train_refuses_an_encoder_that_does_not_fit(tmp_path: Path) -> None:
    """The shipped encoder takes 64 px images: a 32 px environment is refused before anything is written."""
    result = run("train", "fusion", "--steps", "64", "--env", "image_size=32", "--out", str(tmp_path / "run"))
    one_line(result, 1, "fusion encoder input 'rgb' has shape")
    assert not (tmp_path / "run").exists()


def test_bench_fusion_with_the_scripted_policy(tmp_path: Path) -> None:
    result = run("bench", "fusion", "--policies", "scripted", "--conditions", "all,missing:wrench", "--episodes", "1",
                 "--out", str(tmp_path / "b"), "--no-video", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert set(payload["success_rate"]["scripted"]) == {"all", "missing:wrench"}
