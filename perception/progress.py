"""Progress of long perception jobs (dataset rendering, training): a bar on a terminal, plain lines elsewhere.

tqdm draws its bar with carriage returns, which is right on a terminal and useless in a log file, a CI job or a
pipe, where a job that prints nothing for minutes looks hung. :class:`Progress` keeps tqdm's interface
(``update``, ``set_postfix``, ``close``) and, when its stream is not a terminal, prints a plain line instead: at
every :meth:`Progress.log` call (end of an epoch, a finished shard) and at most every ``every_s`` seconds in
between.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """A tqdm bar on a terminal, periodic plain lines on any other stream; nothing when disabled.

    Args:
        total: units of work in all.
        initial: units already done (a resumed job).
        desc: what is being done; starts every plain line.
        unit: name of one unit of work (``frame``, ``step``).
        enabled: ``False`` prints nothing at all.
        stream: where to write (default: ``sys.stderr`` at construction time, so JSON on stdout stays clean).
        every_s: seconds between the plain lines :meth:`update` prints on its own.
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str, unit: str = "it", enabled: bool = True,
                 stream: TextIO | None = None, every_s: float = 30.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(enabled and callable(isatty) and isatty())
        self.total, self.n, self.desc, self.unit = int(total), int(initial), desc, unit
        self.every_s = every_s
        self.postfix: dict[str, Any] = {}
        self._start = time.monotonic()
        self._start_n = self.n
        self._last_line = self._start
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not self.terminal,
                        file=self.stream)

    @property
    def plain(self) -> bool:
        """Whether plain lines are printed (enabled and not on a terminal)."""
        return self.enabled and not self.terminal

    def update(self, n: int = 1) -> None:
        """``n`` more units done; off a terminal, a status line when ``every_s`` has passed since the last."""
        self.n += n
        self.bar.update(n)
        if self.plain and time.monotonic() - self._last_line >= self.every_s:
            self.log(self.status())

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the bar (and at the end of the plain status lines)."""
        self.postfix = values
        self.bar.set_postfix(**values)

    def status(self) -> str:
        """``"<done>/<total> <unit>s (<rate>/s[, key=value ...])"``."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (self.n - self._start_n) / elapsed
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        return f"{self.n}/{self.total} {self.unit}s ({rate:.1f} {self.unit}s/s{extra})"

    def log(self, message: str) -> None:
        """Print ``"<desc>: <message>"`` as one line when not drawing a bar (a terminal shows the bar instead)."""
        if not self.plain:
            return
        print(f"{self.desc}: {message}", file=self.stream, flush=True)
        self._last_line = time.monotonic()

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
