"""Manifest versions: version-1 manifests (the shipped models) convert on read; unknown versions are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from perception.errors import ManifestError
from perception.learner import load_model
from perception.manifest import MANIFEST_VERSION, read_manifest, upgrade_manifest

from .conftest import shipped


@pytest.mark.parametrize("name", ["face_detector", "face_recognizer"])
def test_shipped_version_1_manifests_load_unchanged(name: str) -> None:
    path = shipped(name)
    before = hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    raw = json.loads((path / "manifest.json").read_text())
    assert raw["manifest_version"] == 1 and "input" in raw  # the shipped files stay version 1
    manifest = read_manifest(path)
    assert manifest["manifest_version"] == MANIFEST_VERSION and manifest["converted_from_manifest_version"] == 1
    (entry,) = manifest["inputs"]
    assert entry["name"] == raw["input"]["name"] and entry["shape"] == raw["input"]["shape"]
    assert entry["preprocessing"] == {"kind": "image", **raw["preprocessing"]}
    learner = load_model(path)
    assert [s.to_dict() for s in learner.input_specs()] == [entry]  # what the code says is what was shipped
    assert hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest() == before


def test_resaved_model_writes_version_2(tmp_path: Path) -> None:
    det = load_model(shipped("face_detector"))
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = det.save(tmp_path / "det")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["manifest_version"] == 2 and "input" not in manifest and "preprocessing" not in manifest
    np.testing.assert_array_equal(load_model(out).infer(frame).boxes, det.infer(frame).boxes)


def test_unknown_or_broken_manifests_are_named(tmp_path: Path) -> None:
    out = tmp_path / "det"
    shutil.copytree(shipped("face_detector"), out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "manifest_version": 7}))
    with pytest.raises(ManifestError, match=r"manifest_version 7; this code reads \[1, 2\]"):
        load_model(out)
    broken = {k: v for k, v in manifest.items() if k != "input"}
    with pytest.raises(ManifestError, match="'input'"):
        upgrade_manifest(broken)
    other_size = {**manifest["input"], "shape": [-1, 3, 64, 64]}
    (out / "manifest.json").write_text(json.dumps({**manifest, "input": other_size}))
    with pytest.raises(ManifestError, match=r"\[-1, 3, 64, 64\]"):
        load_model(out)
