"""Named tensor specs and preprocessing: what a perception network takes and how raw inputs become it.

A learner's inputs are named :class:`TensorSpec` entries (shape with ``-1`` for dynamic dimensions, dtype,
meaning), each with the preprocessing that turns a raw value into it: :class:`ImagePreprocessing` for camera
images (resize, ``(x * scale - mean) / std``, NCHW), :class:`ArrayPreprocessing` for token ids, depth maps,
force windows or proprioception. Both serialise into the saved model's manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from perception.errors import InvalidImageError, InvalidInputError

__all__ = ["ArrayPreprocessing", "ImagePreprocessing", "Preprocessing", "TensorSpec", "check_image"]


@dataclass
class ImagePreprocessing:
    """How RGB ``uint8`` images become a network input: resize, ``(x * scale - mean) / std``, NCHW float32."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channels: str = "RGB"
    scale: float = 1.0 / 255.0
    extra: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "image"

    def __call__(self, images: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Resize and normalise a list of RGB images (or an ``(N, H, W, 3)`` array) into ``(N, 3, H, W)``."""
        import cv2

        h, w = self.size
        batch = np.empty((len(images), 3, h, w), np.float32)
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        for i, img in enumerate(images):
            if img.shape[:2] != (h, w):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR)
            if self.channels == "BGR":
                img = img[..., ::-1]
            batch[i] = ((img.astype(np.float32) * self.scale - mean) / std).transpose(2, 0, 1)
        return batch

    def describe(self) -> str:
        """One line for the input spec's description."""
        return f"{self.channels} image, (x*{self.scale:.6g} - mean) / std, NCHW"

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (``kind`` first, then the settings; ``extra`` keys are merged in)."""
        return {"kind": self.kind, "size": list(self.size), "mean": list(self.mean), "std": list(self.std),
                "channels": self.channels, "scale": self.scale, **self.extra}


#: The former name, when every learner had one image input.
Preprocessing = ImagePreprocessing


@dataclass
class ArrayPreprocessing:
    """How numeric samples (tokens, depth, a force window, proprioception) become a batched network input.

    A list (or tuple) is a list of samples, stacked along a new batch axis; an ``np.ndarray`` is taken as an
    already batched input. Samples of different lengths along their first axis (question tokens) are padded at
    the end with ``pad_value``; without it they must all have the same shape. ``mean``/``std`` (scalars or one
    value per last-axis feature) standardise float inputs.
    """

    dtype: str = "float32"
    mean: float | list[float] | None = None
    std: float | list[float] | None = None
    pad_value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "array"

    def __call__(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """The batched ``dtype`` array of ``values``.

        Raises:
            InvalidInputError: samples of different shapes without ``pad_value``, or values that are not numeric.
        """
        if isinstance(values, np.ndarray):
            batch = values
        else:
            try:
                samples = [np.asarray(v) for v in values]
            except TypeError as exc:
                raise InvalidInputError(f"expected a batch array or a list of samples, got {type(values).__name__}"
                                        ) from exc
            shapes = {s.shape for s in samples}
            if len(shapes) > 1:
                if self.pad_value is None or len({s.shape[1:] for s in samples}) > 1 or any(s.ndim == 0
                                                                                            for s in samples):
                    raise InvalidInputError(f"samples have different shapes {sorted(shapes)}; only the first axis "
                                            f"may vary, and only when the input has a pad_value")
                longest = max(len(s) for s in samples)
                samples = [np.concatenate([s, np.full((longest - len(s), *s.shape[1:]), self.pad_value, s.dtype)])
                           for s in samples]
            batch = np.stack(samples) if samples else np.zeros((0,), self.dtype)
        if batch.dtype.kind not in "biuf":
            raise InvalidInputError(f"input values must be numeric, got dtype {batch.dtype}")
        batch = np.asarray(batch, np.dtype(self.dtype))
        if self.mean is not None or self.std is not None:
            mean = np.asarray(0.0 if self.mean is None else self.mean, batch.dtype)
            std = np.asarray(1.0 if self.std is None else self.std, batch.dtype)
            batch = (batch - mean) / std
        return np.ascontiguousarray(batch)

    def describe(self) -> str:
        """One line for the input spec's description."""
        norm = ", (x - mean) / std" if self.mean is not None or self.std is not None else ""
        pad = f", padded with {self.pad_value:g}" if self.pad_value is not None else ""
        return f"{self.dtype} array{norm}{pad}"

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry."""
        out: dict[str, Any] = {"kind": self.kind, "dtype": self.dtype}
        for key in ("mean", "std", "pad_value"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra}


@dataclass
class TensorSpec:
    """A named network input or output: shape (``-1`` = dynamic), dtype, meaning, and for inputs how the raw
    value is preprocessed.

    Args:
        name: tensor name (the ONNX graph's input/output name).
        shape: dimensions, batch first; ``-1`` for dynamic ones.
        dtype: NumPy dtype name.
        description: what the tensor holds.
        preprocessing: raw value -> this tensor (inputs only); ``None`` takes the value as an array as it is.
        value_range: ``[low, high)`` of valid values where it matters (token ids), for example inputs.
    """

    name: str
    shape: list[int]
    dtype: str = "float32"
    description: str = ""
    preprocessing: ImagePreprocessing | ArrayPreprocessing | None = None
    value_range: list[float] | None = None

    @classmethod
    def image(cls, name: str, preprocessing: ImagePreprocessing, description: str | None = None) -> TensorSpec:
        """The spec of an image input ``(-1, 3, H, W)`` float32 made by ``preprocessing``."""
        h, w = preprocessing.size
        return cls(name, [-1, 3, h, w], "float32", description or preprocessing.describe(), preprocessing)

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry (``preprocessing`` and ``value_range`` only when set)."""
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                               "description": self.description}
        if self.preprocessing is not None:
            out["preprocessing"] = self.preprocessing.to_dict()
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        return out

    def preprocess(self, value: Any) -> np.ndarray:
        """The batched network input for raw ``value``, checked against the spec.

        Raises:
            InvalidInputError: the result's rank or a fixed dimension differs from the spec.
        """
        if self.preprocessing is not None:
            array = self.preprocessing(value)
        else:
            try:
                array = np.ascontiguousarray(value, np.dtype(self.dtype))
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"input {self.name!r} must be a {self.dtype} array of shape {self.shape}: "
                                        f"{exc}") from exc
        return self.check(array)

    def check(self, array: np.ndarray) -> np.ndarray:
        """``array`` if its rank and fixed dimensions fit the spec, else :class:`InvalidInputError`."""
        if array.ndim != len(self.shape) or any(d >= 0 and d != a for d, a in zip(self.shape, array.shape)):
            raise InvalidInputError(f"input {self.name!r} has shape {array.shape}; its spec is {self.shape} "
                                    f"(-1 = any size)")
        return array


def check_image(image: Any, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is a non-empty ``uint8 (H, W, 3)`` RGB array; raise :class:`InvalidImageError`."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"{what} must be a numpy uint8 array (H, W, 3) RGB, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"{what} must have dtype uint8 (0..255, RGB), got {image.dtype}; "
                                f"convert with (x * 255).astype(np.uint8) if it is float in [0, 1]")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"{what} must have shape (H, W, 3) with 3 RGB channels (HWC), got {image.shape}"
                                + ("; it looks channel-first (CHW): transpose to HWC" if image.ndim == 3 and
                                   image.shape[0] == 3 else ""))
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"{what} is empty: shape {image.shape}")
    return image
