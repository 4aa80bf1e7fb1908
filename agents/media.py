"""Videos and plots written into run directories."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from envs.errors import InvalidArgumentError


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Write RGB ``uint8 (H, W, 3)`` frames as an MP4 (OpenCV's bundled FFmpeg) or, for ``.gif``, a GIF."""
    path = Path(path)
    if not frames:
        raise InvalidArgumentError(f"no frames to write to {path}")
    shape = frames[0].shape
    if len(shape) != 3 or shape[2] != 3 or frames[0].dtype != np.uint8:
        raise InvalidArgumentError(f"frames must be uint8 (H, W, 3) RGB, got {frames[0].dtype} {shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        import imageio.v2 as imageio

        imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
        return path
    if path.suffix.lower() != ".mp4":
        raise InvalidArgumentError(f"video path {path} must end in .mp4 or .gif")
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (shape[1], shape[0]))
    if not writer.isOpened():
        raise InvalidArgumentError(f"OpenCV could not open an MP4 writer for {path}")
    try:
        for frame in frames:
            if frame.shape != shape:
                raise InvalidArgumentError(f"all frames must share shape {shape}, got {frame.shape}")
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    finally:
        writer.release()
    return path
