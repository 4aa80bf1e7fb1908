"""What every Vantage package shares: the error hierarchy, atomic file writes and seed derivation.

The bottom layer: it imports no other Vantage package, so ``perception``, ``envs``, ``agents`` and
``scripts`` can all depend on it without their arrows crossing.
"""
