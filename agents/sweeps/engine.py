"""The Ray Tune engine of ``vantage sweep``: local by default, a cluster when given an address.

``ray`` is imported here only, and only when a sweep runs (``pip install vantage[ray]``). A local sweep
starts Ray in the process (``ray.init`` with the machine's CPUs, no dashboard); ``--address`` or
``RAY_ADDRESS`` joins a running cluster instead (``docs/sweeps.md``). Ray's token authentication stays as
Ray sets it (on for a new local instance). Each trial asks Tune for ``cpus_per_trial`` CPUs; its PyTorch and
BLAS threads and ``MUJOCO_GL`` reach the workers through the job's runtime environment, and trials train on
plain in-process vector environments (no forking inside a Ray worker).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.sweeps.space import Trial
from agents.sweeps.trials import EvalSettings, cached_result, run_trial
from common.errors import InvalidArgumentError, VantageError

__all__ = ["SCHEDULERS", "ClusterError", "EngineOptions", "TrialOutcome", "check_storage", "connect", "preflight",
           "run_trials", "start_local", "worker_env"]

SCHEDULERS = ("fifo", "asha")
#: How long reaching a cluster address may take before it is reported unreachable.
CONNECT_TIMEOUT_S = 5.0


class ClusterError(VantageError):
    """The Ray cluster cannot be reached or cannot run this sweep (e.g. several nodes and no shared storage)."""


@dataclass
class EngineOptions:
    """Where and how trials run.

    Attributes:
        address: a Ray cluster (``auto``, ``HOST:PORT``); ``None``: ``RAY_ADDRESS``, else a local instance.
        storage: a folder every node mounts at the same path, for the trials' runs and Tune's state (required
            when the cluster has more than one node); ``None``: the sweep's ``--out``.
        cpus_per_trial: CPUs Tune reserves per trial; also its PyTorch and BLAS threads.
        max_concurrent: trials at once (0: as many as the cluster's CPUs allow).
        scheduler: ``fifo`` (every trial to the end) or ``asha`` (early stopping on the reported metric).
        grace_steps: ASHA's first milestone (steps a trial trains before it can be stopped).
        reduction_factor: ASHA keeps 1 in ``reduction_factor`` trials at each milestone.
        num_cpus: CPUs of a local instance (``None``: the machine's).
        dashboard: start Ray's dashboard with a local instance.
    """

    address: str | None = None
    storage: Path | None = None
    cpus_per_trial: int = 1
    max_concurrent: int = 0
    scheduler: str = "fifo"
    grace_steps: int | None = None
    reduction_factor: int = 3
    num_cpus: int | None = None
    dashboard: bool = False

    def validate(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise InvalidArgumentError(f"scheduler {self.scheduler!r} is unknown; allowed: {', '.join(SCHEDULERS)}")
        for name in ("cpus_per_trial", "reduction_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "reduction_factor"
                                                                                 else 1):
                raise InvalidArgumentError(f"{name}={value!r} must be an integer >= "
                                           f"{2 if name == 'reduction_factor' else 1}")
        if self.max_concurrent < 0:
            raise InvalidArgumentError(f"max_concurrent={self.max_concurrent!r} must be >= 0 (0: as CPUs allow)")


@dataclass
class TrialOutcome:
    """How one trial ended in this call: ``finished`` (with its result), ``stopped`` (early, by the
    scheduler), ``failed`` (with its error) or ``unfinished`` (interrupted)."""

    trial: Trial
    status: str
    result: dict[str, Any] | None = None
    error: str | None = None
    steps: int | None = None
    score: float | None = None


def worker_env(cpus_per_trial: int) -> dict[str, str]:
    """Environment variables every Ray worker gets: the renderer and one BLAS/OpenMP pool of the trial's size."""
    threads = str(cpus_per_trial)
    return {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads, "VANTAGE_TORCH_THREADS": threads}


def _check_reachable(address: str) -> None:
    """Refuse an address nothing listens on, quickly (``ray.init`` would retry it for minutes)."""
    if address in ("auto", "local") or address.startswith(("ray://", "anyscale://")):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--address {address!r} must be HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start its head with "
                           "`ray start --head` (docs/sweeps.md), check the address and port, or leave --address "
                           "out to run the sweep on this machine") from None


def preflight(options: EngineOptions) -> None:
    """Everything about the engine that can be checked before a sweep writes anything: Ray is installed, the
    options are sane, and a cluster address answers."""
    options.validate()
    try:
        import ray  # noqa: F401
    except ImportError:
        raise InvalidArgumentError("vantage sweep runs on Ray Tune, which is not installed: "
                                   "pip install 'vantage[ray]'") from None
    address = options.address or os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address)


@contextlib.contextmanager
def connect(options: EngineOptions) -> Iterator[Any]:
    """Ray, initialised for a sweep (reused when this process already started it); yields the ``ray`` module.

    Raises:
        ClusterError: the address cannot be reached, or Ray refuses to connect.
        InvalidArgumentError: Ray is not installed (with the install command).
    """
    try:
        import ray
    except ImportError:
        raise InvalidArgumentError("vantage sweep runs on Ray Tune, which is not installed: "
                                   "pip install 'vantage[ray]'") from None
    if ray.is_initialized():
        yield ray
        return
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_reachable(address)
    runtime_env = {"env_vars": worker_env(options.cpus_per_trial)}
    kwargs: dict[str, Any] = {"runtime_env": runtime_env, "logging_level": "WARNING", "log_to_driver": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=options.num_cpus, include_dashboard=options.dashboard)
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {' '.join(str(exc).split())}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def start_local(num_cpus: int, cpus_per_trial: int = 1) -> Any:
    """Start a local Ray for this process and keep it until the process exits (sweeps then reuse it); a test
    session starts one instead of one per sweep (a local instance takes seconds and over a gigabyte)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"env_vars": worker_env(cpus_per_trial)})
    return ray


def _alive_nodes(ray: Any) -> list[dict[str, Any]]:
    return [node for node in ray.nodes() if node.get("Alive")]


def check_storage(ray: Any, root: Path, storage: Path | None) -> None:
    """On a cluster of several nodes, every node must see the sweep's folder (``--storage``).

    Raises:
        ClusterError: several nodes and no ``--storage``, or a node that cannot see the folder.
    """
    nodes = _alive_nodes(ray)
    if len(nodes) <= 1:
        return
    if storage is None:
        raise ClusterError(f"the Ray cluster has {len(nodes)} nodes, so trials run on several machines: pass "
                           "--storage DIR, a folder every node mounts at the same path (e.g. NFS), for the runs")
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = root / f".storage-check-{uuid.uuid4().hex}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("vantage")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return Path(path).is_file()

    try:
        checks = {node["NodeManagerAddress"]: sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node["NodeID"], soft=False)).remote(str(marker)) for node in nodes}
        blind = [host for host, ref in checks.items() if not ray.get(ref, timeout=120)]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise ClusterError(f"--storage {storage} is not shared: node(s) {', '.join(blind)} cannot see {root}; mount "
                           "it at the same path on every node")


def _trainable(config: dict[str, Any], trials: Mapping[str, Trial], runs: str, settings: EvalSettings) -> None:
    """A Tune function trainable: one trial, reporting to Tune (runs in a Ray worker)."""
    import torch
    from ray import tune

    torch.set_num_threads(int(os.environ.get("VANTAGE_TORCH_THREADS", "1")))
    trial = trials[config["trial"]]
    run_trial(trial, Path(runs) / trial.name, settings, report=tune.report, log=lambda line: None)


def _error_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    text = " ".join(str(cause).split()) or type(cause).__name__
    return f"{type(cause).__name__}: {text}"[:500]


def run_trials(trials: list[Trial], runs_dir: Path, tune_dir: Path, settings: EvalSettings, options: EngineOptions,
               log: Callable[[str], None] = print) -> tuple[list[TrialOutcome], dict[str, Any]]:
    """Run ``trials`` on Ray Tune (Ray must be connected: :func:`connect`); return their outcomes and timings.

    A trial that raises is recorded as failed and the others go on; the scheduler may stop trials early; a
    Ctrl-C stops the running trials at once (their last checkpoints stay) and leaves the rest unfinished.
    """
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    # Each trial writes its own TensorBoard and files; Tune's CSV and TensorBoardX copies only cost time per trial.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

    if not trials:
        return [], {"wall_s": 0.0}
    by_name = {t.name: t for t in trials}
    steps = max(t.config.steps for t in trials)
    stopped: dict[str, dict[str, Any]] = {}
    if options.scheduler == "asha":
        grace = options.grace_steps or settings.report_every or max(1, steps // 9)

        class RecordingASHA(ASHAScheduler):
            """ASHA that remembers which trials it stopped before their last step (and where)."""

            def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
                decision = super().on_trial_result(tune_controller, trial, result)
                if decision == TrialScheduler.STOP and not result.get("final") and result.get("timesteps", 0) < steps:
                    stopped[trial.config["trial"]] = {"steps": result.get("timesteps"), "score": result.get("score")}
                return decision

        scheduler: Any = RecordingASHA(time_attr="timesteps", max_t=steps, grace_period=grace,
                                       reduction_factor=options.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, trials=by_name, runs=str(Path(runs_dir).resolve()), settings=settings),
        {"cpu": options.cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(list(by_name))},
        tune_config=tune.TuneConfig(metric="score", mode=settings.mode, scheduler=scheduler,
                                    max_concurrent_trials=options.max_concurrent or None,
                                    # A reused worker keeps torch, SB3 and MuJoCo imported (seconds per trial);
                                    # ASHA stops trials mid-run, so their workers are not reused.
                                    reuse_actors=options.scheduler == "fifo"),
        run_config=tune.RunConfig(name=time.strftime("call-%Y%m%d-%H%M%S"), storage_path=str(Path(tune_dir).resolve()),
                                  verbose=0, failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                                  callbacks=[JsonLoggerCallback()]),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - started
    outcomes = []
    seen = set()
    busy = 0.0
    for result in grid:
        name = (result.config or {}).get("trial")
        if name not in by_name:
            continue
        seen.add(name)
        trial = by_name[name]
        metrics = result.metrics or {}
        finished = cached_result(Path(runs_dir) / name, trial, settings)
        if finished is not None:
            outcomes.append(TrialOutcome(trial, "finished", finished))
        elif result.error is not None:
            outcomes.append(TrialOutcome(trial, "failed", error=_error_line(result.error)))
        elif name in stopped:
            outcomes.append(TrialOutcome(trial, "stopped", steps=stopped[name]["steps"], score=stopped[name]["score"]))
        else:
            outcomes.append(TrialOutcome(trial, "unfinished", steps=metrics.get("timesteps")))
        busy += float(metrics.get("time_total_s") or 0.0)
    outcomes += [TrialOutcome(by_name[n], "unfinished") for n in by_name if n not in seen]
    log(f"{len(trials)} trial(s) on Ray Tune in {wall:.1f} s")
    # Tune's own clock of each trial (start to its last report, early-stopped ones included).
    return outcomes, {"wall_s": round(wall, 3), "tune_trial_s_sum": round(busy, 3)}
