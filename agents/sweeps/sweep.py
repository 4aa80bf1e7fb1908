"""``vantage sweep``: check a sweep, skip what is done, run the rest on Ray Tune, write the summary.

A sweep folder (``--out``) holds ``sweep_spec.json`` (what the sweep is, so ``--resume`` can tell it from
another one), ``runs/NAME/`` (one training run per trial), ``tune/`` (Ray Tune's own state) and the summary:
``STEM.json``, ``STEM.md`` and ``STEM.png`` (``sweep`` by default), written together once every trial has
finished, stopped early or failed; an interrupted call writes no summary, and ``--resume`` continues it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.sweeps.engine import EngineOptions, TrialOutcome, check_storage, connect, preflight, run_trials
from agents.sweeps.space import Trial
from agents.sweeps.summary import best_row, format_failures, format_rows, plot_rows, summarize
from agents.sweeps.trials import STATUS_FILE, EvalSettings, cached_result
from agents.training import CONFIG_FILE, load_config
from common.errors import InvalidArgumentError, OutputExistsError
from common.io import atomic_path, atomic_write_json, atomic_write_text, json_default, prepare_output

__all__ = ["SPEC_FILE", "Sweep", "run_sweep"]

SPEC_FILE = "sweep_spec.json"
#: Config fields a trial's stored run may differ in: threads change speed, not what is trained.
_FREE_FIELDS = ("torch_threads",)


@dataclass
class Sweep:
    """A sweep ready to run.

    Attributes:
        task: task name.
        out: the sweep folder.
        trials: every trial, in order.
        settings: how trials are evaluated and reported.
        spec: what defines the sweep (compared on ``--resume``; the engine's options are not part of it).
        group_by: the axes the summary groups by (all but ``seed``).
        stem: name of the summary files.
        title: the plot's title.
        table: ``(rows, sweep) -> Markdown`` for the summary table (default: one line per setting and setup).
        plot: ``(rows, sweep, path)`` drawing the summary plot.
        adopt: accept runs already in ``out/runs`` without a ``sweep_spec.json`` (the reward study's folders,
            whose runs are checked one by one); otherwise such a folder needs ``--resume``.
    """

    task: str
    out: Path
    trials: list[Trial]
    settings: EvalSettings
    spec: dict[str, Any]
    group_by: list[str] = field(default_factory=list)
    stem: str = "sweep"
    title: str = ""
    table: Callable[[list[dict[str, Any]], Sweep], str] | None = None
    plot: Callable[[list[dict[str, Any]], Sweep, Path], None] | None = None
    adopt: bool = False

    @property
    def files(self) -> tuple[str, str, str]:
        return f"{self.stem}.json", f"{self.stem}.md", f"{self.stem}.png"


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=json_default))


def _check_folder(sweep: Sweep, resume: bool) -> None:
    out = Path(sweep.out)
    prepare_output(out)  # a file, or another kind of artefact (a training run, a model, a dataset): refused
    spec_path = out / SPEC_FILE
    runs = out / "runs"
    if spec_path.is_file():
        stored = json.loads(spec_path.read_text())
        if not resume and not sweep.adopt:
            raise OutputExistsError(f"{out} already holds a sweep ({SPEC_FILE}); pass --resume to continue it, or "
                                    "choose another --out")
        wanted = _canonical(sweep.spec)
        if not sweep.adopt and stored != wanted:
            differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            details = "; ".join(f"{k}: {stored.get(k)!r} there, {wanted.get(k)!r} now" for k in differ)
            raise InvalidArgumentError(f"--resume: {out} holds another sweep ({details}); run this one with another "
                                       "--out, or repeat that sweep's settings to continue it")
    elif runs.is_dir() and any(runs.iterdir()) and not resume and not sweep.adopt:
        raise OutputExistsError(f"{out} already holds trial runs ({runs}); pass --resume to continue them, or "
                                "choose another --out")


def _check_stored_run(run_dir: Path, trial: Trial) -> None:
    """Refuse a run folder trained with other settings than the trial: reusing it would mix two sweeps."""
    stored = load_config(run_dir).to_json()
    wanted = trial.config.to_json()
    differ = [k for k in wanted if k not in _FREE_FIELDS and _canonical(stored.get(k)) != _canonical(wanted[k])]
    if differ:
        details = ", ".join(f"{k}={stored.get(k)!r} (this sweep: {wanted[k]!r})" for k in differ)
        raise InvalidArgumentError(f"{run_dir} was trained with {details}; choose another --out for a sweep with "
                                   "other settings (its runs are kept)")


def _status(run_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def run_sweep(sweep: Sweep, options: EngineOptions, resume: bool = False,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every trial not yet done; write and return the summary.

    Raises:
        OutputExistsError: ``out`` holds a sweep or runs and ``resume`` is false, or another kind of artefact.
        InvalidArgumentError: ``resume`` on another sweep's folder; a run trained with other settings.
        ClusterError: the cluster cannot be reached, or has several nodes and no shared ``storage``.
        KeyboardInterrupt: interrupted: the finished trials are kept and ``--resume`` continues.
    """
    preflight(options)
    _check_folder(sweep, resume)
    root = Path(options.storage) if options.storage else Path(sweep.out)
    runs_dir = root / "runs"
    done: list[TrialOutcome] = []
    todo: list[Trial] = []
    for trial in sweep.trials:
        run_dir = runs_dir / trial.name
        if (run_dir / CONFIG_FILE).is_file():
            _check_stored_run(run_dir, trial)
        result = cached_result(run_dir, trial, sweep.settings)
        record = _status(run_dir)
        if result is not None:
            done.append(TrialOutcome(trial, "finished", result))
        elif record is not None and record.get("status") == "stopped" and sweep.settings.report_every:
            done.append(TrialOutcome(trial, "stopped", steps=record.get("steps"), score=record.get("score")))
        else:
            todo.append(trial)
    log(f"{len(sweep.trials)} trial(s): {len(done)} done before, {len(todo)} to run")
    timing: dict[str, Any] = {"wall_s": 0.0}
    if todo:
        with connect(options) as ray:
            check_storage(ray, root, options.storage)
            # Written once the cluster is there, so a refused call leaves no folder behind.
            _write_spec(sweep)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            log(f"Ray: {len(ray.nodes())} node(s), {cpus} CPU(s), {options.cpus_per_trial} per trial; "
                f"scheduler {options.scheduler}; runs in {runs_dir}")
            ran, timing = run_trials(todo, runs_dir, root / "tune", sweep.settings, options, log)
        for outcome in ran:
            run_dir = runs_dir / outcome.trial.name
            if outcome.status in ("stopped", "failed"):
                atomic_write_json(run_dir / STATUS_FILE, {"status": outcome.status, "steps": outcome.steps,
                                                          "score": outcome.score, "error": outcome.error})
            elif outcome.status == "finished":
                (run_dir / STATUS_FILE).unlink(missing_ok=True)
        unfinished = [o.trial.name for o in ran if o.status == "unfinished"]
        if unfinished:
            shown = ", ".join(unfinished[:6]) + (f" and {len(unfinished) - 6} more" if len(unfinished) > 6 else "")
            log(f"{len(unfinished)} trial(s) did not finish ({shown}); their checkpoints are kept: rerun with "
                f"--resume --out {sweep.out} to continue")
            raise KeyboardInterrupt
        done += ran
        trial_s = sum(o.result.get("trial_wall_s", 0.0) for o in ran if o.result)
        timing["trial_s_sum"] = round(trial_s, 3)
        timing["trials_run"] = len(ran)
    _write_spec(sweep)
    return _write_summary(sweep, done, timing, options)


def _write_spec(sweep: Sweep) -> None:
    if not sweep.adopt:  # a preset's folder is checked run by run: it may be called on subsets of its grid
        atomic_write_json(Path(sweep.out) / SPEC_FILE, _canonical(sweep.spec))


def _write_summary(sweep: Sweep, outcomes: Sequence[TrialOutcome], timing: dict[str, Any],
                   options: EngineOptions) -> dict[str, Any]:
    order = {t.name: i for i, t in enumerate(sweep.trials)}
    outcomes = sorted(outcomes, key=lambda o: order[o.trial.name])
    results = [o.result for o in outcomes if o.status == "finished" and o.result is not None]
    stopped = [{"trial": o.trial.name, "params": o.trial.params, "steps": o.steps, "score": o.score}
               for o in outcomes if o.status == "stopped"]
    failed = [{"trial": o.trial.name, "params": o.trial.params, "error": o.error}
              for o in outcomes if o.status == "failed"]
    rows = summarize(results, sweep.group_by, list(sweep.settings.setups))
    metric, mode = sweep.settings.metric, sweep.settings.mode
    steps_trained = sum(r.get("steps", 0) for r in results) + sum(s.get("steps") or 0 for s in stopped)
    # What every trial would have trained to the end: the asked steps, rounded up as the finished ones were.
    trained_to = max((r.get("steps", 0) for r in results), default=0)
    full = sum(max(t.config.steps, trained_to) for t in sweep.trials)
    payload = {"task": sweep.task, "spec": _canonical(sweep.spec), "metric": metric, "mode": mode,
               "engine": {**dataclasses.asdict(options), **timing, "steps_trained": steps_trained,
                          "steps_full_grid": full},
               "summary": rows, "best": best_row(rows, metric, mode), "runs": results, "stopped": stopped,
               "failed": failed}
    table = sweep.table(rows, sweep) if sweep.table else format_rows(rows, sweep.group_by, metric, mode)
    notes = format_failures(stopped, failed, metric)
    name_json, name_md, name_png = sweep.files
    # All three files or none: each goes to a temporary file, renamed over the old one once all are written.
    with contextlib.ExitStack() as stack:
        staged = {name: stack.enter_context(atomic_path(Path(sweep.out) / name)) for name in sweep.files}
        atomic_write_json(staged[name_json], payload)
        atomic_write_text(staged[name_md], table + ("\n\n" + notes if notes else "") + "\n")
        if sweep.plot:
            sweep.plot(rows, sweep, staged[name_png])
        else:
            plot_rows(rows, sweep.group_by, metric, sweep.title or f"{sweep.task} sweep", staged[name_png])
    return payload
