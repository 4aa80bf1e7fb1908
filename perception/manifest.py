"""The saved-model format: file names, the JSON manifest (read, upgraded, checked), identities and file checks.

A saved perception model is a folder (:mod:`perception.learner` writes and loads it)::

    manifest.json   name, class version, constructor config, named input specs (with preprocessing), output
                    specs, training-data hash, weights file + SHA-256, extra state, metrics
    weights.pt      torch ``state_dict`` (absent for ONNX-only models)
    model.onnx, model.fp16.onnx, model.int8.onnx, model.<precision>.engine   derived files

This module knows the format and nothing about training: :func:`read_manifest` validates and upgrades a
manifest (version 1, as the shipped models have, is converted to version 2), the ``_check_manifest_*`` helpers
compare it with a network's specs, :func:`model_identity` says which model a folder holds (so one model's files
never land in another's folder), and :func:`check_save_dir`, :func:`copy_file` and :func:`validate_onnx` guard
the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.io import ARTEFACT_FILES, atomic_path, json_default
from perception.errors import CheckpointError, ManifestError, ModelExistsError, OnnxModelError, OutputExistsError
from perception.specs import ImagePreprocessing, TensorSpec

#: Model name -> "module:Class"; entries are strings so listing models imports nothing heavy.
MODEL_REGISTRY: dict[str, str] = {
    "face_detector": "perception.faces.detector:FaceDetectorLearner",
    "face_recognizer": "perception.faces.recognizer:FaceRecognizerLearner",
    "yunet": "perception.faces.external:YuNetDetector",
    "sface": "perception.faces.external:SFaceRecognizer",
    "fusion_encoder": "perception.fusion.learner:FusionEncoderLearner",
    "vqa": "perception.vqa.model:VQALearner",
}

MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"
MANIFEST_FORMAT = "vantage-perception-model"
MANIFEST_VERSION = 2
#: Manifest versions :func:`read_manifest` reads (older ones are converted to the current layout).
MANIFEST_VERSIONS = (1, 2)
#: Derived files that are a deterministic function of the saved weights: in the model's own folder ``export`` /
#: ``optimize`` rewrite them without ``overwrite``. ``model.int8.onnx`` (depends on the calibration data) and
#: ``model.<precision>.engine`` (on the GPU and TensorRT version) are not among them.
REGENERATED_FILES = (ONNX_FILE, "model.fp16.onnx")
#: Derived files removed when a model's weights are replaced (they were made from the old weights).
STALE_PATTERNS = (ONNX_FILE, INT8_ONNX_FILE, "model.fp16.onnx", "model.*.engine")



def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_temporary(path: Path) -> bool:
    # common.io.atomic_path names its temporary files ".<stem>.<random><suffix>"; one left by a killed process
    # is not a file the user made.
    return path.name.startswith(".") and path.is_file()


def check_save_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Check that a model may be saved into ``path``; nothing is created (``save`` writes, atomically, after).

    Args:
        path: the model folder.
        overwrite: allow replacing the files of a folder that is not empty (another model's included).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputExistsError: ``path`` is a file, or holds a dataset or training run (refused even with
            ``overwrite``).
        ModelExistsError: ``path`` holds files and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"model folder {path} is a file; choose a folder")
    for identity, what in ARTEFACT_FILES.items():
        if identity != MANIFEST and (path / identity).is_file():
            raise OutputExistsError(f"{path} holds {what} ({identity}); save the model to another folder")
    if path.is_dir() and not overwrite:
        held = sorted(p.name for p in path.iterdir() if not _is_temporary(p))
        if held:
            what = "a model" if MANIFEST in held else f"files ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''})"
            raise ModelExistsError(f"{path} already holds {what}; pass overwrite=True (--overwrite) to replace it, "
                                   f"or choose another folder")
    return path


def model_identity(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What makes a saved model *this* model: name, class, config, and the hash of its weights (of its ONNX
    file for ONNX-only models). Two folders with the same identity hold the same model."""
    config = {k: v for k, v in dict(manifest.get("config") or {}).items() if k != "onnx_path"}
    identity = {"name": manifest.get("name"), "class": manifest.get("class"), "config": config,
                "weights_sha256": (manifest.get("weights") or {}).get("sha256"),
                "onnx_sha256": (manifest.get("onnx") or {}).get("sha256")}
    return json.loads(json.dumps(identity, default=json_default))  # tuples -> lists, as read back from JSON


def describe_identity(identity: Mapping[str, Any] | None) -> str:
    """One line naming a model identity (name, config, short weights hash) for error messages."""
    if identity is None:
        return "a model whose weights are not saved"
    digest = identity.get("weights_sha256") or identity.get("onnx_sha256")
    return (f"{identity.get('name')!r} with config {json.dumps(identity.get('config'), sort_keys=True)}"
            + (f", weights {digest[:12]}" if digest else ""))


def _spec_fits(entry: Mapping[str, Any], spec: TensorSpec) -> bool:
    shape = list(entry.get("shape", []))
    return (len(shape) == len(spec.shape) and entry.get("dtype", "float32") == spec.dtype
            and all(a < 0 or b < 0 or a == b for a, b in zip(shape, spec.shape)))


def _check_manifest_inputs(path: Path, entries: list[dict[str, Any]], specs: list[TensorSpec],
                           names: bool = True) -> None:
    """Raise :class:`ManifestError` unless the manifest's inputs are the network's (names, ranks, fixed dims)."""
    listed = [e.get("name") for e in entries]
    if (listed if names else len(listed)) != ([s.name for s in specs] if names else len(specs)):
        raise ManifestError(f"{path / MANIFEST} lists inputs {listed} but the network takes {[s.name for s in specs]}")
    for entry, spec in zip(entries, specs):
        if not _spec_fits(entry, spec):
            raise ManifestError(f"{path / MANIFEST}: input {spec.name!r} is {entry.get('shape')} "
                                f"{entry.get('dtype', 'float32')} but the network takes {spec.shape} {spec.dtype}")


def _check_manifest_outputs(path: Path, entries: list[dict[str, Any]], specs: list[TensorSpec]) -> None:
    """Raise :class:`ManifestError` unless the manifest's outputs are the network's (names, ranks, fixed dims)."""
    listed = [e.get("name") for e in entries]
    if listed != [s.name for s in specs]:
        raise ManifestError(f"{path / MANIFEST} lists outputs {listed} but the network gives {[s.name for s in specs]}")
    for entry, spec in zip(entries, specs):
        if not _spec_fits(entry, spec):
            raise ManifestError(f"{path / MANIFEST}: output {spec.name!r} is {entry.get('shape')} "
                                f"{entry.get('dtype', 'float32')} but the network gives {spec.shape} {spec.dtype}")


def upgrade_manifest(manifest: dict[str, Any], file: str | Path = MANIFEST) -> dict[str, Any]:
    """A manifest in the current layout (version 2): version 1's ``input`` + ``preprocessing`` become ``inputs``.

    Raises:
        ManifestError: the manifest version is unknown or the version-1 input entry is malformed.
    """
    version = manifest.get("manifest_version", 1)
    if version not in MANIFEST_VERSIONS:
        raise ManifestError(f"{file} has manifest_version {version!r}; this code reads {list(MANIFEST_VERSIONS)}")
    if version == 1:
        manifest = dict(manifest)
        entry = manifest.pop("input", None)
        pre = manifest.pop("preprocessing", None)
        if not isinstance(entry, dict):
            raise ManifestError(f"{file} (manifest version 1) lacks its 'input' entry")
        entry = dict(entry)
        if isinstance(pre, dict):  # version-1 models all took one image
            entry["preprocessing"] = {"kind": ImagePreprocessing.kind, **pre}
        manifest["inputs"] = [entry]
        manifest["manifest_version"] = MANIFEST_VERSION
        manifest["converted_from_manifest_version"] = 1
    return manifest


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and validate ``path/manifest.json``, converting older manifest versions to the current layout.

    Raises:
        CheckpointError: ``path`` is not a directory.
        ManifestError: the manifest is missing, not JSON, of an unknown version, or lacks required keys.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"saved model directory not found: {path}")
    file = path / MANIFEST
    if not file.is_file():
        raise ManifestError(f"{path} has no {MANIFEST}; it is not a saved Vantage perception model")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ManifestError(f"{file} is not valid JSON ({exc}); restore the folder from a copy, or save or "
                            f"import the model again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{file} is not a {MANIFEST_FORMAT} manifest (format={manifest.get('format')!r})"
                            if isinstance(manifest, dict) else f"{file} must hold a JSON object")
    manifest = upgrade_manifest(manifest, file)
    missing = [k for k in ("name", "version", "config", "inputs", "outputs") if k not in manifest]
    if missing:
        raise ManifestError(f"{file} lacks required keys {missing}")
    for key in ("inputs", "outputs"):
        if not isinstance(manifest[key], list) or not all(isinstance(e, dict) for e in manifest[key]):
            raise ManifestError(f"{file}: {key!r} must be a list of tensor specs")
    if not isinstance(manifest["config"], dict):
        raise ManifestError(f"{file}: 'config' must be a JSON object of constructor arguments, got "
                            f"{type(manifest['config']).__name__}")
    if not isinstance(manifest["name"], str) or manifest["name"] not in MODEL_REGISTRY:
        raise ManifestError(f"{file} names unknown model {manifest['name']!r}; known: {sorted(MODEL_REGISTRY)}")
    return manifest


def copy_file(src: Path, dst: Path, stack: contextlib.ExitStack | None = None) -> None:
    """Copy ``src`` to ``dst`` unless they are the same file, through a temporary file renamed into place.

    Args:
        src: the file to copy.
        dst: the copy.
        stack: when given, the rename happens when ``stack`` closes (with the other files of a save).
    """
    if dst.exists() and src.resolve() == dst.resolve():
        return
    tmp = atomic_path(dst) if stack is None else contextlib.nullcontext(stack.enter_context(atomic_path(dst)))
    with tmp as target, open(src, "rb") as fin, open(target, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            fout.write(chunk)


def validate_onnx(path: str | Path) -> None:
    """Raise :class:`OnnxModelError` unless ``path`` is a loadable, valid ONNX model."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX file not found: {path}")
    try:
        onnx.checker.check_model(onnx.load(str(path)))
    except Exception as exc:  # onnx raises DecodeError / ValidationError / others for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxModelError(f"{path} is not a valid ONNX model ({first}); it is truncated, corrupt or not ONNX: "
                             f"get the file again (or re-export it: vantage perception export)") from exc
