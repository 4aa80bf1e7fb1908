"""Seed derivation: many independent episode seeds from one user seed, reproducible on every machine."""

from __future__ import annotations

import numpy as np

__all__ = ["EVAL_STREAM", "GRID_STREAM", "derive_seeds"]

#: Stream of evaluation episode seeds (``vantage eval``, the demo, the reward study).
EVAL_STREAM = 10_007
#: Stream of the face-recognition benchmark grids' episode seeds (every cell of a grid uses the same ones).
GRID_STREAM = 4_243


def derive_seeds(seed: int, n: int, stream: int = EVAL_STREAM) -> list[int]:
    """``n`` seeds in ``[0, 2**31 - 1)`` drawn from ``SeedSequence([seed, stream])``.

    Training runs use small seeds (0, 1, 2, ...); seeds derived here are large and pseudo-random, so evaluation
    episodes never repeat a training episode. Different ``stream`` values give unrelated seed lists.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        from common.errors import InvalidArgumentError

        raise InvalidArgumentError(f"seed={seed!r} must be an integer >= 0")
    return [int(s) for s in np.random.SeedSequence([seed, stream]).generate_state(n) % (2**31 - 1)]
