"""Perception-specific errors, narrow subclasses of the shared :mod:`common.errors` hierarchy."""

from __future__ import annotations

from common.errors import CheckpointError, InvalidArgumentError, ManifestError, VantageError

__all__ = [
    "CheckpointError",
    "DatasetError",
    "EnrollmentError",
    "InvalidArgumentError",
    "InvalidImageError",
    "ManifestError",
    "ModelExistsError",
    "OnnxModelError",
    "RuntimeNotAvailableError",
]


class InvalidImageError(InvalidArgumentError):
    """An input image has the wrong shape, dtype, channel count or is empty."""


class EnrollmentError(InvalidArgumentError):
    """A gallery enrolment failed, e.g. no face was found in the enrolment image."""


class DatasetError(VantageError, ValueError):
    """A face dataset directory is missing, incomplete or was generated with other settings."""


class OnnxModelError(CheckpointError, ValueError):
    """An ONNX file is corrupt or does not have the inputs/outputs a loader expects."""


class ModelExistsError(CheckpointError, FileExistsError):
    """Saving would overwrite an existing model; pass ``overwrite=True`` (``--overwrite``)."""


class RuntimeNotAvailableError(VantageError, ImportError):
    """An inference runtime (onnxruntime, TensorRT, CUDA) is not installed or has no device."""
