"""The runner's command line, shared by ``vantage deploy`` (click, :mod:`scripts.deploy`) and the robot's
``python -m deploy`` (argparse, here), which needs none of Vantage's training dependencies.

``python -m deploy BUNDLE --source camera:0 --sink udp:192.168.1.10:9000``
``python -m deploy build BUNDLE --precision fp16``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import OutputExistsError, VantageError
from common.io import atomic_write_json, json_default

__all__ = ["build_command", "main", "run_command"]


def _check_summary_path(path: Path | None, overwrite: bool) -> None:
    if path is None:
        return
    if path.is_dir():
        raise OutputExistsError(f"--summary {path} is a folder; give a file name (e.g. {path / 'deploy.json'})")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"--summary {path} exists; pass --overwrite to replace it")


def run_command(bundle: str | Path, source: str, *, sink: str | None = None, episodes: int = 20, seed: int = 0,
                actions: str | None = None, precision: str | None = None, backend: str = "onnxruntime",
                threads: int = 1, max_frames: int | None = None, max_steps: int | None = None,
                on_mismatch: str | None = None, as_json: bool = False, summary: str | Path | None = None,
                overwrite: bool = False, echo: Any = print) -> int:
    """``vantage deploy BUNDLE --source ...``: run, print the summary (a table, or JSON), write ``summary``.

    Returns:
        The exit code: 0, or 130 after a Ctrl-C (the summary of what ran is still printed and written).
    """
    from deploy.io import open_sink, parse_source
    from deploy.latency import LatencyStats
    from deploy.runner import open_deployment, run_sim, run_stream

    parsed = parse_source(source)
    summary_path = Path(summary) if summary is not None else None
    _check_summary_path(summary_path, overwrite)
    deployment = open_deployment(bundle, precision=precision, backend=backend, threads=threads, actions=actions,
                                 on_mismatch=on_mismatch)
    out_sink = open_sink(sink or ("none" if parsed.kind == "sim" else "stdout"))
    if parsed.kind == "sim":
        result = run_sim(deployment, parsed.target, episodes, seed, max_steps, sink=out_sink)
    else:
        result = run_stream(deployment, parsed, out_sink, max_frames, seed)
    if summary_path is not None:
        atomic_write_json(summary_path, result)
    if as_json:
        compact = out_sink.name == "stdout"  # one JSON object per line on a stream of JSON lines
        echo(json.dumps(result, default=json_default, indent=None if compact else 2))
    else:
        lines = [f"{result.get('task', deployment.bundle.task['name'])}: {deployment.bundle.root} on "
                 f"{parsed.kind}:{parsed.target} ({deployment.precision}, {deployment.backend}, "
                 f"{deployment.policy.mode} actions)"]
        if parsed.kind == "sim":
            from envs.specs import task_of_env

            evaluator = task_of_env(parsed.target).make_evaluator()
            lines.append(evaluator.format_table([("bundle", {**result, "episodes": result["episodes"]})]))
        else:
            lines.append(f"{result['frames']} frames, {result['rejected_frames']} rejected; stopped: "
                         f"{result['stopped']}; actions: {result['actions']}")
        lines.append(LatencyStats.format(result["latency"]))
        print("\n".join(lines), file=sys.stderr if out_sink.name == "stdout" else sys.stdout)
    return 130 if str(result.get("stopped", "")).startswith("interrupted") else 0


def build_command(bundle: str | Path, precision: str | None = None, overwrite: bool = False,
                  echo: Any = print) -> int:
    """``vantage deploy build``: print the ``trtexec`` commands, then build the engines with TensorRT's API.

    Raises:
        BackendUnavailableError: TensorRT (or CUDA's bindings, or a GPU) is missing: nothing is built.
    """
    from deploy.bundle import check_precision, load_bundle
    from deploy.tensorrt import build_engines, trtexec_commands

    loaded = load_bundle(bundle)
    precision = check_precision(loaded, precision)
    echo(f"# the same engines with trtexec, in {loaded.root} on the target device:")
    for command in trtexec_commands(loaded, precision):
        echo(command)
    for path in build_engines(loaded, precision, overwrite):
        echo(f"built {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deploy``: the runner without click or the rest of Vantage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["build"]:
        parser = argparse.ArgumentParser(prog="python -m deploy build", description=build_command.__doc__)
        parser.add_argument("bundle")
        parser.add_argument("--precision", choices=("fp32", "fp16", "int8"))
        parser.add_argument("--overwrite", action="store_true")
        args = parser.parse_args(argv[1:])
        call = lambda: build_command(args.bundle, args.precision, args.overwrite)  # noqa: E731
    else:
        parser = argparse.ArgumentParser(prog="python -m deploy", description="Run a deployment bundle on frames.")
        parser.add_argument("bundle")
        parser.add_argument("--source", required=True, help="sim:ENV_ID, video:PATH, camera:N or a GStreamer pipeline")
        parser.add_argument("--sink", help="stdout, none, udp:HOST:PORT or module:function")
        parser.add_argument("--episodes", type=int, default=20)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--actions", choices=("argmax", "sample"))
        parser.add_argument("--precision", choices=("fp32", "fp16", "int8"))
        parser.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime")
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--max-frames", type=int)
        parser.add_argument("--max-steps", type=int)
        parser.add_argument("--on-mismatch", choices=("resize", "reject"))
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--summary")
        parser.add_argument("--overwrite", action="store_true")
        args = parser.parse_args(argv)
        call = lambda: run_command(  # noqa: E731
            args.bundle, args.source, sink=args.sink, episodes=args.episodes, seed=args.seed, actions=args.actions,
            precision=args.precision, backend=args.backend, threads=args.threads, max_frames=args.max_frames,
            max_steps=args.max_steps, on_mismatch=args.on_mismatch, as_json=args.json, summary=args.summary,
            overwrite=args.overwrite)
    try:
        return call()
    except VantageError as exc:
        print(f"Error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
