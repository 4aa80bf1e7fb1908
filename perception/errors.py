"""Perception-specific errors, narrow subclasses of the shared :mod:`common.errors` hierarchy."""

from __future__ import annotations

from common.errors import CheckpointError, InvalidArgumentError, ManifestError, OutputExistsError, VantageError

__all__ = [
    "CheckpointError",
    "DatasetError",
    "EnrollmentError",
    "InvalidArgumentError",
    "InvalidImageError",
    "InvalidInputError",
    "ManifestError",
    "ModelExistsError",
    "ModelRoleError",
    "OnnxModelError",
    "OutputExistsError",
    "QuantizationError",
    "RuntimeNotAvailableError",
    "SpecMismatchError",
]


class InvalidInputError(InvalidArgumentError):
    """A network input is missing or unexpected, or its rank, fixed dimensions or dtype differ from its spec."""


class InvalidImageError(InvalidInputError):
    """An input image has the wrong shape, dtype, channel count or is empty."""


class EnrollmentError(InvalidArgumentError):
    """A gallery enrolment failed, e.g. no face was found in the enrolment image."""


class DatasetError(VantageError, ValueError):
    """A face dataset directory is missing, incomplete or was generated with other settings."""


class OnnxModelError(CheckpointError, ValueError):
    """An ONNX file is corrupt or does not have the inputs/outputs a loader expects."""


class SpecMismatchError(OnnxModelError):
    """A model file's (ONNX graph's or TensorRT engine's) named inputs differ from the model's input specs."""


class QuantizationError(OnnxModelError):
    """An ONNX graph could not be quantized, or an int8 build was given a graph without Q/DQ nodes."""


class ModelExistsError(CheckpointError, OutputExistsError):
    """Saving would overwrite an existing model or model file (pass ``overwrite=True`` / ``--overwrite``), or a
    model file would go into the folder of another model (refused even with ``overwrite``)."""


class ModelRoleError(InvalidArgumentError):
    """A saved model does not play the role asked of it (a face recogniser's folder given as the detector)."""


class RuntimeNotAvailableError(VantageError, ImportError):
    """An inference runtime (onnxruntime, TensorRT, CUDA) is not installed or has no device."""
