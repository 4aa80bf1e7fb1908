"""Identities at scale, the train / gallery / held-out split, face banks, and the recogniser trained on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from envs.worlds.face_scenes import IdentityViewSampler
from envs.worlds.identities import (
    GALLERY_IDENTITIES,
    HELDOUT_IDENTITIES,
    generate_identities,
    identities_at,
    identity_split,
)
from perception.errors import DatasetError, InvalidArgumentError
from perception.faces.bank import FaceBank, FaceBankConfig, generate_bank, open_face_data
from perception.faces.dataset import FaceDataset
from perception.faces.recognizer import FaceRecognizerLearner
from scripts.cli import main

#: two training identities, two views each, small frames, one identity per shard
TRAIN = FaceBankConfig(identities=((550, 553),), gallery=(0, 2), views=3, distance=(0.5, 1.5), yaw=(-30.0, 30.0),
                       image_size=(120, 160), shard_identities=1)
#: the two gallery identities and two held-out ones
CALIB = FaceBankConfig(identities=((0, 2), (300, 303)), gallery=(0, 2), views=3, distance=(0.5, 1.5),
                       yaw=(-30.0, 30.0), image_size=(120, 160), shard_identities=3)


@pytest.fixture(scope="module")
def banks(tmp_path_factory: pytest.TempPathFactory) -> tuple[FaceBank, FaceBank]:
    root = tmp_path_factory.mktemp("banks")
    generate_bank(root / "train", 1, TRAIN, IdentityViewSampler, progress=False)
    generate_bank(root / "calib", 2, CALIB, IdentityViewSampler, progress=False)
    return FaceBank(root / "train"), FaceBank(root / "calib")


def test_identities_at_scale_are_deterministic_and_do_not_move_as_the_set_grows() -> None:
    many = generate_identities(2600)
    picked = identities_at([0, 9, 49, 550, 2599])
    assert picked == [many[i] for i in (0, 9, 49, 550, 2599)] == identities_at([0, 9, 49, 550, 2599])
    assert generate_identities(50) == many[:50]  # the gallery is the same whatever the scale
    assert np.array_equal(picked[-1].texture(), identities_at([2599])[0].texture())
    assert len({f.to_dict()["skin"] + f.to_dict()["head_radii"] for f in many}) == len(many)  # all distinct


def test_train_gallery_and_heldout_identities_are_disjoint() -> None:
    split = identity_split(2000)
    sets = {k: set(v) for k, v in split.items()}
    assert not sets["gallery"] & sets["heldout"] and not sets["gallery"] & sets["train"]
    assert not sets["heldout"] & sets["train"]
    assert set(range(10)) <= sets["gallery"]  # the drone task's people
    assert len(sets["heldout"]) == 500 and split["train"] == range(550, 2550)
    assert identity_split(10)["train"] == range(550, 560)  # growing the training set never moves an identity
    with pytest.raises(InvalidArgumentError):
        identity_split(0)


def test_bank_is_deterministic_resumable_and_refuses_other_settings(banks: tuple[FaceBank, FaceBank],
                                                                      tmp_path: Path) -> None:
    train, _ = banks
    views = train.load()
    assert set(views["identity"].tolist()) == {550, 551, 552} and views["crops"].shape[1:] == (80, 80, 3)
    assert np.all(np.abs(views["yaw"]) <= 30.0 + 1e-3) and np.all(views["distance"] < 1.6)
    again = tmp_path / "again"
    generate_bank(again, 1, TRAIN, IdentityViewSampler, progress=False)
    (again / "views_00001.json").unlink()  # as if killed while writing the second shard
    generate_bank(again, 1, TRAIN, IdentityViewSampler, progress=False)
    assert FaceBank(again).content_hash == train.content_hash
    with pytest.raises(DatasetError, match="other settings or seed"):
        generate_bank(again, 2, TRAIN, IdentityViewSampler, progress=False)
    assert isinstance(open_face_data(again), FaceBank)
    ids, crops = FaceBank(again).gallery()
    assert ids == [0, 1] and crops.shape == (2, 64, 64, 3)


def test_training_on_gallery_or_heldout_identities_is_refused(banks: tuple[FaceBank, FaceBank]) -> None:
    _, calib = banks
    rec = FaceRecognizerLearner(embedding_dim=16, width=8)
    with pytest.raises(InvalidArgumentError, match=r"never trained on the gallery \(0-49\) or held-out \(50-549\)"):
        rec.fit(calib, epochs=1, batch_size=4, progress=False, calibration=str(calib.root))
    assert GALLERY_IDENTITIES.stop == HELDOUT_IDENTITIES.start


def test_fit_on_a_bank_enrols_the_gallery_and_calibrates_for_the_target_far(banks: tuple[FaceBank, FaceBank],
                                                                             tmp_path: Path) -> None:
    train, calib = banks
    rec = FaceRecognizerLearner(embedding_dim=16, width=8, loss="arcface", margin=0.3)
    summary = rec.fit(train, epochs=2, batch_size=4, progress=False, calibration=str(calib.root), target_far=0.2)
    assert rec.gallery_names == ["id_000", "id_001"] and rec.training_data_hash == train.content_hash
    assert summary["calibration_unknown_n"] == 9 and summary["identities"] == 3
    top = np.sort((rec.embed(list(calib.load({300, 301, 302})["crops"][:, 8:72, 8:72])) @ rec.gallery.T).max(1))
    assert np.mean(top >= rec.threshold) <= 0.2  # at most 20 % of the held-out views accepted
    metrics = rec.eval(calib)
    for key in ("tar_at_far_1e-2", "tar_at_far_1e-3", "open_set_rejection", "close_range_acceptance", "by_pitch"):
        assert key in metrics
    assert metrics["known_views"] == 6 and metrics["views"] == 15
    rec.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]["loss"] == "arcface"


def test_face_bank_and_eval_commands(banks: tuple[FaceBank, FaceBank], tiny_dataset: FaceDataset,
                                     tiny_recognizer: FaceRecognizerLearner, tmp_path: Path) -> None:
    _, calib = banks
    bad = CliRunner().invoke(main, ["data", "face-bank", "--identities", "5-9", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "START:STOP" in bad.output and not (tmp_path / "b").exists()
    args = ["data", "face-bank", "--identities", "600:601", "--views", "2", "--gallery", "none", "--seed", "3",
            "--distance", "0.6", "1.2", "--out", str(tmp_path / "b"), "--no-progress"]
    made = CliRunner().invoke(main, args)
    assert made.exit_code == 0, made.output
    assert json.loads(made.output[made.output.index("{"):])["identities"] == 1
    tiny_recognizer.save(tmp_path / "rec")
    for data in (calib.root, tiny_dataset.root):  # a face bank and a frame dataset give the same keys
        out = CliRunner().invoke(main, ["perception", "eval", str(tmp_path / "rec"), "--data", str(data)])
        assert out.exit_code == 0, out.output
        metrics = json.loads(out.output[out.output.index("{"):])["metrics"]
        for key in ("tar_at_far_1e-2", "tar_at_far_1e-3", "open_set_rejection", "close_range_acceptance",
                    "frontal_3m_identification"):
            assert key in metrics
    det = CliRunner().invoke(main, ["perception", "fit", "face_detector", "--data", str(calib.root), "--out",
                                    str(tmp_path / "det")])
    assert det.exit_code != 0 and "face bank" in det.output and not (tmp_path / "det").exists()


def test_shipped_recogniser_meets_its_operating_point_on_unseen_views(tmp_path: Path) -> None:
    """Views the shipped model never saw (seed 77; held-out identities 500-549, never trained on or calibrated
    with), frontal within 3 m: the operating point docs/perception.md states for the shipped weights (measured
    here: TAR 96.7 % at FAR 1 %, rank-1 97.3 %, strangers rejected 90.7 %, enrolled accepted 87.3 %). The
    issue-18 targets (TAR >= 98 %, rejection >= 99 %) are not met by these weights; see docs/perception.md."""
    from perception.learner import load_model

    from .conftest import shipped

    rec = load_model(shipped("face_recognizer"))
    config = FaceBankConfig(identities=((0, 50), (500, 550)), gallery=None, views=3, distance=(0.5, 3.0),
                            yaw=(-30.0, 30.0), shard_identities=100)
    generate_bank(tmp_path / "sample", 77, config, IdentityViewSampler, progress=False)
    metrics = rec.eval(FaceBank(tmp_path / "sample"))
    assert metrics["frontal_3m_n"] == 150 and metrics["unknown_n"] == 150
    assert metrics["tar_at_far_1e-2"] >= 0.95
    assert metrics["frontal_3m_identification"] >= 0.97
    assert metrics["open_set_rejection"] >= 0.90
    assert metrics["frontal_3m_acceptance"] >= 0.85
