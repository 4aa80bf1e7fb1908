"""The exported policy on the robot: frames in, decoded actions out.

Preprocessing (channel order, scaling, transposition, one-hot codes) is inside ``policy.onnx``; what is left
here is fitting a frame to the input the manifest describes (its size, with ``resize`` or ``reject`` for a frame
of another size) and decoding the outputs into an action of the manifest's action table:

* ``logits`` (PPO, discrete actions): the most likely action, or one sampled from the softmax with a seeded
  NumPy generator (a stochastic policy can score far better sampled than greedy);
* ``q_values`` (Rainbow): the best action (Rainbow acts greedily at evaluation; there is nothing to sample);
* ``gaussian`` (PPO, continuous actions): the mean, clipped to the action bounds in the graph, or the mean plus
  Gaussian noise of the exported ``log_std``, clipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from common.errors import InvalidArgumentError, VantageError, check_choice
from deploy.latency import LatencyStats

__all__ = ["ACTION_MODES", "Decision", "FrameError", "PolicyRunner", "fit_frame"]

ACTION_MODES = ("argmax", "sample")


class FrameError(VantageError):
    """A frame does not fit the bundle's input (channels, rank or, with ``on_mismatch=reject``, size)."""


@dataclass
class Decision:
    """One decoded action: its index (discrete) or values (continuous), name and what the env takes."""

    action: Any
    index: int | None
    name: str
    value: list[float] | None

    def record(self) -> dict[str, Any]:
        return {"action": self.index if self.index is not None else self.value, "name": self.name,
                **({"value": self.value} if self.value is not None and self.index is not None else {})}


def fit_frame(frame: Any, spec: Mapping[str, Any], on_mismatch: str | None = None) -> np.ndarray:
    """A frame shaped like the image input ``spec`` (``shape: [-1, H, W, C]``, uint8, RGB).

    Args:
        frame: an ``(H, W, C)`` uint8 array (RGB).
        spec: the manifest's input entry.
        on_mismatch: ``resize`` or ``reject`` a frame of another height or width (default: the manifest's).

    Raises:
        FrameError: not an array, not ``(H, W, C)``, another channel count, or another size with ``reject``.
    """
    _, height, width, channels = spec["shape"]
    on_mismatch = on_mismatch or spec.get("on_mismatch", "resize")
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        shape = getattr(frame, "shape", type(frame).__name__)
        raise FrameError(f"frame of shape {shape} is not an image: input {spec['name']!r} takes (H, W, {channels}) "
                         f"{spec['dtype']} {spec.get('channels', '')} frames")
    if frame.shape[2] != channels:
        raise FrameError(f"frame has {frame.shape[2]} channels; input {spec['name']!r} takes {channels} "
                         f"({spec.get('channels', '')}); convert the camera's output (e.g. cv2.cvtColor)")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and frame.size and float(np.nanmax(frame)) <= 1.0:
            frame = (np.clip(frame, 0.0, 1.0) * 255).round()
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.shape[:2] != (height, width):
        if on_mismatch != "resize":
            raise FrameError(f"frame is {frame.shape[1]}x{frame.shape[0]}; input {spec['name']!r} takes "
                             f"{width}x{height} and the bundle says to reject other sizes (run with "
                             f"--on-mismatch resize to resize them)")
        shrink = frame.shape[0] > height
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return frame


class PolicyRunner:
    """``policy.onnx`` (or its fp16 / int8 variant, or a TensorRT engine) with the manifest's decoding.

    Args:
        session: an :class:`deploy.inference.OnnxSession` or ``TensorRTSession`` of the policy.
        policy: the manifest's ``policy`` entry.
        actions: the manifest's ``actions`` entry.
        mode: ``argmax`` or ``sample``.
        on_mismatch: override the manifest's ``resize`` / ``reject`` for frames of another size.
    """

    def __init__(self, session: Any, policy: Mapping[str, Any], actions: Mapping[str, Any], mode: str = "argmax",
                 on_mismatch: str | None = None) -> None:
        check_choice("action mode", mode, ACTION_MODES)
        if on_mismatch is not None:
            check_choice("on-mismatch", on_mismatch, ("resize", "reject"))
        if mode == "sample" and not actions.get("sampling", False):
            raise InvalidArgumentError(f"--actions sample needs a policy with a distribution to sample from; this "
                                       f"bundle's outputs are {actions['decode']} ({actions.get('algo', '')}), "
                                       f"which act by argmax only")
        self.session, self.inputs, self.actions = session, list(policy["inputs"]), dict(actions)
        self.mode, self.on_mismatch = mode, on_mismatch
        self.names = list(actions.get("names") or [])
        self.values = actions.get("values")
        self.rng = np.random.default_rng(0)

    @property
    def image_input(self) -> Mapping[str, Any] | None:
        """The one image input, when the policy takes exactly one input and it is an image."""
        return self.inputs[0] if len(self.inputs) == 1 and self.inputs[0]["kind"] == "image" else None

    def seed(self, seed: int) -> None:
        """Reseed the sampling generator (each simulated episode reseeds with its own seed)."""
        self.rng = np.random.default_rng(seed)

    def feeds(self, observation: Any) -> dict[str, np.ndarray]:
        """Batch-of-one network inputs from a frame (one image input) or a dict of observations by input name."""
        if not isinstance(observation, Mapping):
            if len(self.inputs) != 1:
                raise FrameError(f"the policy takes inputs {[i['name'] for i in self.inputs]}; a frame alone feeds "
                                 f"one image input (use a source that gives every input, e.g. sim:ENV_ID)")
            observation = {self.inputs[0]["name"]: observation}
        out = {}
        for spec in self.inputs:
            if spec["name"] not in observation:
                raise FrameError(f"observation lacks input {spec['name']!r}; the policy takes "
                                 f"{[i['name'] for i in self.inputs]}")
            value = observation[spec["name"]]
            if spec["kind"] == "image":
                value = fit_frame(value, spec, self.on_mismatch)
            else:
                value = np.asarray(value, spec["dtype"])
                want = tuple(spec["shape"][1:])
                if value.shape != want:
                    raise FrameError(f"input {spec['name']!r} has shape {value.shape}; the policy takes {want}")
            out[spec["name"]] = np.ascontiguousarray(value[None])
        return out

    def act(self, observation: Any, stats: LatencyStats | None = None) -> Decision:
        """Decode the action for one observation, timing ``preprocess``, ``policy`` and ``decode`` in ``stats``."""
        stats = stats or LatencyStats()
        with stats.stage("preprocess"):
            feeds = self.feeds(observation)
        with stats.stage("policy"):
            outputs = self.session.run(feeds)
        with stats.stage("decode"):
            return self.decode(outputs)

    def decode(self, outputs: Mapping[str, np.ndarray]) -> Decision:
        kind = self.actions["decode"]
        if kind in ("logits", "q_values"):
            scores = np.asarray(outputs[kind][0], np.float64)
            if self.mode == "sample":
                # Inverse CDF, as Generator.choice(p=...) draws, without its per-call argument checks.
                cdf = np.cumsum(np.exp(scores - scores.max()))
                index = min(int(np.searchsorted(cdf / cdf[-1], self.rng.random(), side="right")), len(cdf) - 1)
            else:
                index = int(np.argmax(scores))
            name = self.names[index] if index < len(self.names) else str(index)
            value = list(self.values[index]) if self.values else None
            return Decision(index, index, name, value)
        if kind == "gaussian":
            low, high = np.asarray(self.actions["low"]), np.asarray(self.actions["high"])
            if self.mode == "sample":
                mean, log_std = outputs["mean"][0], outputs["log_std"][0]
                action = np.clip(mean + np.exp(log_std) * self.rng.standard_normal(mean.shape), low, high)
            else:
                action = outputs["action"][0]
            action = np.asarray(action, np.float32)
            return Decision(action, None, "continuous", [float(v) for v in action])
        raise InvalidArgumentError(f"unknown action decoding {kind!r} in the bundle; known: logits, q_values, "
                                   f"gaussian")
