"""What the command modules share: error reporting, option parsing, and options built from the task specs."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from common.errors import VantageError
from envs.specs import TASKS


class ErrorReportingGroup(click.Group):
    """A click group that shows Vantage errors as one line (exit code 1) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VantageError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


def parse_key_values(pairs: tuple[str, ...], param_hint: str) -> dict[str, Any]:
    """``("a=1", "b=x")`` -> ``{"a": 1, "b": "x"}``; values are JSON where they parse, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} must look like KEY=VALUE (VALUE parsed as JSON)", param_hint=param_hint)
        key, raw = pair.split("=", 1)
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
