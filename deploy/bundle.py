"""The deployment bundle: one folder, one ``manifest.json``, every file named there with its SHA-256.

A bundle (written by ``vantage export``, :mod:`agents.export`) holds

* ``manifest.json``: schema version, task, the policy's inputs (name, dtype, layout, shape, what to do with a
  frame of another size), the action table and how actions are decoded, the perception chain (which model runs
  on which frames and when, with its preprocessing and decoding settings), the parity figures measured at
  export, the library versions, and the size and SHA-256 of every file;
* ``policy.onnx`` (fp32), and ``policy.fp16.onnx`` / ``policy.int8.onnx`` when exported at that precision;
* one ONNX file per perception model (and its fp16 / int8 variants);
* ``calibration/*.npz``: the simulator inputs an int8 bundle was calibrated on;
* ``engines/<device>/``: TensorRT engines built on a target (``vantage deploy build``; not hashed, they are
  made on the robot).

Loading checks the format, the schema version and every listed file's hash before anything runs: a bundle that
was copied half-way, edited or made by another version is refused with the file and the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import InvalidArgumentError, ManifestError, UnknownNameError

__all__ = ["BUNDLE_FORMAT", "MANIFEST", "PRECISIONS", "SCHEMA_VERSION", "Bundle", "BundleError", "file_record",
           "load_bundle", "sha256_file"]

BUNDLE_FORMAT = "vantage-deployment-bundle"
#: Version of the manifest layout this runner reads; a bundle of another version must be exported again.
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")


class BundleError(ManifestError):
    """A deployment bundle is missing, incomplete, altered, or of another schema version."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | Path) -> dict[str, Any]:
    """``{"sha256", "bytes"}`` of a file, as the manifest lists it."""
    path = Path(path)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


@dataclass
class Bundle:
    """A loaded, checked bundle: its folder and manifest, with helpers to find its files."""

    root: Path
    manifest: dict[str, Any]

    @property
    def task(self) -> dict[str, Any]:
        return self.manifest["task"]

    @property
    def policy(self) -> dict[str, Any]:
        return self.manifest["policy"]

    @property
    def actions(self) -> dict[str, Any]:
        return self.manifest["actions"]

    @property
    def perception(self) -> dict[str, Any] | None:
        return self.manifest.get("perception")

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    def precisions(self) -> list[str]:
        """Precisions the policy (and every perception model) has a file for."""
        have = set(self.policy["files"])
        for model in (self.perception or {}).get("models", []):
            have &= set(model["files"])
        return [p for p in PRECISIONS if p in have]

    def model_file(self, entry: Mapping[str, Any], precision: str | None = None) -> Path:
        """The ONNX file of a model entry (the policy or a perception model) at ``precision``.

        Raises:
            UnknownNameError: the bundle has no file of that precision (the message lists those it has).
        """
        precision = precision or self.precision
        files = entry["files"]
        if precision not in files:
            raise UnknownNameError(f"precision of {entry.get('name', 'policy')} in bundle {self.root}", precision,
                                   files)
        return self.root / files[precision]


_REQUIRED = ("task", "policy", "actions", "precision", "files", "versions")


def load_bundle(path: str | Path, check_hashes: bool = True) -> Bundle:
    """Read and check a bundle folder.

    Args:
        path: the bundle folder (or its ``manifest.json``).
        check_hashes: compare every listed file's SHA-256 with the manifest (sizes are always compared).

    Raises:
        BundleError: no such folder or manifest, a manifest that is not JSON or not a bundle's, another schema
            version, a missing key, or a listed file that is missing, of another size or another hash.
    """
    root = Path(path)
    if root.name == MANIFEST and root.is_file():
        root = root.parent
    if not root.is_dir():
        raise BundleError(f"bundle {root} not found: it must be a folder made by `vantage export RUN --out FOLDER`")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not a deployment bundle: it has no {MANIFEST} (make one with `vantage export "
                          f"RUN --out FOLDER`)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}); export the bundle again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{manifest_path} has format {found!r}, not {BUNDLE_FORMAT!r}: it is not a deployment "
                          f"bundle's manifest")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{manifest_path} has schema version {version!r}; this runner reads version "
                          f"{SCHEMA_VERSION}: export the bundle again with this version (`vantage export RUN --out "
                          f"FOLDER --overwrite`) or run it with the Vantage version that made it")
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise BundleError(f"{manifest_path} lacks {missing}; a schema {SCHEMA_VERSION} manifest has {list(_REQUIRED)}")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{manifest_path}: 'files' must list every file of the bundle with its sha256")
    for name, record in sorted(files.items()):
        file = root / name
        if not file.is_file():
            raise BundleError(f"bundle {root} is incomplete: {name} is missing (the manifest lists "
                              f"{', '.join(sorted(files))}); copy the whole folder again or export it again")
        if file.stat().st_size != record.get("bytes"):
            raise BundleError(f"bundle {root}: {name} has {file.stat().st_size} bytes, the manifest says "
                              f"{record.get('bytes')}: the file was altered or copied half-way")
        if check_hashes and sha256_file(file) != record.get("sha256"):
            raise BundleError(f"bundle {root}: {name} does not match its sha256 in the manifest: the file was "
                              f"altered; copy the bundle again or export it again")
    bundle = Bundle(root, manifest)
    if bundle.precision not in PRECISIONS:
        raise BundleError(f"{manifest_path}: precision {bundle.precision!r} is not one of {PRECISIONS}")
    for entry in [bundle.policy, *(bundle.perception or {}).get("models", [])]:
        for precision, name in entry["files"].items():
            if name not in files:
                raise BundleError(f"{manifest_path}: {precision} file {name} of {entry.get('name', 'the policy')} is "
                                  f"not listed in 'files' (with its sha256)")
    return bundle


def check_precision(bundle: Bundle, precision: str | None) -> str:
    """``precision`` (default: the bundle's) if every model of the bundle has a file for it."""
    precision = precision or bundle.precision
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    have = bundle.precisions()
    if precision not in have:
        raise InvalidArgumentError(f"bundle {bundle.root} has no {precision} models (it has {', '.join(have)}); "
                                   f"export it with `vantage export RUN --precision {precision}`")
    return precision
