"""``vantage fusion pretrain|eval`` (the self-supervised fusion encoder) and ``vantage bench fusion``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from scripts.options import ErrorReportingGroup, overwrite_option, split_list


@click.group(cls=ErrorReportingGroup)
def fusion() -> None:
    """The sensor-fusion encoder of the peg-insertion task (docs/fusion.md)."""


@fusion.command("pretrain")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="fusion dataset folder (vantage data fusion)")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="model folder")
@click.option("--fusion", "fusion_name", default="concat", show_default=True, help="concat, sum or product")
@click.option("--objectives", default="contact,next_pose,alignment,reconstruction,compensation", show_default=True,
              help="comma-separated self-supervised objectives")
@click.option("--modalities", default="rgb,depth,wrench,proprio", show_default=True)
@click.option("--latent", type=int, default=128, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads")
@overwrite_option("the model in --out")
@click.option("--no-progress", is_flag=True, help="print no progress")
def pretrain(data: Path, out: Path, fusion_name: str, objectives: str, modalities: str, latent: int, epochs: int,
             batch_size: int, lr: float, seed: int, threads: int, overwrite: bool, no_progress: bool) -> None:
    """Fit the fusion encoder on a dataset, calibrate its corruption detection, save it and export ONNX.

    The settings, the dataset and --out are checked before training starts.
    """
    import time

    import torch

    from perception.fusion import FusionDataset, FusionEncoderLearner
    from perception.manifest import check_save_dir

    learner = FusionEncoderLearner(modalities=split_list(modalities, "--modalities"), fusion=fusion_name,
                                   latent=latent, objectives=split_list(objectives, "--objectives"), seed=seed)
    check_save_dir(out, overwrite)
    dataset = FusionDataset.load(data)
    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    summary = learner.fit(dataset, epochs=epochs, batch_size=batch_size, lr=lr, progress=not no_progress)
    learner.metrics["fit_seconds"] = round(time.perf_counter() - start, 1)
    learner.metrics["eval"] = learner.eval(dataset, samples=500)
    learner.save(out, overwrite=overwrite)
    learner.export(out)
    click.echo(json.dumps({"out": str(out), "fit_seconds": learner.metrics["fit_seconds"],
                           "first_epoch": summary["history"][0], "last_epoch": summary["history"][-1],
                           "eval": learner.metrics["eval"]}, indent=2))


@fusion.command("calibrate")
@click.argument("model_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="the dataset the model was fitted on (its held-out episodes calibrate)")
@click.option("--false-positive-rate", type=float, default=0.02, show_default=True)
def calibrate(model_dir: Path, data: Path, false_positive_rate: float) -> None:
    """Recalibrate a saved fusion encoder's corruption detection on clean held-out data, in place."""
    from perception.fusion import FusionDataset, FusionEncoderLearner
    from perception.learner import load_model

    model = load_model(model_dir)
    if not isinstance(model, FusionEncoderLearner):
        raise click.BadParameter(f"{model_dir} holds a {model.name} model, not a fusion_encoder",
                                 param_hint="MODEL_DIR")
    detection = model.calibrate_on(FusionDataset.load(data), false_positive_rate=false_positive_rate)
    model.metrics["eval"] = model.eval(FusionDataset.load(data), samples=500)
    model.save(model_dir, overwrite=True)
    model.export(model_dir)
    click.echo(json.dumps({"detection": detection, "eval": model.metrics["eval"]}, indent=2))


@fusion.command("eval")
@click.argument("model_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--samples", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def eval_cmd(model_dir: Path, data: Path, samples: int, seed: int) -> None:
    """Losses and synthetic-corruption detection rates of a saved fusion encoder on a dataset."""
    from perception.fusion import FusionDataset, FusionEncoderLearner
    from perception.learner import load_model

    model = load_model(model_dir)
    if not isinstance(model, FusionEncoderLearner):
        raise click.BadParameter(f"{model_dir} holds a {model.name} model, not a fusion_encoder",
                                 param_hint="MODEL_DIR")
    click.echo(json.dumps(model.eval(FusionDataset.load(data), samples=samples, seed=seed), indent=2))



@click.command("fusion")
@click.option("--run", "run_pairs", multiple=True,
              help="POLICY=RUN_DIR for latent_ppo and end_to_end_ppo (default: the shipped assets/models/fusion_*)")
@click.option("--episodes", type=int, default=200, show_default=True, help="seeded episodes per policy and condition")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--policies", default="latent_ppo,end_to_end_ppo,scripted", show_default=True)
@click.option("--conditions", "only", default=None,
              help="comma-separated conditions to run (default: all; e.g. all,missing:rgb,noise:wrench)")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("runs/bench/fusion"),
              show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the JSON result instead of the table")
@click.option("--no-video", is_flag=True, help="skip the insertion video")
@overwrite_option("fusion.json, fusion.md, fusion.png and fusion_insertion.mp4")
def bench_fusion(run_pairs: tuple[str, ...], episodes: int, seed: int, policies: str, only: str | None, out: Path,
                 as_json: bool, no_video: bool, overwrite: bool) -> None:
    """Insertion success per policy with every sensor, each missing (compensation on/off) and each corrupted
    (detection on/off); detection rates; latency. Writes fusion.json / .md / .png / _insertion.mp4 to --out."""
    import torch

    from agents.fusion_benchmark import format_table, read_runs, run_fusion_benchmark
    from envs.specs import ASSETS

    torch.set_num_threads(1)
    runs = {"latent_ppo": ASSETS / "models" / "fusion_latent_ppo",
            "end_to_end_ppo": ASSETS / "models" / "fusion_end_to_end_ppo", **read_runs(run_pairs)}
    chosen = split_list(policies, "--policies")
    runs = {k: v for k, v in runs.items() if k in chosen}
    result = run_fusion_benchmark(out, runs, episodes=episodes, seed=seed, policies=chosen,
                                  only=split_list(only, "--conditions") if only else None, overwrite=overwrite,
                                  video=not no_video, progress=not as_json)
    click.echo(json.dumps(result, indent=2) if as_json else format_table(result))
