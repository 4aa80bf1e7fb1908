"""The shipped agents still give the numbers recorded before the architecture refactor (issue 13).

``tests/data/proof/`` holds the outputs of the commands in its README, recorded on the pre-refactor code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from scripts.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROOF = ROOT / "tests" / "data" / "proof"
TRACKING_AGENT = ROOT / "assets" / "models" / "tracking_ppo_td"


def test_tracking_eval_reproduces_recorded_figures(tmp_path: Path) -> None:
    run = tmp_path / "tracking_ppo_td"
    shutil.copytree(TRACKING_AGENT, run)
    result = CliRunner().invoke(main, ["eval", str(run), "--episodes", "3", "--seed", "4242", "--json", "--out",
                                       str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    want = json.loads((PROOF / "tracking_eval_seed4242.json").read_text())
    for key in ("distance_error_mean", "distance_error_std", "angle_error_mean", "steps_mean", "return_mean",
                "lost_fraction", "episodes"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key


FACE_AGENT = ROOT / "assets" / "models" / "face_ppo_paper_shaped"


def test_face_bench_cell_reproduces_recorded_episodes(tmp_path: Path) -> None:
    # One cell of the recorded grid: every cell uses the same episode seeds, so it repeats on its own.
    result = CliRunner().invoke(main, [
        "bench", "active-vs-static", "face-recognition", "--agent", str(FACE_AGENT), "--stochastic",
        "--policies", "static", "--setups", "setup2", "--setup2-distances", "3", "--setup2-angles", "240",
        "--episodes", "3", "--speed-steps", "0", "--seed", "7", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads((tmp_path / "face_recognition_episodes.json").read_text())
    want = json.loads((PROOF / "face_bench_seed7_episodes.json").read_text())
    for label, cells in got.items():
        (cell,) = cells
        (recorded,) = [c for c in want[label] if (c["setup"], c["distance"], c["angle_deg"]) == ("setup2", 3.0, 240.0)]
        assert cell == recorded, label


def test_face_dataset_repeats_the_recorded_frames(tmp_path: Path) -> None:
    # Recorded with the pre-refactor generator (perception.faces.dataset at bb986bf): 30 frames, seed 5.
    from envs.worlds.face_scenes import FaceSceneSampler, render_gallery
    from perception.faces.dataset import FaceDataset, FaceSceneConfig, generate_dataset

    config = FaceSceneConfig(shard_size=10)
    generate_dataset(tmp_path / "d", 30, seed=5, config=config, sampler=FaceSceneSampler, progress=False)
    assert FaceDataset(tmp_path / "d").content_hash == \
        "cb2579b7043d5905bf09f842f04fde8827e4cc5ad022ed171f6e4641c2260018"
    gallery = render_gallery(config, tmp_path / "g", [0, 3, 7])
    digest = hashlib.sha256(b"".join(image.tobytes() for _, image, _ in gallery)).hexdigest()
    assert digest == "62c745d6a75e6c896c53afeb3c114c05e465cd1d1d2b79d129b3540fad25206d"
    assert gallery[0][2]["box"] == pytest.approx((144.85228695886107, 101.80309020227273, 175.14771304113887,
                                                  149.67746174681025), abs=0)
