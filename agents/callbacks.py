"""Training callbacks beside the checkpoints: plain progress lines, and Ctrl-C that stops at a checkpoint.

SB3's progress bar draws only on a terminal; in a log file or a CI job :class:`ProgressLogCallback` prints a
plain line every so many steps or seconds instead. :class:`StopOnInterrupt` turns the first Ctrl-C into a
request that :class:`agents.checkpoints.AtomicCheckpointCallback` honours at the next update boundary (a
checkpoint, then the end of training); a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from envs.errors import InvalidArgumentError

__all__ = ["ProgressLogCallback", "StopOnInterrupt", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``3725`` -> ``"1h02m"``; seconds under a minute as ``"42s"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class ProgressLogCallback(BaseCallback):
    """Print a progress line every ``every_steps`` environment steps or ``every_s`` seconds, whichever comes first.

    A line reads ``step 4096/100000 (4%), 512 steps/s, episode return 12.3 (mean of 20), about 3m07s left``; the
    return appears once an episode has ended (SB3's ``Monitor`` statistics).

    Args:
        total: the step count training ends at (for the percentage and the time left).
        log: where lines go (``print``, ``click.echo``).
        every_steps: steps between lines (default: a tenth of the session).
        every_s: seconds between lines.
    """

    def __init__(self, total: int, log: Callable[[str], None] = print, every_steps: int | None = None,
                 every_s: float = 30.0) -> None:
        super().__init__(verbose=0)
        if every_steps is not None and every_steps < 1:
            raise InvalidArgumentError(f"every_steps={every_steps!r} must be >= 1")
        if not every_s > 0:
            raise InvalidArgumentError(f"every_s={every_s!r} must be > 0")
        self.total = int(total)
        self.log = log
        self.every_steps = every_steps
        self.every_s = float(every_s)
        self.lines = 0
        self._started = self._last_time = 0.0
        self._start_steps = self._last_steps = 0

    def _on_training_start(self) -> None:
        self._started = self._last_time = time.perf_counter()
        self._start_steps = self._last_steps = self.num_timesteps
        if self.every_steps is None:
            self.every_steps = max(1, (self.total - self._start_steps) // 10)

    def _on_step(self) -> bool:
        now = time.perf_counter()
        assert self.every_steps is not None, "set in _on_training_start"
        if self.num_timesteps - self._last_steps >= self.every_steps or now - self._last_time >= self.every_s:
            self._emit(now)
        return True

    def _emit(self, now: float) -> None:
        done = self.num_timesteps - self._start_steps
        rate = done / max(now - self._started, 1e-9)
        percent = 100.0 * self.num_timesteps / max(self.total, 1)
        parts = [f"step {self.num_timesteps}/{self.total} ({percent:.0f}%)", f"{rate:.0f} steps/s"]
        returns = [float(info["r"]) for info in (self.model.ep_info_buffer or []) if "r" in info]
        if returns:
            parts.append(f"episode return {np.mean(returns):.4g} (mean of {len(returns)})")
        left = self.total - self.num_timesteps
        if rate > 0 and left > 0 and math.isfinite(left / rate):
            parts.append(f"about {format_duration(left / rate)} left")
        self.log(", ".join(parts))
        self.lines += 1
        self._last_time, self._last_steps = now, self.num_timesteps


class StopOnInterrupt:
    """While active, the first SIGINT (Ctrl-C) sets :attr:`requested`; a second one raises ``KeyboardInterrupt``.

    Training polls :attr:`requested` at its update boundaries (``AtomicCheckpointCallback(stop=...)``), writes a
    checkpoint there and stops, so an interrupted run loses nothing. Outside the main thread (where Python
    cannot install signal handlers), or where SIGINT is ignored (a job started with ``nohup``), nothing changes.

    Args:
        log: where the line acknowledging the first Ctrl-C goes.
    """

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self.log = log
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.log("interrupt: writing a checkpoint at the end of the current update, then stopping "
                 "(Ctrl-C again to stop at once and keep only the previous checkpoint)")
