"""``vantage data vqa``, ``vantage vqa fit|eval`` and ``vantage bench active-vs-static vqa`` end to end, tiny."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from scripts.cli import main


def test_data_fit_eval_and_bench_on_a_tiny_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "clevr"
    result = runner.invoke(main, ["data", "vqa", "--scenes", "3", "--questions-per-scene", "4", "--out", str(data),
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["questions"] == 12 and (data / "images" / "train" / "CLEVR_train_000002.png").is_file()
    questions = json.loads((data / "questions" / "CLEVR_train_questions.json").read_text())["questions"]
    scenes = json.loads((data / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
    assert {"question", "answer", "program", "question_family_index", "image_filename"} <= set(questions[0])
    assert {"objects", "relationships", "directions", "image_filename"} <= set(scenes[0])
    # The same command again is refused without --overwrite, naming the files; scene i depends only on (seed, i).
    again = runner.invoke(main, ["data", "vqa", "--scenes", "3", "--out", str(data), "--no-progress"])
    assert again.exit_code != 0 and "--overwrite" in again.output and "Traceback" not in again.output
    other = tmp_path / "other"
    assert runner.invoke(main, ["data", "vqa", "--scenes", "2", "--questions-per-scene", "4", "--out", str(other),
                                "--no-progress"]).exit_code == 0
    assert json.loads((other / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"] == scenes[:2]
    bad = runner.invoke(main, ["data", "vqa", "--scenes", "0", "--out", str(tmp_path / "x"), "--no-progress"])
    assert bad.exit_code != 0 and "scenes=0" in bad.output and not (tmp_path / "x").exists()

    model = tmp_path / "vqa"
    result = runner.invoke(main, ["vqa", "fit", "--data", str(data), "--out", str(model), "--epochs", "1",
                                  "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert (model / "manifest.json").is_file() and (model / "model.onnx").is_file()
    result = runner.invoke(main, ["vqa", "eval", str(model), "--data", str(data)])
    assert result.exit_code == 0 and "oracle" in json.loads(result.output)["accuracy"]

    out = tmp_path / "bench"
    args = ["bench", "active-vs-static", "vqa", "--data", str(data), "--episodes", "6", "--vqa-dir", str(model),
            "--speed-steps", "20", "--out", str(out), "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    bench = json.loads(result.output)
    assert set(bench["accuracy"]) == {"whole_image", "random", "rule", "oracle_crop"}
    for rules in bench["accuracy"].values():
        assert set(rules) == {"last", "most_confident", "average", "oracle_frame"}
        assert set(rules["average"]) == {"all", "far_small"}
    # The whole image never moves: every rule gives the same answer.
    whole = bench["accuracy"]["whole_image"]
    assert whole["last"] == whole["average"] == whole["most_confident"] == whole["oracle_frame"]
    assert bench["speed"]["env_steps_per_s"] > 0 and (out / "vqa_examples.png").is_file()
    refused = runner.invoke(main, args)
    assert refused.exit_code != 0 and "--overwrite" in refused.output
    unknown = runner.invoke(main, ["bench", "active-vs-static", "vqa", "--data", str(data), "--policies", "oracle",
                                   "--vqa-dir", str(model), "--out", str(tmp_path / "b2")])
    assert unknown.exit_code != 0 and "'oracle'" in unknown.output and "whole_image" in unknown.output
