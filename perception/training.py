"""Shared pieces of the learners' torch training loops, and the checks ``vantage perception fit`` runs first.

:func:`warmup_cosine` (learning-rate schedule), :class:`TrainingCheckpoint` (per-epoch state written atomically
so an interrupted ``fit`` resumes), :class:`TorchFitMixin` (the optimiser step and end-of-fit bookkeeping every
``fit`` shares), :func:`prepare_learner` (a fresh learner, or one fine-tuned from a saved model),
:func:`fit_options` (extra ``fit`` keyword arguments checked against the learner's signature and annotations) and
:func:`check_fit_settings` (epochs, batch size, learning rate, checked before any data is read).
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from common.io import atomic_path
from perception.errors import CheckpointError, InvalidArgumentError

if TYPE_CHECKING:
    from perception.learner import Learner


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` of the steps, then cosine decay to 2 % of the peak rate.

    Unlike ``OneCycleLR`` it is valid for any number of steps, including the handful of a smoke test.
    """
    total = max(1, int(total_steps))
    warm = max(1, round(warmup * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.02 + 0.98 * 0.5 * (1.0 + float(np.cos(np.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TrainingCheckpoint:
    """Per-epoch training state written atomically, so an interrupted ``fit`` resumes where it stopped.

    Args:
        path: checkpoint file, or ``None`` to disable checkpointing.
        modules: name -> object with ``state_dict``/``load_state_dict`` (networks, optimiser, scheduler).
        rng: the NumPy generator driving shuffling and augmentation (its state is saved too).
    """

    def __init__(self, path: str | Path | None, modules: dict[str, Any], rng: np.random.Generator) -> None:
        self.path = Path(path) if path is not None else None
        self.modules = modules
        self.rng = rng

    def resume(self) -> tuple[int, list[float]]:
        """Restore the last checkpoint if there is one: ``(epochs done, loss history)``.

        Raises:
            CheckpointError: the checkpoint exists but cannot be read or does not fit the modules.
        """
        if self.path is None or not self.path.is_file():
            return 0, []
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            for name, module in self.modules.items():
                module.load_state_dict(state[name])
        except Exception as exc:
            raise CheckpointError(f"cannot resume from {self.path}: {exc}; delete it to start over") from exc
        self.rng.bit_generator.state = json.loads(state["rng"])
        return int(state["epoch"]), list(state["history"])

    def save(self, epoch: int, history: list[float]) -> None:
        """Write the state after ``epoch`` epochs; a crash mid-write leaves the previous checkpoint whole."""
        if self.path is None:
            return
        state = {name: m.state_dict() for name, m in self.modules.items()}
        state.update(epoch=epoch, history=history, rng=json.dumps(self.rng.bit_generator.state))
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def remove(self) -> None:
        """Delete the checkpoint once training has finished."""
        if self.path is not None and self.path.is_file():
            self.path.unlink()


class TorchFitMixin:
    """The steps every learner's torch ``fit`` loop shares; mix in before :class:`~perception.learner.Learner`."""

    @staticmethod
    def _optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, sched: Any, losses: list[float],
                        bar: Any) -> None:
        """One training step of ``fit``: backward, optimiser and schedule step, running mean loss on the bar."""
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses):.3f}")

    def _finish_fit(self, net: torch.nn.Module, ckpt: TrainingCheckpoint, bar: Any, dataset: Any) -> None:
        """After ``fit``'s last epoch: drop the resume checkpoint, and forget any runtime built on the old weights."""
        bar.close()
        ckpt.remove()
        net.eval()
        self._runtime = None
        self.training_data_hash = dataset.content_hash
        # The weights are no longer those of the folder the model came from: its files must not be rewritten
        # from them until it is saved (Learner.check_output).
        self.saved_identity = None


def check_fit_settings(epochs: Any, batch_size: Any, lr: Any, max_frames: Any = None, min_batch: int = 1) -> None:
    """Check ``fit``'s budget before any data is read.

    Args:
        epochs: passes over the data, an integer >= 1.
        batch_size: samples per step, an integer >= ``min_batch``.
        lr: learning rate, a finite number > 0.
        max_frames: ``None`` or an integer >= 1.
        min_batch: the smallest batch the learner can train on.

    Raises:
        InvalidArgumentError: a value is out of range or of the wrong type (the message names it and the range).
    """
    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not integer(epochs) or epochs < 1:
        raise InvalidArgumentError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not integer(batch_size) or batch_size < min_batch:
        raise InvalidArgumentError(f"batch_size must be an integer >= {min_batch}, got {batch_size!r}")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise InvalidArgumentError(f"learning rate must be a finite number > 0, got {lr!r}")
    if max_frames is not None and (not integer(max_frames) or max_frames < 1):
        raise InvalidArgumentError(f"max_frames must be an integer >= 1 (or None for all frames), got {max_frames!r}")


def prepare_learner(name: str, config: Mapping[str, Any] | None = None, init: str | Path | None = None) -> Learner:
    """A fresh learner ``name`` for ``fit``, or one that starts from a saved model's weights (fine-tuning).

    Args:
        name: registered model name.
        config: constructor arguments; with ``init`` they override the saved model's config.
        init: saved model directory whose config and weights are the starting point.

    Raises:
        InvalidArgumentError: ``init`` holds another kind of model, or ``config`` changes its network.
    """
    from perception.learner import load_model, make_model, resolve_model_class

    if not resolve_model_class(name).trainable:
        raise InvalidArgumentError(f"{name} wraps a user-supplied ONNX model and cannot be trained here; wrap its file "
                                   f"with vantage perception import-onnx {name} FILE.onnx --out DIR")
    settings = dict(config or {})
    base = None
    if init is not None:
        base = load_model(init)
        if base.name != name:
            raise InvalidArgumentError(f"--init {init} holds a {base.name!r} model, not a {name!r}")
        settings = {**base.config, **settings}
    learner = make_model(name, **settings)
    if base is not None:
        try:
            learner.net.load_state_dict(base.net.state_dict(), strict=True)
        except RuntimeError as exc:
            raise InvalidArgumentError(f"--config changes the network of --init {init}: "
                                       f"{str(exc).splitlines()[0]}") from exc
    return learner


def fit_options(learner: Learner, extra: Mapping[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """``fixed`` ``fit`` arguments plus ``extra`` ones, checked against ``learner.fit``'s signature.

    Args:
        learner: the learner to train.
        extra: further ``fit`` keyword arguments (``--option KEY=VALUE``).
        fixed: the arguments that have their own command-line options.

    Raises:
        InvalidArgumentError: an extra argument repeats a fixed one, is not a ``fit`` parameter, or its value
            does not have the parameter's type (e.g. ``crop=abc`` where a list of two integers is expected).
    """
    clash = sorted(set(extra) & set(fixed))
    if clash:
        raise InvalidArgumentError(f"fit options {clash} have their own command-line options; set them there")
    allowed = set(inspect.signature(learner.fit).parameters) - {"dataset", "kwargs"}
    unknown = sorted(set(extra) - allowed)
    if unknown:
        raise InvalidArgumentError(f"unknown fit options {unknown}; {learner.name} takes {sorted(allowed)}")
    try:
        hints = typing.get_type_hints(learner.fit)
    except Exception:  # an annotation that cannot be resolved here: fit() checks the value itself
        hints = {}
    for key, value in extra.items():
        if key in hints and not _fits_type(value, hints[key]):
            hint = hints[key].__name__ if isinstance(hints[key], type) else str(hints[key]).replace("typing.", "")
            raise InvalidArgumentError(f"fit option {key}={value!r} must be of type {hint}")
    return {**fixed, **extra}


def _fits_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a ``fit`` parameter's annotation (unknown annotations accept anything)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits_type(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str or hint is Path:
        return isinstance(value, str)
    if origin in (tuple, list, Sequence):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits_type(v, a) for v, a in zip(value, args))
        return not args or all(_fits_type(v, args[0]) for v in value)
    return True
