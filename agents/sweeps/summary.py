"""A sweep's results grouped over seeds: rows of mean ± std per setting and setup, a Markdown table, a plot.

The rows have the reward study's format (``setup``, the axis values, ``seeds``, ``<figure>_mean`` and
``<figure>_std`` for every figure the task's evaluator gives: ``distance_error_mean``, ``steps_mean``, ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_path

__all__ = ["best_row", "format_failures", "format_rows", "plot_rows", "summarize"]


def _key(params: Mapping[str, Any], group_by: Sequence[str]) -> str:
    return json.dumps({k: params.get(k) for k in group_by}, sort_keys=True, default=str)


def summarize(results: list[dict[str, Any]], group_by: Sequence[str], setups: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every figure, per setting (``group_by`` values) and setup, in trial order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(_key(result["params"], group_by), []).append(result)
    rows = []
    for setup in setups:
        for members in groups.values():
            picked = [m["eval"][setup] for m in members if setup in m["eval"]]
            if not picked:
                continue
            row: dict[str, Any] = {"setup": setup, **{k: members[0]["params"].get(k) for k in group_by},
                                   "seeds": len(picked), "trials": [m["trial"] for m in members]}
            for figure in picked[0]:
                values = np.array([p[figure] for p in picked if figure in p], dtype=float)
                row[f"{figure}_mean"] = float(values.mean())
                row[f"{figure}_std"] = float(values.std())
            rows.append(row)
    return rows


def best_row(rows: list[dict[str, Any]], metric: str, mode: str, setup: str | None = None) -> dict[str, Any] | None:
    """The row with the best ``metric`` mean (in ``setup`` when given)."""
    candidates = [r for r in rows if f"{metric}_mean" in r and (setup is None or r["setup"] == setup)
                  and math.isfinite(r[f"{metric}_mean"])]
    if not candidates:
        return None
    pick = min if mode == "min" else max
    return pick(candidates, key=lambda r: r[f"{metric}_mean"])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_rows(rows: list[dict[str, Any]], group_by: Sequence[str], metric: str, mode: str) -> str:
    """One line per setting and setup: the axis values, ``metric`` mean ± std over seeds, steps per episode."""
    head = [*group_by, "setup", f"{metric} (mean ± std)", "steps/episode", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    best = best_row(rows, metric, mode)
    for row in rows:
        mark = " **best**" if row is best else ""
        cells = [_cell(row.get(k)) for k in group_by] + [
            row["setup"], f"{row.get(f'{metric}_mean', math.nan):.4g} ± {row.get(f'{metric}_std', math.nan):.4g}{mark}",
            f"{row.get('steps_mean', math.nan):.0f}", str(row["seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_failures(stopped: list[dict[str, Any]], failed: list[dict[str, Any]], metric: str) -> str:
    """Lines naming the trials stopped early (where, with what score) and those that failed (with the error)."""
    lines = []
    if stopped:
        lines.append(f"Stopped early by the scheduler ({len(stopped)}): " + ", ".join(
            f"{s['trial']} at {s.get('steps')} steps ({metric} {_cell(s.get('score'))})" for s in stopped))
    if failed:
        lines.append(f"Failed ({len(failed)}; rerun with --resume to try them again):")
        lines += [f"- {f['trial']}: {f['error']}" for f in failed]
    return "\n".join(lines)


def plot_rows(rows: list[dict[str, Any]], group_by: Sequence[str], metric: str, title: str, path: Path) -> None:
    """Horizontal bars of ``metric`` mean ± std per setting, one colour per setup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setups = list(dict.fromkeys(r["setup"] for r in rows))
    labels = list(dict.fromkeys(", ".join(f"{k}={_cell(r.get(k))}" for k in group_by) or "all" for r in rows))
    height = 0.8 / max(1, len(setups))
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(labels) * max(1, len(setups)) + 1)))
    for i, setup in enumerate(setups):
        means, stds = [], []
        for label in labels:
            row = next((r for r in rows if r["setup"] == setup and (", ".join(
                f"{k}={_cell(r.get(k))}" for k in group_by) or "all") == label), None)
            means.append(row.get(f"{metric}_mean", np.nan) if row else np.nan)
            stds.append(row.get(f"{metric}_std", 0.0) if row else 0.0)
        ax.barh(np.arange(len(labels)) + i * height, means, height, xerr=stds, capsize=2, label=setup)
    ax.set_yticks(np.arange(len(labels)) + height * (len(setups) - 1) / 2)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(title, fontsize=9)
    if len(setups) > 1:
        ax.legend(title="setup", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")  # long axis labels stay whole
    plt.close(fig)
