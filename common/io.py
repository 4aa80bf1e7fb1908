"""Atomic file writes: every file Vantage writes appears whole or not at all.

Each writer goes to a temporary file in the destination folder (same file system, so the final
``os.replace`` is atomic) and renames it over the target only once it is complete; an exception or a
Ctrl-C mid-write leaves the previous file, if any, untouched and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["ARTEFACT_FILES", "atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "json_default", "prepare_output"]

#: The file that marks a folder as a Vantage artefact of one kind, and what that kind is.
ARTEFACT_FILES: dict[str, str] = {
    "manifest.json": "a saved perception model",
    "config.json": "a training run",
    "dataset.json": "a face dataset",
    "bank.json": "a face bank",
}


def _umask_mode() -> int:
    # mkstemp creates files 0600; give finished files the permissions a plain open() would.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it is renamed to ``path``.

    For writers that want a file name (``torch.save``, SB3's ``save``, ``np.savez``). ``suffix`` (default: the
    target's) keeps libraries that append an extension from writing elsewhere.

    >>> with atomic_path("model.zip") as tmp:  # doctest: +SKIP
    ...     model.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix if suffix is None
                                else suffix)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, _umask_mode())
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a synced temporary file and a rename."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for NumPy values and paths."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def atomic_write_json(path: str | Path, payload: Any, sort_keys: bool = True) -> Path:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    text = json.dumps(payload, indent=2, sort_keys=sort_keys, default=json_default) + "\n"
    return atomic_write_text(path, text)


def prepare_output(folder: str | Path, names: Iterable[str] = (), *, overwrite: bool = False,
                   kind: str | None = None) -> Path:
    """Check that ``folder`` may receive the files ``names``.

    Nothing is written or created here: the caller writes each file atomically afterwards (the atomic writers
    create the folder), so a command refused now, or failing before its first output, leaves no trace.

    Args:
        folder: the output folder.
        names: the files the caller will write into it.
        overwrite: allow replacing files that exist.
        kind: the kind of artefact ``folder`` itself is (a key of :data:`ARTEFACT_FILES`'s values); a folder
            holding another kind's identity file is refused even with ``overwrite``. ``None``: ``folder`` is a
            plain results folder, so any artefact's identity file in it is refused.

    Raises:
        OutputExistsError: ``folder`` is a file, holds another kind of artefact, or a file in ``names`` exists
            and ``overwrite`` is false.
    """
    from common.errors import OutputExistsError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"output folder {folder} is a file; choose a folder")
    for identity, what in ARTEFACT_FILES.items():
        if what != kind and (folder / identity).is_file():
            raise OutputExistsError(f"{folder} holds {what} ({identity}); write "
                                    f"{kind or 'these results'} to another folder")
    existing = sorted(name for name in names if (folder / name).exists())
    if existing and not overwrite:
        raise OutputExistsError(f"{folder} already holds {', '.join(existing)}; pass --overwrite to replace "
                                f"{'them' if len(existing) > 1 else 'it'}, or choose another folder")
    return folder
