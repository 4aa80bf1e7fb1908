"""Suite-wide settings: headless rendering, and every test runs in its own empty working folder.

Commands write their default outputs under ``runs/`` relative to the working folder; running each test in a
temporary one keeps the checkout clean whatever a test forgets to pass as ``--out``.
"""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(autouse=True)
def _run_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
