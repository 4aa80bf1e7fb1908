"""The arrows run one way: scripts -> agents -> envs/perception -> sim, with common/ beneath everything.

Every import is checked, including the ones inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package (folder) -> top-level packages its modules must not import.
FORBIDDEN: dict[str, set[str]] = {
    "common": {"envs", "perception", "agents", "deploy", "scripts"},
    "perception": {"envs", "agents", "deploy", "scripts"},
    "envs": {"agents", "deploy", "scripts"},
    "agents": {"scripts"},
    "deploy": {"agents", "scripts", "torch", "stable_baselines3"},
}
#: finer rules inside a package: module folder -> dotted prefixes it must not import.
FORBIDDEN_INSIDE: dict[str, set[str]] = {"envs/sim": {"envs.tasks", "envs.worlds", "perception"}}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_downwards(package: str) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in _modules(package) for line, name in _imports(path)
             if name.split(".")[0] in FORBIDDEN[package]]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN_INSIDE))
def test_the_simulator_layer_knows_no_tasks_worlds_or_perception(folder: str) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in _modules(folder) for line, name in _imports(path)
             if any(name == p or name.startswith(p + ".") for p in FORBIDDEN_INSIDE[folder])]
    assert not wrong, "\n".join(wrong)
