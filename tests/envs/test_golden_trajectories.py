"""Every environment still produces the trajectories recorded before the architecture refactor."""

from __future__ import annotations

import json

import pytest

from tests.envs.golden import CASES, GOLDEN_FILE, record_case


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN_FILE.read_text())


@pytest.mark.parametrize(("label", "env_id", "kwargs", "options", "steps"), CASES, ids=[c[0] for c in CASES])
def test_trajectory_matches_golden(golden: dict, label: str, env_id: str, kwargs: dict, options: dict | None,
                                   steps: int) -> None:
    got = json.loads(json.dumps(record_case(env_id, kwargs, options, steps)))
    want = golden[label]
    assert got["reset"] == want["reset"]
    for i, (a, b) in enumerate(zip(got["steps"], want["steps"], strict=True)):
        assert a == b, f"{label}: step {i} differs"
