"""What the command modules share: error reporting, option parsing, and options built from the task specs.

Every ``vantage`` command ends in one of three ways: success (exit 0), a runtime error (exit 1) or a usage
error (exit 2), the errors as one line on stderr; an interrupt (Ctrl-C) says what was kept and exits 130.
The traceback is shown only with ``vantage --debug ...`` or ``VANTAGE_DEBUG=1``.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import click

from common.errors import VantageError
from envs.specs import TASKS

__all__ = ["DEBUG_ENV", "ErrorReportingGroup", "debug_requested", "describe_error", "note_kept", "overwrite_option",
           "parse_key_values", "split_list", "task_options"]

#: Environment variable that turns tracebacks on, like ``--debug``.
DEBUG_ENV = "VANTAGE_DEBUG"
#: Exit codes: runtime errors, usage errors, and an interrupt (128 + SIGINT, as shells report it).
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_DEBUG_HINT = f"rerun with --debug (or {DEBUG_ENV}=1) for the traceback"
#: What the running command has kept so far, for the line an interrupt prints (see :func:`note_kept`).
_kept: list[str] = []


def note_kept(message: str) -> None:
    """Say what an interrupt of the running command leaves behind (e.g. "the finished runs in X; rerun to resume").

    The interrupt line prints the latest note; without one it says that every file already written is whole.
    """
    _kept.append(message)


def debug_requested(args: Sequence[str]) -> bool:
    """Whether ``--debug`` precedes the subcommand in ``args``, or :data:`DEBUG_ENV` is set to a true value."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    for arg in args:
        # The main group's own options are all flags, so the first word not starting with "-" is the subcommand.
        if arg == "--debug":
            return True
        if arg == "--" or not arg.startswith("-"):
            return False
    return False


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _json_source(exc: json.JSONDecodeError) -> Path | None:
    """The file whose text failed to parse, when a frame of the traceback holds its path (best effort).

    ``json.loads(path.read_text())`` forgets the path; the frames that read the file still hold it, so the
    candidates are their ``Path`` and ``str`` locals (and the JSON files directly in folders among them),
    and the one whose text is the text that failed to parse is named.
    """
    tb: TracebackType | None = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    seen: set[Path] = set()
    for frame in reversed(frames):  # innermost first: the reader is closest to the parse
        for value in list(frame.f_locals.values()):
            if isinstance(value, str) and (len(value) > 4096 or "\n" in value):
                continue
            if not isinstance(value, str | Path):
                value = getattr(value, "name", None)  # an open file
                if not isinstance(value, str):
                    continue
            try:
                path = Path(value)
                candidates = ([path] if path.is_file() else
                              sorted(path.glob("*.json*"))[:50] if path.is_dir() else [])
                for candidate in candidates:
                    if candidate in seen or candidate.stat().st_size > 64 * 2**20:
                        continue
                    seen.add(candidate)
                    text = candidate.read_text(errors="replace")
                    if text == exc.doc or (exc.doc.strip() and exc.doc in text.splitlines()):
                        return candidate
            except (OSError, ValueError):
                continue
    return None


def _describe_os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename is not None else ""
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    if isinstance(exc, FileNotFoundError):
        return f"file or folder not found{where}; check the path"
    if isinstance(exc, PermissionError):
        return f"permission denied{where}; choose a path you may read or write (e.g. another --out)"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device{where}; free some space or choose another --out "
                "(files already written are whole: each is written completely or not at all)")
    if exc.errno == errno.EROFS:
        return f"read-only file system{where}; choose another --out"
    if isinstance(exc, IsADirectoryError):
        return f"a folder where a file was expected{where}"
    if isinstance(exc, NotADirectoryError):
        return f"a file where a folder was expected{where}"
    name = errno.errorcode.get(exc.errno or -1, type(exc).__name__)
    return f"{exc.strerror or exc} ({name}){where}"


def describe_error(exc: BaseException) -> tuple[str, int] | None:
    """The one line (without ``Error:``) and exit code for an exception, or ``None`` to let it propagate.

    Usage errors exit 2, an interrupt 130, everything else 1.
    """
    if isinstance(exc, SystemExit | click.exceptions.Exit):
        return None
    if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, click.Abort)
                                              and isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)):
        kept = _kept[-1] if _kept else "every file already written is whole (written completely or not at all)"
        return f"interrupted; {kept}", EXIT_INTERRUPTED
    if isinstance(exc, click.Abort):
        return "aborted", EXIT_ERROR
    if isinstance(exc, click.UsageError):
        hint = ""
        if exc.ctx is not None:
            names = exc.ctx.command.get_help_option_names(exc.ctx)
            if names:
                hint = f" (see '{exc.ctx.command_path} {max(names, key=len)}')"
        return _one_line(exc.format_message()) + hint, exc.exit_code
    if isinstance(exc, click.ClickException):
        return _one_line(exc.format_message()), exc.exit_code
    if isinstance(exc, VantageError):
        # Before OSError: OutputExistsError is a FileExistsError too, and its own message says what to do.
        return f"{type(exc).__name__}: {_one_line(exc)}", EXIT_ERROR
    if isinstance(exc, OSError):
        return _describe_os_error(exc), EXIT_ERROR
    if isinstance(exc, json.JSONDecodeError):
        source = _json_source(exc)
        where = f" in {source}" if source is not None else ""
        return (f"invalid JSON{where}: {exc.msg} at line {exc.lineno} column {exc.colno}; fix or replace the file"
                + ("" if source is not None else f" ({_DEBUG_HINT} to see which)")), EXIT_ERROR
    if isinstance(exc, MemoryError):
        return f"out of memory ({_one_line(exc) or 'MemoryError'}); use smaller settings", EXIT_ERROR
    if isinstance(exc, Exception):
        return (f"unexpected {type(exc).__name__}: {_one_line(exc)} -- this is a bug in Vantage; {_DEBUG_HINT} "
                "and report it"), EXIT_ERROR
    return None


class ErrorReportingGroup(click.Group):
    """A click group whose command line never ends in a traceback unless asked (``--debug``, :data:`DEBUG_ENV`).

    Vantage errors, bad files (``OSError``, invalid JSON), usage errors and Ctrl-C become one line on stderr
    (:func:`describe_error`); any other exception is reported as a bug in one line. Exit codes: 0 success,
    1 runtime error, 2 usage error, 130 interrupted. The handling lives in :meth:`main`, which click and
    ``CliRunner`` call for the outermost group, so it also covers errors in parsing the group's own options.
    """

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Run the command line; in standalone mode exit with 0, 1, 2 or 130 and at most one line of error."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        _kept.clear()
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `vantage` or `vantage bench` alone: the help, as click shows it
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`vantage ... | head`): nothing more can be said to it.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (kept open so the interpreter's last flush succeeds)
            sys.exit(EXIT_ERROR)
        except BaseException as exc:
            self._report(exc, debug_requested(argv))
        sys.exit(result if isinstance(result, int) else 0)

    @staticmethod
    def _report(exc: BaseException, debug: bool) -> NoReturn:
        described = describe_error(exc)
        if described is None:
            raise exc
        line, code = described
        if debug and not isinstance(exc, click.UsageError):
            traceback.print_exception(exc, file=sys.stderr)
        click.echo(f"Error: {line}" if code != EXIT_INTERRUPTED else line, err=True)
        sys.exit(code)


def overwrite_option(what: str, note: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--overwrite``: allow replacing ``what`` (the command's result files) where they already exist.

    Args:
        what: the files, for the help text.
        note: a sentence the help adds (e.g. which files need no ``--overwrite``).
    """
    return click.option("--overwrite", is_flag=True,
                        help=f"Replace {what} if they already exist (without it an existing result is an error)."
                             + (f" {note}" if note else ""))


def parse_key_values(pairs: tuple[str, ...], param_hint: str) -> dict[str, Any]:
    """``("a=1", "b=x")`` -> ``{"a": 1, "b": "x"}``; values are JSON where they parse, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} must look like KEY=VALUE (VALUE parsed as JSON)", param_hint=param_hint)
        key, raw = pair.split("=", 1)
        if not key.strip():
            raise click.BadParameter(f"{pair!r} has no KEY: it must look like KEY=VALUE", param_hint=param_hint)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def split_list(text: str, option: str, cast: Callable[[str], Any] = str) -> tuple[Any, ...]:
    """``"a,b"`` -> ``("a", "b")`` (each passed through ``cast``); a bad item names the option."""
    try:
        return tuple(cast(item.strip()) for item in text.split(",") if item.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} must be a comma-separated list ({exc})", param_hint=option) from exc


def task_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one ``--<option>`` per environment option any task spec exposes (``--reward``, ``--motion``, ...).

    Each takes the union of the tasks' choices (the task checks that the option applies to it); the command
    receives the set ones as a ``task_options`` dict.
    """
    choices: dict[str, list[str]] = {}
    helps: dict[str, list[str]] = {}
    for spec in TASKS.values():
        for option in spec.options:
            known = choices.setdefault(option.name, [])
            known += [c for c in option.choices if c not in known]
            helps.setdefault(option.name, []).append(
                f"{spec.name}: {' | '.join(option.choices)} (default {option.default})")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        chosen = {name: kwargs.pop(name) for name in choices}
        return func(*args, task_options={k: v for k, v in chosen.items() if v is not None}, **kwargs)

    for name in reversed(list(choices)):
        wrapper = click.option(f"--{name.replace('_', '-')}", name, type=click.Choice(choices[name]), default=None,
                               help="; ".join(helps[name]) + ".")(wrapper)
    return wrapper
