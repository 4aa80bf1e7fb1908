"""Procedural identities: enough, distinct, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from envs.errors import InvalidArgumentError
from envs.worlds.identities import TEXTURE_SIZE, generate_identities


def test_fifty_distinct_identities_from_a_seed() -> None:
    faces = generate_identities(60, seed=0)
    textures = np.stack([f.texture() for f in faces[:50]]).astype(np.float32)
    assert textures.shape == (50, TEXTURE_SIZE[1], TEXTURE_SIZE[0], 3)
    # Every pair of textures differs clearly in the face region (front quarter of the texture).
    front = textures[:, 40:160:4, 160:352:4]  # face region, subsampled to keep the pairwise diff small
    diff = np.abs(front[:, None] - front[None]).mean(axis=(2, 3, 4))
    off_diagonal = diff[~np.eye(50, dtype=bool)]
    assert off_diagonal.min() > 2.0
    assert len({f.name for f in faces}) == 60


def test_identities_are_deterministic_and_prefix_stable() -> None:
    a = generate_identities(10, seed=7)
    b = generate_identities(20, seed=7)
    assert [f.to_dict() for f in a] == [f.to_dict() for f in b[:10]]
    assert np.array_equal(a[3].texture(), b[3].texture())
    assert generate_identities(5, seed=8)[0].to_dict() != a[0].to_dict()


def test_bad_count_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="number of identities"):
        generate_identities(0)
