"""Option parsing shared by the command modules."""

from __future__ import annotations

import json
from typing import Any

import click


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
