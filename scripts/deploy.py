"""``vantage export``, ``vantage deploy`` (``run`` is the default subcommand, ``build``) and ``vantage bench
deploy``: click only; the work is in :mod:`agents.export_bundle` and the lean :mod:`deploy` package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from scripts.options import ErrorReportingGroup, overwrite_option

PRECISION = click.Choice(["fp32", "fp16", "int8"])


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The bundle folder to write.")
@click.option("--precision", type=PRECISION, default="fp32", show_default=True,
              help="fp16 / int8 add converted graphs (int8: Q/DQ, calibrated on simulator inputs); the runner uses "
                   "them by default.")
@click.option("--samples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Environment observations parity is measured on.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=256, show_default=True,
              help="Further observations (other episodes) int8 graphs are calibrated on.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the episodes the observations come from.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's parity figures as JSON.")
@overwrite_option("an earlier bundle in --out")
def export_cmd(run_dir: Path, out: Path, precision: str, samples: int, calibration_samples: int, seed: int,
               threads: int, as_json: bool, overwrite: bool) -> None:
    """Export a trained PPO or Rainbow run, and its task's perception models, as a deployment bundle."""
    import torch

    from agents.export_bundle import export_bundle

    torch.set_num_threads(threads)
    manifest = export_bundle(run_dir, out, precision=precision, samples=samples,
                             calibration_samples=calibration_samples, seed=seed, overwrite=overwrite, threads=threads,
                             log=lambda line: click.echo(f"export: {line}", err=True))
    if as_json:
        click.echo(json.dumps({"bundle": str(out), "precision": precision, "parity": manifest["parity"]}, indent=2))
        return
    click.echo(f"bundle {out}: {manifest['task']['name']} ({manifest['source_run']['algo']}), {precision}; files: "
               f"{', '.join(sorted(manifest['files']))}")
    for level, figures in manifest["parity"].items():
        if level == "targets":
            continue
        for model, p in figures.items():
            parts = [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in p.items()
                     if k in ("samples", "max_abs_diff", "argmax_agreement", "predict_agreement", "action_agreement",
                              "relative_mean_abs_diff", "max_score_regret")]
            click.echo(f"  parity {level} {model}: {', '.join(parts)}")


class DeployGroup(ErrorReportingGroup):
    """``vantage deploy BUNDLE ...`` runs a bundle (the ``run`` subcommand); ``vantage deploy build`` builds
    engines."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("deploy", cls=DeployGroup)
def deploy() -> None:
    """Run a deployment bundle on frames (`vantage deploy BUNDLE --source ...`), or build its TensorRT engines
    (`vantage deploy build BUNDLE`)."""


@deploy.command("run")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="sim:ENV_ID (closed loop), video:PATH, camera:N or a GStreamer "
                                             "pipeline string ('... ! appsink').")
@click.option("--sink", default=None, help="stdout (JSON lines; default for frames), none (default for sim:), "
                                           "udp:HOST:PORT or module:function.")
@click.option("--episodes", type=click.IntRange(min=1), default=20, show_default=True, help="sim: episodes.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="sim: seed the episode seeds derive from, as in `vantage eval`; also seeds sampling.")
@click.option("--actions", type=click.Choice(["argmax", "sample"]), default=None,
              help="Most likely or sampled actions (default: how the task's agent is meant to run).")
@click.option("--precision", type=PRECISION, default=None, help="Default: the bundle's.")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime", show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="ONNX Runtime threads per model (0 = all cores).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after this many frames.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="sim: step cap per episode.")
@click.option("--on-mismatch", type=click.Choice(["resize", "reject"]), default=None,
              help="Frames of another size: resize or reject (default: the bundle's).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--summary", type=click.Path(path_type=Path), default=None, help="Also write the summary JSON here.")
@overwrite_option("the --summary file")
def deploy_run(bundle: Path, source: str, sink: str | None, episodes: int, seed: int, actions: str | None,
               precision: str | None, backend: str, threads: int, max_frames: int | None, max_steps: int | None,
               on_mismatch: str | None, as_json: bool, summary: Path | None, overwrite: bool) -> None:
    """Run BUNDLE on a source's frames and send each decision to a sink, with per-stage latency."""
    from deploy.cli import run_command

    code = run_command(bundle, source, sink=sink, episodes=episodes, seed=seed, actions=actions,
                       precision=precision, backend=backend, threads=threads, max_frames=max_frames,
                       max_steps=max_steps, on_mismatch=on_mismatch, as_json=as_json, summary=summary,
                       overwrite=overwrite, echo=click.echo)
    if code:
        sys.exit(code)


@deploy.command("build")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--precision", type=PRECISION, default=None, help="Default: the bundle's.")
@overwrite_option("engines already built on this device")
def deploy_build(bundle: Path, precision: str | None, overwrite: bool) -> None:
    """Build BUNDLE's TensorRT engines on this device (prints the equivalent trtexec commands first)."""
    from deploy.cli import build_command

    build_command(bundle, precision, overwrite, echo=click.echo)


@click.command("deploy")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--iterations", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Policy inferences timed per bundle and precision.")
@click.option("--episodes", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also run this many closed-loop sim episodes per bundle (runner FPS with its perception).")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--tensorrt", is_flag=True, help="Also time the TensorRT engines `vantage deploy build` made here.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the JSON here.")
@overwrite_option("the --out file")
def bench_deploy(bundles: tuple[Path, ...], iterations: int, episodes: int, seed: int, tensorrt: bool,
                 as_json: bool, out: Path | None, overwrite: bool) -> None:
    """Policy inferences/s at batch 1 on one ONNX Runtime thread, per precision, and the closed-loop runner FPS."""
    from common.io import atomic_write_json, prepare_output
    from deploy.bench import bench_bundle

    if out is not None:
        prepare_output(out.parent, [out.name], overwrite=overwrite)
    results = [bench_bundle(b, iterations, episodes, seed, tensorrt, log=lambda line: click.echo(line, err=True))
               for b in bundles]
    if out is not None:
        atomic_write_json(out, results)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        for precision, p in r["policy"].items():
            click.echo(f"{r['bundle']} ({r['task']}) policy {precision}: {p['inferences_per_s']:.0f} inferences/s "
                       f"(p50 {p['p50_ms']:.3f} ms), ratio to the 2000/s target {p['inferences_per_s'] / 2000:.2f}")
        for precision, p in r.get("tensorrt", {}).items():
            onnx = r["policy"][precision]["inferences_per_s"]
            click.echo(f"{r['bundle']} TensorRT {precision}: {p['inferences_per_s']:.0f} inferences/s, "
                       f"{p['inferences_per_s'] / onnx:.2f}x ONNX Runtime")
        if r.get("closed_loop"):
            c = r["closed_loop"]
            click.echo(f"{r['bundle']} closed loop, {c['episodes']} episodes: runner {c['runner_fps']:.0f} FPS "
                       f"(ratio to the 60 FPS target {c['runner_fps'] / 60:.2f})")
