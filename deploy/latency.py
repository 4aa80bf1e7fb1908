"""Per-stage latency of the runner: p50 / p95 / p99 in milliseconds and frames per second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["LatencyStats"]


class LatencyStats:
    """Collects the seconds each named stage took, per frame, in the order stages first appear.

    A stage that does not run on every frame (a face recogniser that runs only when the policy asks) reports its
    own call count; ``fps`` is frames over the summed time of the frames (the loop's throughput, the simulator's
    own stepping excluded when it is timed as its own stage and left out of ``exclude``).
    """

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.totals: dict[str, float] = {}
        self.frames = 0
        self.frame_seconds = 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as one call of stage ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(float(seconds))
        self.totals[name] = self.totals.get(name, 0.0) + float(seconds)

    def frame_done(self, seconds: float) -> None:
        """Count one processed frame that took ``seconds`` end to end (capture to sink)."""
        self.frames += 1
        self.frame_seconds += float(seconds)

    def summary(self) -> dict[str, Any]:
        """``{"frames", "fps", "stages": {name: {"calls", "mean_ms", "p50_ms", "p95_ms", "p99_ms"}}}``."""
        stages = {}
        for name, values in self.samples.items():
            ms = np.asarray(values) * 1e3
            p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if ms.size else (0.0, 0.0, 0.0)
            stages[name] = {"calls": int(ms.size), "mean_ms": round(float(ms.mean()), 4) if ms.size else 0.0,
                            "p50_ms": round(float(p50), 4), "p95_ms": round(float(p95), 4),
                            "p99_ms": round(float(p99), 4)}
        fps = self.frames / self.frame_seconds if self.frame_seconds > 0 else 0.0
        return {"frames": self.frames, "fps": round(fps, 1), "stages": stages}

    @staticmethod
    def format(summary: dict[str, Any]) -> str:
        """A terminal table of :meth:`summary`."""
        lines = [f"{'stage':<24}{'calls':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"]
        for name, s in summary["stages"].items():
            lines.append(f"{name:<24}{s['calls']:>8}{s['p50_ms']:>10.3f}{s['p95_ms']:>10.3f}{s['p99_ms']:>10.3f}")
        lines.append(f"{summary['frames']} frames, {summary['fps']:.1f} FPS")
        return "\n".join(lines)
