"""``vantage export``: a trained run -> a deployment bundle (policy + the task's perception models), with parity.

Steps: check the run and the output folder (nothing is written before both pass); export the task's perception
models (its spec's :class:`envs.specs.BundleSpec`) and open them in the bundle's own lean chain; build the
run's environment with that chain as its perception pipeline; export the policy graph
(:mod:`agents.export`); draw observations from the environment with the agent acting; measure parity; for
``fp16`` convert every graph (fp32 inputs and outputs kept) and measure again; for ``int8`` quantize every graph
to Q/DQ form calibrated on held-out simulator inputs (saved in ``calibration/``) and measure the action
agreement on ONNX Runtime; write the manifest with every file's SHA-256. The bundle is assembled in a temporary
folder beside ``out`` and renamed into place, so an interrupted export leaves no half bundle.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.export import (
    collect_observations,
    describe_actions,
    export_policy,
    policy_inputs,
    policy_parity,
    reference_outputs,
    stack_observations,
)
from common.errors import InvalidArgumentError, OutputExistsError, check_choice
from common.io import atomic_write_json
from deploy.bundle import BUNDLE_FORMAT, MANIFEST, PRECISIONS, SCHEMA_VERSION, file_record
from envs.specs import TaskSpec, resolve

__all__ = ["PARITY_TARGETS", "check_bundle_output", "export_bundle"]

#: Export parity targets per precision: max |Δ output| (fp32, fp16) and the least action agreement.
PARITY_TARGETS: dict[str, dict[str, float]] = {"fp32": {"max_abs_diff": 1e-4, "agreement": 1.0},
                                               "fp16": {"max_abs_diff": 1e-2}, "int8": {"agreement": 0.99}}


def check_bundle_output(out: Path, overwrite: bool) -> None:
    """``out`` may receive a bundle: new, empty, or (with ``overwrite``) an earlier bundle.

    Raises:
        OutputExistsError: ``out`` is a file, holds a bundle and ``overwrite`` is false, or holds anything else.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputExistsError(f"--out {out} is a file; choose a folder for the bundle")
    if not any(out.iterdir()):
        return
    manifest = out / MANIFEST
    is_bundle = False
    with contextlib.suppress(OSError, ValueError):
        is_bundle = json.loads(manifest.read_text()).get("format") == BUNDLE_FORMAT
    if not is_bundle:
        raise OutputExistsError(f"--out {out} holds other files (not a deployment bundle); choose a new or empty "
                                f"folder")
    if not overwrite:
        raise OutputExistsError(f"--out {out} already holds a bundle; pass --overwrite to replace it, or choose "
                                f"another folder")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("vantage", "torch", "stable-baselines3", "onnx", "onnxruntime", "numpy",
                    "opencv-python-headless", "gymnasium", "mujoco"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[package] = importlib.metadata.version(package)
    return out


def _perception(spec: TaskSpec, env_kwargs: dict[str, Any], stage: Path) -> tuple[dict[str, Any] | None, Any]:
    """Export the task's perception models into ``stage``; returns the manifest entry and the loaded learners."""
    bundle = spec.bundle
    if not bundle.perception:
        return None, {}
    from perception.learner import load_model

    learners = {name: load_model(folder) for name, folder in bundle.perception.items()}
    decode = resolve(bundle.chain).describe(learners)
    models = []
    for name, learner in learners.items():
        learner.export(stage / f"{name}.onnx")
        spec_in, spec_out = learner.input_specs()[0], learner.output_spec()[0]
        models.append({"name": name, "role": getattr(type(learner), "role", ""), "model": learner.name,
                       "files": {"fp32": f"{name}.onnx"},
                       "input": {"name": spec_in.name, "dtype": spec_in.dtype, "layout": "NCHW",
                                 "shape": list(spec_in.shape)},
                       "output": spec_out.name, "preprocessing": spec_in.preprocessing.to_dict(),
                       "decode": decode[name], "source": str(bundle.perception[name]),
                       "metrics": {k: v for k, v in learner.metrics.items() if isinstance(v, int | float)}
                       if isinstance(getattr(learner, "metrics", None), dict) else {}})
    every_step = bool(bundle.every_step_when) and all(env_kwargs.get(k) == v for k, v in bundle.every_step_when.items())
    entry = {"chain": bundle.chain, "sim_argument": bundle.sim_argument, "frames": bundle.frames,
             "trigger": {"actions": list(bundle.trigger_actions), "every_step": every_step}, "models": models}
    return entry, learners


def _perception_parity(learners: dict[str, Any], entry: dict[str, Any], recorded: dict[str, list[np.ndarray]],
                       stage: Path, threads: int) -> dict[str, Any]:
    """ONNX Runtime against the torch learner on the inputs the chain saw in the simulator."""
    from deploy.inference import OnnxSession
    from perception.export import max_abs_difference

    out = {}
    for model in entry["models"]:
        batches = recorded.get(model["name"]) or []
        if not batches:
            out[model["name"]] = {"samples": 0, "note": "the chain never ran on this model during the rollout"}
            continue
        x = np.concatenate(batches)[:256]
        ref = learners[model["name"]].run_network({model["input"]["name"]: x})
        got = OnnxSession(stage / model["files"]["fp32"], threads=threads).run({model["input"]["name"]: x})
        out[model["name"]] = {"samples": len(x), "max_abs_diff": max(max_abs_difference(ref, got).values())}
    return out


def _calibration_batches(feeds: dict[str, np.ndarray], batch: int = 16) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(feeds.values())))
    return [{k: v[i:i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]


def export_bundle(run_dir: str | Path, out: str | Path, *, precision: str = "fp32", samples: int = 1000,
                  calibration_samples: int = 256, seed: int = 0, overwrite: bool = False, threads: int = 1,
                  log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Export a trained PPO or Rainbow run (and its task's perception models) as a deployment bundle.

    Args:
        run_dir: a training run (``vantage train ... --out RUN``) or a shipped agent folder.
        out: the bundle folder (new, empty, or an earlier bundle with ``overwrite``).
        precision: ``fp32``; ``fp16`` or ``int8`` add converted graphs, which the runner then uses by default.
        samples: environment observations parity is measured on (the targets ask for >= 1000).
        calibration_samples: further observations (other episodes) int8 graphs are calibrated on.
        seed: seed of the episodes the observations come from (apart from the evaluation seeds).
        overwrite: replace an earlier bundle in ``out``.
        threads: ONNX Runtime threads for the parity checks.
        log: progress lines.

    Returns:
        The manifest written.

    Raises:
        InvalidArgumentError: an unsupported algorithm or observation / action space, or a bad setting.
        OutputExistsError: ``out`` holds a bundle (without ``overwrite``) or other files.
        CheckpointError: ``run_dir`` is not a run or holds no model.
    """
    from agents.training import load_agent, load_config

    check_choice("precision", precision, PRECISIONS)
    for name, value in (("samples", samples), ("calibration_samples", calibration_samples), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{name}={value!r} must be an integer >= 1")
    run_dir, out = Path(run_dir), Path(out)
    config = load_config(run_dir)
    check_choice("algorithm of the run (exportable)", config.algo, ("ppo", "rainbow"))
    check_bundle_output(out, overwrite)
    spec = config.spec
    _, model = load_agent(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    stage.chmod(0o755)  # mkdtemp makes it private; the bundle is copied to robots by other users
    try:
        manifest = _build(run_dir, config, spec, model, stage, precision, samples, calibration_samples, seed,
                          threads, log)
        _move_into_place(stage, out, overwrite)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def _build(run_dir: Path, config: Any, spec: TaskSpec, model: Any, stage: Path, precision: str, samples: int,
           calibration_samples: int, seed: int, threads: int, log: Callable[[str], None]) -> dict[str, Any]:
    import envs  # noqa: F401  (registers the environments)
    from deploy.inference import OnnxSession
    from perception.quantization import compare_onnx, convert_float16, qdq_node_counts, quantize_onnx

    perception, learners = _perception(spec, config.env_kwargs, stage)
    chain = None
    make_kwargs = dict(config.env_kwargs)
    if perception is not None:
        sessions = {m["name"]: OnnxSession(stage / m["files"]["fp32"], threads=threads) for m in perception["models"]}
        chain = resolve(perception["chain"])(sessions, perception["models"], record=True)
        make_kwargs[perception["sim_argument"]] = chain
    env = gym.make(config.env_id, **make_kwargs)
    try:
        log(f"exporting the {config.algo} policy of {run_dir}")
        policy = export_policy(model, config.algo, env, stage / "policy.onnx")
        policy["files"] = {"fp32": "policy.onnx"}
        actions = describe_actions(config.algo, env, "sample" if spec.agent_sampled else "argmax")
        inputs = policy_inputs(model, env.observation_space)
        log(f"drawing {samples} + {calibration_samples} observations from {config.env_id}")
        observations = collect_observations(model, env, samples + calibration_samples, seed)
    finally:
        env.close()
    check, calib = observations[:samples], observations[samples:]
    reference = reference_outputs(model, config.algo, check)
    parity: dict[str, Any] = {"fp32": {"policy": policy_parity(stage / "policy.onnx", inputs, check, reference,
                                                                threads)}}
    if perception is not None:
        parity["fp32"].update(_perception_parity(learners, perception, chain.recorded, stage, threads))
    entries = [("policy", policy)] + [(m["name"], m) for m in (perception or {}).get("models", [])]
    calibration: dict[str, Any] = {}
    if precision == "fp16":
        for name, entry in entries:
            target = f"{name}.fp16.onnx"
            convert_float16(stage / entry["files"]["fp32"], stage / target)
            entry["files"]["fp16"] = target
        parity["fp16"] = {"policy": policy_parity(stage / "policy.fp16.onnx", inputs, check, reference, threads)}
        for model_entry in (perception or {}).get("models", []):
            batches = chain.recorded.get(model_entry["name"]) or []
            if batches:
                feeds = [{model_entry["input"]["name"]: b} for b in batches[:64]]
                parity["fp16"][model_entry["name"]] = compare_onnx(stage / model_entry["files"]["fp32"],
                                                                   stage / model_entry["files"]["fp16"], feeds,
                                                                   threads=threads)
    if precision == "int8":
        (stage / "calibration").mkdir()
        feeds = stack_observations(calib, inputs)
        np.savez_compressed(stage / "calibration" / "policy.npz", **feeds)
        calibration["policy"] = {"file": "calibration/policy.npz", "samples": len(calib),
                                 "source": f"{config.env_id}, the agent acting (sampled) from seeded starts"}
        quantize_onnx(stage / "policy.onnx", stage / "policy.int8.onnx", _calibration_batches(feeds))
        policy["files"]["int8"] = "policy.int8.onnx"
        parity["int8"] = {"policy": {**policy_parity(stage / "policy.int8.onnx", inputs, check, reference, threads),
                                     "qdq_nodes": qdq_node_counts(stage / "policy.int8.onnx")}}
        for model_entry in (perception or {}).get("models", []):
            name = model_entry["name"]
            batches = chain.recorded.get(name) or []
            if not batches:
                raise InvalidArgumentError(f"no {name} inputs were seen in {samples + calibration_samples} simulator "
                                           f"steps to calibrate its int8 graph; export with more --samples")
            x = np.concatenate(batches)
            half = max(len(x) // 2, 1)
            np.savez_compressed(stage / "calibration" / f"{name}.npz", **{model_entry["input"]["name"]: x[:half]})
            calibration[name] = {"file": f"calibration/{name}.npz", "samples": half,
                                 "source": f"{name} inputs the chain saw in {config.env_id}"}
            quantize_onnx(stage / model_entry["files"]["fp32"], stage / f"{name}.int8.onnx",
                          _calibration_batches({model_entry["input"]["name"]: x[:half]}, 8))
            model_entry["files"]["int8"] = f"{name}.int8.onnx"
            held_out = x[half:] if len(x) > half else x
            parity["int8"][name] = compare_onnx(stage / model_entry["files"]["fp32"], stage / f"{name}.int8.onnx",
                                                _calibration_batches({model_entry["input"]["name"]: held_out}, 8),
                                                threads=threads)
    parity["targets"] = PARITY_TARGETS
    files = {p.relative_to(stage).as_posix(): file_record(p) for p in sorted(stage.rglob("*")) if p.is_file()}
    manifest = {
        "format": BUNDLE_FORMAT, "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "task": {"name": spec.name, "env_id": config.env_id, "env_kwargs": config.env_kwargs,
                 "eval_max_steps": spec.eval_max_steps},
        "source_run": {"path": str(run_dir), "algo": config.algo, "preset": config.preset,
                       "num_timesteps": int(getattr(model, "num_timesteps", 0))},
        "precision": precision, "policy": policy, "actions": actions, "perception": perception,
        "calibration": calibration, "parity": parity, "versions": _versions(), "files": files,
    }
    atomic_write_json(stage / MANIFEST, manifest)
    return manifest


def _move_into_place(stage: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished bundle to ``out`` (an earlier bundle there is replaced only with ``overwrite``)."""
    if out.exists() and any(out.iterdir()):
        check_bundle_output(out, overwrite)
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.exists():
            out.rmdir()
        stage.rename(out)
