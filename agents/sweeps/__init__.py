"""Reward-shaping and training sweeps on Ray Tune (``vantage sweep``; ``docs/sweeps.md``).

:mod:`~agents.sweeps.space` turns grids, YAML files and sampled searches into trials (ordinary training runs);
:mod:`~agents.sweeps.trials` trains, evaluates and reports one; :mod:`~agents.sweeps.engine` runs them on Ray
Tune (locally or on a cluster, FIFO or ASHA); :mod:`~agents.sweeps.sweep` skips what is done and writes the
summary (:mod:`~agents.sweeps.summary`). Ray is imported only when trials run.
"""

from agents.sweeps.engine import SCHEDULERS, ClusterError, EngineOptions
from agents.sweeps.space import SweepSpace, Trial, load_yaml, resolve_axis
from agents.sweeps.sweep import SPEC_FILE, Sweep, run_sweep
from agents.sweeps.trials import EVAL_FILE, STATUS_FILE, EvalSettings, run_trial

__all__ = ["EVAL_FILE", "SCHEDULERS", "SPEC_FILE", "STATUS_FILE", "ClusterError", "EngineOptions", "EvalSettings",
           "Sweep", "SweepSpace", "Trial", "load_yaml", "resolve_axis", "run_sweep", "run_trial"]
