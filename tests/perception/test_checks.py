"""What the perception models, datasets and their commands check before they write or load anything.

Nothing is overwritten without ``--overwrite``, nothing goes into a folder of another artefact, settings fail
before a file is written, loaders name the damaged file, enrolment checks its box, errors are one line.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from envs.worlds.face_scenes import FaceSceneSampler
from perception.errors import (
    CheckpointError,
    DatasetError,
    EnrollmentError,
    InvalidArgumentError,
    ManifestError,
    ModelExistsError,
    ModelRoleError,
    OnnxModelError,
    OutputExistsError,
    SpecMismatchError,
)
from perception.faces.dataset import FaceDataset, FaceSceneConfig, generate_dataset
from perception.faces.detector import FaceDetectorLearner
from perception.faces.pipeline import FacePipeline
from perception.faces.recognizer import FaceRecognizerLearner
from perception.learner import load_model, make_model
from perception.manifest import INT8_ONNX_FILE
from perception.progress import Progress
from perception.runtime import OnnxRuntime
from perception.specs import TensorSpec
from perception.training import fit_options
from scripts.cli import main
from tests.fakes import fake_model

from .conftest import shipped


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


# -- 1. nothing overwritten, nothing mixed ---------------------------------------------------------------------

def test_export_into_another_models_folder_is_refused_naming_both(tiny_detector: FaceDetectorLearner,
                                                                  tiny_recognizer: FaceRecognizerLearner,
                                                                  tiny_dataset: FaceDataset, tmp_path: Path) -> None:
    det = tiny_detector.save(tmp_path / "det")
    rec = tiny_recognizer.save(tmp_path / "rec")
    rec_onnx = tiny_recognizer.export(rec)
    before = rec_onnx.read_bytes()
    for extra in ([], ["--overwrite"]):  # refused even with --overwrite: the folder would hold two models
        code, out = _run("perception", "export", det, "--out", rec, "--no-check", *extra)
        assert code == 1 and "ModelExistsError" in out and "'face_recognizer'" in out and "'face_detector'" in out
        assert out.count("\n") == 1  # one line, no traceback
    assert rec_onnx.read_bytes() == before
    # Its own folder (the default) is rewritten without --overwrite: model.onnx depends on the weights alone.
    assert _run("perception", "export", det, "--no-check")[0] == 0
    assert _run("perception", "export", det, "--no-check")[0] == 0
    # A copy of the same model is the same model.
    shutil.copytree(det, tmp_path / "copy")
    assert _run("perception", "export", det, "--out", tmp_path / "copy", "--no-check")[0] == 0
    # Anywhere else an existing file needs --overwrite; a dataset folder never receives it.
    target = tmp_path / "plain" / "det.onnx"
    assert _run("perception", "export", det, "--out", target, "--no-check")[0] == 0
    code, out = _run("perception", "export", det, "--out", target, "--no-check")
    assert code == 1 and "--overwrite" in out
    assert _run("perception", "export", det, "--out", target, "--no-check", "--overwrite")[0] == 0
    code, out = _run("perception", "export", det, "--out", tiny_dataset.root, "--no-check", "--overwrite")
    assert code == 1 and "face dataset" in out and not (tiny_dataset.root / "model.onnx").exists()


def test_derived_files_that_depend_on_more_than_the_weights_need_overwrite(tiny_detector: FaceDetectorLearner,
                                                                           tmp_path: Path) -> None:
    out = tiny_detector.save(tmp_path / "det")
    (out / INT8_ONNX_FILE).write_bytes(b"made from other calibration data")
    (out / "model.fp16.engine").write_bytes(b"built on another GPU")
    learner = load_model(out)
    for file in (INT8_ONNX_FILE, "model.fp16.engine"):
        with pytest.raises(ModelExistsError, match="--overwrite"):
            learner.check_output(out, [file])
        learner.check_output(out, [file], overwrite=True)
    learner.check_output(out, ["model.onnx", "model.fp16.onnx"])  # regenerated from the weights
    # An in-memory model whose weights changed since it was loaded is not the model in the folder any more.
    learner.saved_identity = None
    with pytest.raises(ModelExistsError, match="save it first"):
        learner.check_output(out, ["model.onnx"])
    # Saving new weights over a model removes the files made from the old ones.
    tiny_detector.save(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "weights.pt"]


def test_save_never_writes_into_a_dataset_or_a_file(tiny_detector: FaceDetectorLearner, tiny_dataset: FaceDataset,
                                                    tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError, match="face dataset"):
        tiny_detector.save(tiny_dataset.root, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        tiny_detector.save(tmp_path / "file", overwrite=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="training run"):
        tiny_detector.save(tmp_path / "run", overwrite=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(ModelExistsError, match=r"files \(todo\.txt\)"):
        tiny_detector.save(tmp_path / "notes")


def test_data_faces_refuses_other_artefacts_and_stray_shards(tiny_detector: FaceDetectorLearner,
                                                             tmp_path: Path) -> None:
    model = tiny_detector.save(tmp_path / "model")
    args = ["data", "faces", "--n", "2", "--identities", "4", "--heldout", "1", "--no-progress"]
    code, out = _run(*args, "--out", model)
    assert code == 1 and "saved perception model" in out and not (model / "dataset.json").exists()
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "shard_00000.json").write_text("{}")
    code, out = _run(*args, "--out", stray)
    assert code == 1 and "no dataset.json" in out and sorted(p.name for p in stray.iterdir()) == ["shard_00000.json"]


def test_bench_perception_out_and_threads(tmp_path: Path) -> None:
    det, rec = shipped("face_detector"), shipped("face_recognizer")
    code, out = _run("bench", "perception", "--detector", rec, "--recognizer", det, "--iterations", "1")
    assert code == 1 and "ModelRoleError" in out and "swapped" in out and str(rec) in out and str(det) in out
    target = tmp_path / "bench.json"
    target.write_text("earlier results")
    code, out = _run("bench", "perception", "--iterations", "1", "--out", target)
    assert code == 1 and "--overwrite" in out and target.read_text() == "earlier results"
    code, out = _run("bench", "perception", "--iterations", "2", "--out", target, "--overwrite", "--json")
    assert code == 0, out
    result = json.loads(target.read_text())
    assert result["threads"] == 1 and result["torch_threads"] == 1  # the default: what the documented figures use
    # Progress lines, one as each measurement starts and ends, although stderr is not a terminal here.
    assert "face_detector on torch (1 thread, 2 iterations) ..." in out
    assert "pipeline on onnxruntime" in out


# -- 2. settings checked before anything is created ------------------------------------------------------------

@pytest.mark.parametrize(("option", "match"), [
    (["--distance", "5", "1"], "reversed"),
    (["--distance", "-1", "2"], "distance range"),
    (["--yaw", "90", "-90"], "reversed"),
    (["--yaw", "-200", "0"], "yaw range"),
    (["--height", "-0.5", "2"], "camera_height"),
    (["--size", "0", "320"], "image_size"),
    (["--identities", "5", "--heldout", "5"], "n_heldout"),
    (["--shard-size", "0"], "shard_size"),
    (["--extra-people", "-1"], "max_extra_people"),
    (["--n", "0"], "number of frames"),
])
def test_bad_dataset_settings_fail_before_anything_is_written(option: list[str], match: str, tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = ["data", "faces", "--out", out, "--no-progress", *option]
    if "--n" not in option:
        args += ["--n", "2"]
    code, text = _run(*args)
    assert code != 0 and match in text and text.count("\n") == 1
    assert not out.exists()


class _NoOpenGL(FaceSceneSampler):
    """A sampler whose renderer fails at the first frame, as a machine without OpenGL does (a fake for this module)."""

    def __init__(self, config: FaceSceneConfig, world_dir: Path) -> None:
        self.config = config

    def render(self, index: int, seed: int) -> tuple[np.ndarray, dict]:
        raise RuntimeError("no OpenGL context (simulated)")

    def close(self) -> None:
        pass


def test_a_run_that_rendered_nothing_leaves_no_manifest(tmp_path: Path) -> None:
    out = tmp_path / "d"
    config = FaceSceneConfig(n_identities=4, n_heldout=1, shard_size=2)
    with pytest.raises(RuntimeError, match="OpenGL"):
        generate_dataset(out, 2, seed=0, config=config, sampler=_NoOpenGL)
    assert not (out / "dataset.json").exists()  # so a corrected command (other settings) may use the folder
    with pytest.raises(RuntimeError, match="OpenGL"):
        generate_dataset(out, 4, seed=1, config=config, sampler=_NoOpenGL, progress=False)


def test_dataset_settings_reject_nan() -> None:
    with pytest.raises(InvalidArgumentError, match="camera_height"):
        FaceSceneConfig(camera_height=(math.nan, 2.0))
    with pytest.raises(InvalidArgumentError, match="image_size"):
        FaceSceneConfig(image_size=(240.5, 320))  # type: ignore[arg-type]


def test_fit_checks_everything_before_creating_out(tiny_dataset: FaceDataset, tiny_recognizer: FaceRecognizerLearner,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "det"
    base = ["perception", "fit", "face_detector", "--data", tiny_dataset.root, "--out", out, "--epochs", "1",
            "--config", "width=4", "--config", "input_size=[64, 80]"]
    empty = tmp_path / "empty"
    empty.mkdir()
    rec = tiny_recognizer.save(tmp_path / "rec")
    for extra, match in [(["--lr", "nan"], "learning rate"), (["--lr", "0"], "learning rate"),
                         (["--epochs", "0"], "epochs"), (["--batch-size", "0"], "batch_size"),
                         (["--max-frames", "0"], "max_frames"), (["--threads", "0"], "--threads"),
                         (["--config", "width=abc"], "width"), (["--config", "depth=3"], "unknown config keys"),
                         (["--option", "crop=abc"], "crop"), (["--option", "crop=[30, 40]"], "multiples of 16"),
                         (["--init", rec], "'face_recognizer'"), (["--eval-data", empty], "no face dataset")]:
        code, text = _run(*base, *extra)
        assert code != 0 and match in text, (extra, text)
        assert "Traceback" not in text and not out.exists() and not (tmp_path / ".det.fit-checkpoint.pt").exists()
    code, text = _run("perception", "fit", "yunet", "--data", tiny_dataset.root, "--out", out)
    assert code == 1 and "import-onnx" in text and not out.exists()


def test_fit_options_and_config_values_are_typed(tiny_detector: FaceDetectorLearner) -> None:
    assert fit_options(tiny_detector, {"crop": [32, 48], "min_height": 4}, {}) == {"crop": [32, 48], "min_height": 4}
    with pytest.raises(InvalidArgumentError, match=r"min_height='x' must be of type float"):
        fit_options(tiny_detector, {"min_height": "x"}, {})
    with pytest.raises(InvalidArgumentError, match="crop"):
        fit_options(tiny_detector, {"crop": "abc"}, {})
    with pytest.raises(InvalidArgumentError, match=r"crop must be \(height, width\)"):
        FaceDetectorLearner(width=4).fit("no/such/dataset", crop=[32])  # checked before the dataset is read
    with pytest.raises(InvalidArgumentError, match=r"unknown config keys \['depth'\]"):
        make_model("face_detector", depth=3)
    with pytest.raises(InvalidArgumentError, match="does not fit face_detector"):
        make_model("face_detector", input_size=[64])
    with pytest.raises(InvalidArgumentError, match="finite"):
        make_model("face_detector", score_threshold=math.nan)
    with pytest.raises(InvalidArgumentError, match="learning rate"):
        FaceDetectorLearner(width=4).fit("no/such/dataset", lr=-1.0)  # checked before the dataset is read


# -- 3. loaders check what they load ---------------------------------------------------------------------------

def test_pipeline_checks_each_folders_role_naming_both(tiny_detector: FaceDetectorLearner,
                                                       tiny_recognizer: FaceRecognizerLearner, tmp_path: Path) -> None:
    det = tiny_detector.save(tmp_path / "det")
    rec = tiny_recognizer.save(tmp_path / "rec")
    with pytest.raises(ModelRoleError, match="swapped") as swapped:
        FacePipeline.load(rec, det, runtime="torch")
    assert str(det) in str(swapped.value) and str(rec) in str(swapped.value)
    with pytest.raises(ModelRoleError, match="not a face recogniser"):
        FacePipeline.load(det, det, runtime="torch")
    from envs.registration import make_drone_face_env  # the environment factory loads through FacePipeline.load

    with pytest.raises(ModelRoleError, match="swapped"):
        make_drone_face_env(detector_dir=rec, recognizer_dir=det)
    with pytest.raises(ModelRoleError, match="not a face detector"):
        FacePipeline(tiny_recognizer, tiny_recognizer)
    pipe = FacePipeline.load(det, rec, runtime="torch")
    assert isinstance(pipe(np.zeros((64, 80, 3), np.uint8)), list)


def test_onnx_outputs_are_checked_against_the_specs(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    path = tiny_detector.export(tmp_path / "det.onnx")
    OnnxRuntime(path, inputs=tiny_detector.input_specs(), outputs=tiny_detector.output_spec())
    with pytest.raises(SpecMismatchError, match="outputs"):
        OnnxRuntime(path, outputs=[TensorSpec("heatmap", [-1, 5, 16, 20])])
    with pytest.raises(SpecMismatchError, match="output 'output'"):
        OnnxRuntime(path, outputs=[TensorSpec("output", [-1, 5, 32, 40])])
    out = tiny_detector.save(tmp_path / "saved")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["outputs"][0]["name"] = "heatmap"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="outputs"):
        load_model(out)


def test_onnx_only_models_check_their_file(tmp_path: Path) -> None:
    out = make_model("yunet", onnx_path=str(fake_model("yunet", tmp_path / "y.onnx"))).save(tmp_path / "yunet")
    assert json.loads((out / "manifest.json").read_text())["onnx"]["sha256"]
    with open(out / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match="SHA-256"):
        load_model(out)
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes((tmp_path / "y.onnx").read_bytes()[:300])
    with pytest.raises(OnnxModelError, match="truncated, corrupt or not ONNX"):
        make_model("yunet", onnx_path=str(truncated))


def test_damaged_model_files_are_named(tiny_detector: FaceDetectorLearner, tmp_path: Path) -> None:
    out = tiny_detector.save(tmp_path / "det")
    onnx_file = tiny_detector.export(out)
    onnx_file.write_bytes(onnx_file.read_bytes()[:200])
    learner = load_model(out)
    with pytest.raises(OnnxModelError, match=r"model\.onnx.*re-export"):
        learner.set_runtime("onnxruntime")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["weights"]["sha256"] = None  # without a hash the damage shows when the file is read
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "weights.pt").write_bytes((out / "weights.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"weights\.pt.*truncated or corrupt"):
        load_model(out)
    (out / "manifest.json").write_text(json.dumps({**manifest, "config": [1, 2]}))
    with pytest.raises(ManifestError, match="'config' must be a JSON object"):
        load_model(out)


def test_damaged_dataset_files_are_named_with_what_to_do(tiny_dataset: FaceDataset, tmp_path: Path) -> None:
    root = tmp_path / "d"
    shutil.copytree(tiny_dataset.root, root, ignore=shutil.ignore_patterns("world"))
    npz = root / "shard_00001.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"shard_00001\.npz is truncated or corrupt.*delete shard_00001\.json"):
        list(FaceDataset(root))
    (root / "shard_00000.json").write_text('{"frames": [')
    with pytest.raises(DatasetError, match=r"shard_00000\.json is unreadable or corrupt"):
        _ = FaceDataset(root).content_hash
    (root / "gallery.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"gallery\.npz"):
        FaceDataset(root).gallery()
    (root / "dataset.json").write_text("{")
    with pytest.raises(DatasetError, match=r"dataset\.json is unreadable or corrupt"):
        FaceDataset(root)


def test_enrolment_checks_the_box_and_replacing(tiny_recognizer: FaceRecognizerLearner,
                                                tiny_dataset: FaceDataset) -> None:
    _, image, label = tiny_dataset.gallery([6])[0]
    w = image.shape[1]
    try:
        for box, match in [((np.nan, 0, 10, 10), "finite"), ((10, 10, 10, 30), "no area"),
                           ((30, 10, 10, 30), "no area"), ((w + 5, 0, w + 40, 30), "inside"),
                           ((-30, 10, 5, 40), "inside"), ((1, 2, 3), "4 finite"), ("abcd", "4 numbers")]:
            with pytest.raises(EnrollmentError, match=match):
                tiny_recognizer.enroll("probe", image, box)
        assert "probe" not in tiny_recognizer.gallery_names
        first = tiny_recognizer.enroll("probe", image, label.box)
        with pytest.raises(EnrollmentError, match=r"already enrolled.*replace=True"):
            tiny_recognizer.enroll("probe", image, label.box)
        assert np.array_equal(tiny_recognizer.gallery[tiny_recognizer.gallery_names.index("probe")], first)
        moved = tiny_recognizer.enroll("probe", image, np.add(label.box, [2, 0, 2, 0]), replace=True)
        assert tiny_recognizer.gallery_names.count("probe") == 1
        assert np.array_equal(tiny_recognizer.gallery[tiny_recognizer.gallery_names.index("probe")], moved)
        # A box mostly (>= 60 %) inside the image is clipped to it, as the detector's boxes are; less is refused.
        x0, y0, x1, y1 = label.box
        cut = round(x1 - 0.3 * (x1 - x0))
        part = np.ascontiguousarray(image[:, :cut])
        spilled = tiny_recognizer.enroll("spilled", part, label.box)
        clipped = tiny_recognizer.enroll("clipped", part, (x0, y0, cut, y1))
        np.testing.assert_allclose(spilled, clipped, atol=1e-6)
        with pytest.raises(EnrollmentError, match="inside"):
            tiny_recognizer.enroll("half", np.ascontiguousarray(image[:, :int(x0 + 0.5 * (x1 - x0))]), label.box)
    finally:
        for name in ("probe", "spilled", "clipped"):
            if name in tiny_recognizer.gallery_names:
                tiny_recognizer.remove(name)


# -- 5. progress without a terminal ----------------------------------------------------------------------------

def test_data_faces_prints_a_line_per_shard_without_a_terminal(tmp_path: Path) -> None:
    code, out = _run("data", "faces", "--n", "2", "--identities", "3", "--heldout", "1", "--shard-size", "1",
                     "--distance", "0.6", "2", "--out", tmp_path / "d")
    assert code == 0, out
    assert "rendering faces: shard 1/2 written" in out and "shard 2/2 written" in out and "gallery of 3" in out


def test_progress_prints_plain_lines_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress(10, desc="rendering faces", unit="frame", every_s=0.0)
    bar.update(4)
    bar.log("shard 1/2 written")
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("rendering faces: 4/10 frames (") and lines[-1] == "rendering faces: shard 1/2 written"
    silent = Progress(10, desc="x", enabled=False)
    silent.update(10)
    silent.log("nothing")
    assert capsys.readouterr().err == ""
