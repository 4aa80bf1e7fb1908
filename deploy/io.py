"""Where the runner's frames come from and where its decisions go.

Sources (``--source``): ``sim:ENV_ID`` (the simulator, closed loop; :func:`deploy.runner.run_sim`),
``video:PATH``, ``camera:N`` (an OpenCV device index), or a GStreamer pipeline string (anything containing
``!``, e.g. a Jetson CSI camera's ``nvarguscamerasrc ! ... ! appsink``). Sinks (``--sink``): ``stdout`` (JSON
lines), ``udp:HOST:PORT`` (one JSON datagram per frame), ``none``, or ``module:function`` (a Python callable
given each record as a dict).
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.errors import InvalidArgumentError, VantageError
from common.io import json_default

__all__ = ["SINK_FORMS", "SOURCE_FORMS", "FrameSource", "Sink", "SinkError", "SourceError", "open_sink",
           "parse_source"]

SOURCE_FORMS = ("sim:ENV_ID", "video:PATH", "camera:N", "a GStreamer pipeline string ('... ! appsink')")
SINK_FORMS = ("stdout", "none", "udp:HOST:PORT", "module:function")


class SourceError(VantageError):
    """A frame source cannot be opened or read."""


class SinkError(VantageError):
    """A sink cannot be opened or written to."""


@dataclass(frozen=True)
class Source:
    """A parsed ``--source``: ``kind`` (sim, video, camera, gstreamer) and its target."""

    kind: str
    target: str


def parse_source(text: str) -> Source:
    """Parse a ``--source`` value; an unknown form lists the allowed ones."""
    text = str(text).strip()
    if "!" in text:
        return Source("gstreamer", text)
    kind, sep, target = text.partition(":")
    if sep and kind in ("sim", "video", "camera") and target:
        if kind == "camera" and not target.isdigit():
            raise InvalidArgumentError(f"--source {text!r}: camera takes a device index (camera:0)")
        return Source(kind, target)
    raise InvalidArgumentError(f"--source {text!r} is not a source; allowed: {', '.join(SOURCE_FORMS)}")


class FrameSource:
    """Frames of a video file, a camera or a GStreamer pipeline, as RGB uint8 arrays.

    Raises:
        SourceError: the source cannot be opened (the message names it and what is allowed).
    """

    def __init__(self, source: Source) -> None:
        if source.kind == "sim":
            raise InvalidArgumentError("sim: sources run closed loop through deploy.runner.run_sim, not as frames")
        self.source = source
        if source.kind == "video":
            if not Path(source.target).is_file():
                raise SourceError(f"--source video:{source.target}: no such file")
            self.capture = cv2.VideoCapture(source.target)
        elif source.kind == "camera":
            self.capture = cv2.VideoCapture(int(source.target))
        else:
            self.capture = cv2.VideoCapture(source.target, cv2.CAP_GSTREAMER)
        if not self.capture.isOpened():
            gstreamer = "GStreamer:                   YES" in cv2.getBuildInformation()
            hint = {"video": "a video file OpenCV can decode (mp4, avi, mkv)",
                    "camera": "a connected camera's index (ls /dev/video*)",
                    "gstreamer": "a pipeline ending in appsink, with OpenCV built with GStreamer "
                                 f"(here: {'yes' if gstreamer else 'no'})"
                    }[source.kind]
            raise SourceError(f"cannot open --source {source.kind}:{source.target}; it must be {hint}")

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self.capture.read()
            if not ok or frame is None:
                return
            if frame.ndim == 2:
                yield frame  # left to the policy's frame check, which says what it takes
            elif frame.shape[2] == 3:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            else:
                yield frame

    def close(self) -> None:
        self.capture.release()


class Sink:
    """Sends each record somewhere; :func:`open_sink` builds one from a ``--sink`` value."""

    def __init__(self, send: Callable[[dict[str, Any]], None], close: Callable[[], None] | None = None,
                 name: str = "") -> None:
        self._send, self._close, self.name = send, close, name

    def __call__(self, record: dict[str, Any]) -> None:
        self._send(record)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, default=json_default, separators=(",", ":"))


def open_sink(text: str) -> Sink:
    """A sink from ``stdout``, ``none``, ``udp:HOST:PORT`` or ``module:function``.

    Raises:
        SinkError: the UDP host does not resolve, the port is not a number, or the callable cannot be imported.
        InvalidArgumentError: another form (the message lists the allowed ones).
    """
    text = str(text).strip()
    if text == "stdout":
        return Sink(lambda r: print(_dumps(r), flush=True), name=text)
    if text == "none":
        return Sink(lambda r: None, name=text)
    if text.startswith("udp:"):
        host, _, port = text[4:].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SinkError(f"--sink {text!r}: a UDP sink is udp:HOST:PORT with a port in 1-65535")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect((host, int(port)))
        except OSError as exc:
            sock.close()
            raise SinkError(f"--sink {text!r}: cannot reach {host}:{port} ({exc})") from exc

        def send(record: dict[str, Any]) -> None:
            try:
                sock.send(_dumps(record).encode())
            except OSError as exc:
                raise SinkError(f"--sink {text!r}: sending failed ({exc}); is a receiver listening on "
                                f"{host}:{port}?") from exc

        return Sink(send, sock.close, name=text)
    module, sep, attribute = text.partition(":")
    if sep and module and attribute and "/" not in module:
        try:
            target = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise SinkError(f"--sink {text!r}: cannot import {attribute} from module {module} ({exc}); the module "
                            f"must be importable (on PYTHONPATH)") from exc
        if not callable(target):
            raise SinkError(f"--sink {text!r}: {module}.{attribute} is not callable")
        return Sink(target, name=text)
    raise InvalidArgumentError(f"--sink {text!r} is not a sink; allowed: {', '.join(SINK_FORMS)}")


def warn(message: str) -> None:
    """A line on stderr (stdout may carry the JSON lines of the stdout sink)."""
    print(message, file=sys.stderr, flush=True)
