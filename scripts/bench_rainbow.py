"""``vantage bench rainbow``: Rainbow ablation (each part removed) against SB3 DQN, with curves and a table.

Every run trains one agent for ``--steps`` environment steps and evaluates it greedily (``--eval-episodes``
episodes, noisy layers in mean mode) every ``--eval-every`` steps, including step 0. The outputs, under
``--out/<env>/``: ``runs.jsonl`` (one line per (variant, seed); runs already there with the same settings are
reused, so an interrupted benchmark resumes where it stopped), ``curves.png``, ``table.md`` and
``summary.json``. ``--no-train`` rebuilds those from the stored runs only (so variants run on different seed
sets share one table). ``--throughput`` trains nothing to completion: it times ``--steps`` training steps after
the replay warm-up, variants interleaved, best of ``--repeats``, and writes ``throughput.json``.

Output files: ``runs.jsonl`` is only ever appended to; ``curves.png``, ``table.md`` and ``summary.json``
summarise the stored runs and are rewritten together on every call (no ``--overwrite`` needed: the runs they
are made from stay in ``runs.jsonl``); ``throughput.json``, a measurement of its own, is replaced only with
``--overwrite``.

The benchmark itself is :mod:`agents.rainbow.ablation`; this module only turns options into an
:class:`~agents.rainbow.ablation.AblationConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from agents.rainbow.ablation import (
    ENV_SPECS,
    VARIANTS,
    AblationConfig,
    NoStoredRunsError,
    UnknownSettingError,
    format_table,
    format_throughput,
    measure_throughput,
    run_ablation,
)
from scripts.options import overwrite_option

_DEFAULT = AblationConfig()


@click.command("rainbow")
@click.option("--env", "env_name", type=click.Choice(list(ENV_SPECS)), default=_DEFAULT.env, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=_DEFAULT.steps, show_default=True, help="Steps per run.")
@click.option("--seeds", default=",".join(map(str, _DEFAULT.seeds)), show_default=True,
              help="Comma-separated training seeds.")
@click.option("--variants", default=",".join(VARIANTS), show_default=True, help="Comma-separated variants.")
@click.option("--eval-every", type=click.IntRange(min=1), default=_DEFAULT.eval_every, show_default=True)
@click.option("--eval-episodes", type=click.IntRange(min=1), default=_DEFAULT.eval_episodes, show_default=True)
@click.option("--threshold", type=float, default=None, help="Solved return (default: 475 on CartPole).")
@click.option("--threads", type=click.IntRange(min=1), default=_DEFAULT.threads, show_default=True,
              help="Torch threads.")
@click.option("--out", type=click.Path(path_type=Path), default=_DEFAULT.out, show_default=True)
@click.option(
    "--throughput",
    is_flag=True,
    help="Only measure training speed: --steps timed steps after replay warm-up, variants interleaved.",
)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Throughput repeats.")
@click.option("--no-train", is_flag=True, help="Train nothing: summarise the runs already stored under --out.")
@overwrite_option("throughput.json (--throughput)",
                  "The summary files need none: they are rebuilt from runs.jsonl on every call.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Replace a preset entry (JSON value), e.g. learning_rate=2.5e-4; DQN gets the shared ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def rainbow(
    env_name: str,
    steps: int,
    seeds: str,
    variants: str,
    eval_every: int,
    eval_episodes: int,
    threshold: float | None,
    threads: int,
    out: Path,
    throughput: bool,
    repeats: int,
    no_train: bool,
    overwrite: bool,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Rainbow vs each component removed vs SB3 DQN: return curves (PNG), table, steps-to-threshold, speed.

    Finished runs are stored in --out/<env>/runs.jsonl and reused, so after Ctrl-C the same command resumes;
    curves.png, table.md and summary.json are rebuilt from the stored runs on every call (nothing is lost).
    throughput.json (--throughput) is replaced only with --overwrite.
    """
    from scripts.options import note_kept, parse_key_values, split_list

    seed_list = split_list(seeds, "--seeds", int)
    preset_overrides = parse_key_values(overrides, "--set")
    try:
        # The config checks the names: an unknown variant raises UnknownNameError, which the CLI shows as one line.
        config = AblationConfig(
            env=env_name,
            steps=steps,
            seeds=seed_list,
            variants=split_list(variants, "--variants"),
            eval_every=eval_every,
            eval_episodes=eval_episodes,
            threshold=threshold,
            threads=threads,
            out=out,
            overrides=preset_overrides,
        )
    except UnknownSettingError as error:
        raise click.BadParameter(str(error), param_hint="--set") from error
    if throughput:
        note_kept(f"no result was written ({config.folder / 'throughput.json'} is written when the timing ends)")
        result = measure_throughput(config, repeats, overwrite=overwrite)
        click.echo(json.dumps(result, indent=2) if as_json else format_throughput(result))
        return
    note_kept(f"the finished runs in {config.folder / 'runs.jsonl'} are kept: rerun the same command to resume")
    try:
        summary = run_ablation(config, progress=not as_json, train=not no_train)
    except NoStoredRunsError as error:
        raise click.ClickException(f"{error}; run without --no-train first") from error
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(format_table(summary))
        click.echo(f"curves, table and JSON in {config.folder}")
