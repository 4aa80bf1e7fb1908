"""Finding Webots and running it: the installation, its Python controller library, and a launched instance.

Webots is not on PyPI, so everything Webots-specific is found at run time: ``WEBOTS_HOME`` (or a usual install
folder) must hold Webots R2023b or newer; its ``lib/controller/python`` is put on ``sys.path`` and ``controller``
is imported on first use. :class:`WebotsProcess` starts ``webots --batch --mode=fast --no-rendering ...`` for a
backend that is not told to attach, drains its output, and stops it (with its children) on close.
"""

from __future__ import annotations

import collections
import importlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.errors import SimulatorError, SimulatorNotAvailableError

#: Where Webots usually lives when ``WEBOTS_HOME`` is not set (Linux package, snap, macOS, Windows).
DEFAULT_WEBOTS_HOMES: tuple[str, ...] = (
    "/usr/local/webots",
    "/snap/webots/current/usr/share/webots",
    "/opt/webots",
    "/Applications/Webots.app",
    r"C:\Program Files\Webots",
)
_PYTHON_API_DIRS = ("lib/controller/python", "Contents/lib/controller/python")
_EXECUTABLES = ("webots", "Contents/MacOS/webots", "msys64/mingw64/bin/webots.exe", "webots.exe")
_INSTALL_HINT = (
    "install Webots R2023b or newer from https://cyberbotics.com (it is not on PyPI) and set WEBOTS_HOME "
    "to its folder (e.g. /usr/local/webots), or pass webots_home=..."
)
# Webots prints this once the world is loaded and the extern robot accepts a controller.
_READY = re.compile(
    r"extern controller: [Ww]aiting for local or remote connection on port (\d+)"
    r"(?: targeting robot named '([^']*)')?"
)


def find_webots_home(webots_home: str | Path | None = None) -> Path:
    """The Webots installation to use: ``webots_home``, else ``$WEBOTS_HOME``, else a usual install folder.

    Raises:
        SimulatorNotAvailableError: no installation with a Python controller library was found.
    """
    if webots_home is not None or os.environ.get("WEBOTS_HOME"):
        origin = "webots_home" if webots_home is not None else "WEBOTS_HOME"
        home = Path(webots_home if webots_home is not None else os.environ["WEBOTS_HOME"]).expanduser()
        if not home.is_dir():
            raise SimulatorNotAvailableError(f"{origin}={str(home)!r} is not a folder; {_INSTALL_HINT}")
        if _python_api_dir(home) is None:
            raise SimulatorNotAvailableError(
                f"{origin}={str(home)!r} has no lib/controller/python (the Webots Python API of R2023a+); "
                f"{_INSTALL_HINT}"
            )
        return home
    for candidate in DEFAULT_WEBOTS_HOMES:
        home = Path(candidate)
        if home.is_dir() and _python_api_dir(home) is not None:
            return home
    raise SimulatorNotAvailableError(
        f"Webots was not found: WEBOTS_HOME is not set and none of {list(DEFAULT_WEBOTS_HOMES)} holds it; "
        f"{_INSTALL_HINT}"
    )


def _python_api_dir(home: Path) -> Path | None:
    for relative in _PYTHON_API_DIRS:
        if (home / relative).is_dir():
            return home / relative
    return None


def import_controller(home: Path) -> Any:
    """Import Webots' ``controller`` module from ``home`` (its ``wb.py`` reads ``WEBOTS_HOME``)."""
    api_dir = _python_api_dir(home)
    if api_dir is None:
        raise SimulatorNotAvailableError(f"no lib/controller/python under {home}; {_INSTALL_HINT}")
    os.environ["WEBOTS_HOME"] = str(home)
    if str(api_dir) not in sys.path:
        sys.path.insert(0, str(api_dir))
    try:
        return importlib.import_module("controller")
    except (ImportError, OSError) as exc:  # OSError: libController could not be loaded
        raise SimulatorNotAvailableError(
            f"could not import Webots' controller module from {api_dir}: {exc}; {_INSTALL_HINT}"
        ) from exc


def webots_executable(home: Path) -> Path:
    for relative in _EXECUTABLES:
        if (home / relative).is_file():
            return home / relative
    found = shutil.which("webots")
    if found:
        return Path(found)
    raise SimulatorNotAvailableError(f"no webots executable under {home} nor on PATH; {_INSTALL_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebotsProcess:
    """A Webots instance started for one backend; its output is drained (and kept) by a thread.

    Args:
        argv: the command line.
        robot_name: the extern robot whose "waiting for connection" line means ready.
    """

    def __init__(self, argv: Sequence[str], robot_name: str) -> None:
        self.argv = list(argv)
        self.robot_name = robot_name
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self.port: int | None = None
        self._event = threading.Event()
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, encoding="utf-8", errors="replace",
                start_new_session=os.name == "posix",  # own process group: stop() also ends webots-bin
            )
        except OSError as exc:
            message = f"could not start {self.argv[0]}: {exc}; {_INSTALL_HINT}"
            raise SimulatorNotAvailableError(message) from exc
        threading.Thread(target=self._drain, name="webots-output", daemon=True).start()

    def _drain(self) -> None:
        # Webots blocks once a pipe fills, so the output is read for the whole life of the process.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            match = _READY.search(line)
            if match and self.port is None and match.group(2) in (None, self.robot_name):
                self.port = int(match.group(1))
                self._event.set()
        self._event.set()

    def wait_ready(self, timeout: float) -> int:
        """Block until the extern robot waits for a controller; return the port Webots really uses."""
        self._event.wait(timeout)
        if self.port is not None:
            return self.port
        tail = "\n".join(list(self.output)[-20:]) or "(no output)"
        code = self.proc.poll()
        self.stop()
        if code is not None or self._event.is_set():
            raise SimulatorError(f"Webots exited (code {code}) before accepting a controller:\n{tail}")
        raise SimulatorError(
            f"Webots did not offer robot {self.robot_name!r} to an extern controller within {timeout} s "
            f"(command: {' '.join(self.argv)}); last output:\n{tail}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """Terminate Webots and its children, then kill them if they linger. Safe to call twice."""
        if self.proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))
            self.proc.wait(timeout=grace)

    def _signal(self, sig: int) -> None:
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, sig)  # the group created by start_new_session
            else:
                self.proc.terminate()
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------
