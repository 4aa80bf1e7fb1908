"""``vantage vqa fit|eval`` (the VQA model) and ``vantage bench active-vs-static vqa`` (docs/vqa.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from scripts.options import ErrorReportingGroup, overwrite_option, split_list

__all__ = ["ActiveVsStaticDispatch", "vqa"]


@click.group(cls=ErrorReportingGroup)
def vqa() -> None:
    """The VQA model of the virtual-camera task: train and evaluate it on CLEVR-format folders."""


def _folder(path: Path, option: str) -> None:
    if not (path / "questions").is_dir():
        raise click.BadParameter(f"{path} is not a CLEVR-format folder (no questions/; make one with "
                                 f"`vantage data vqa`)", param_hint=option)


@vqa.command("fit")
@click.option("--data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="CLEVR-format training folder (vantage data vqa)")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="saved model folder")
@click.option("--arch", type=click.Choice(["film", "mutan"]), default="film", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-data", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="held-out CLEVR folder evaluated after training (stored in the manifest)")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--overwrite", is_flag=True, help="replace a saved model at --out")
def fit(data: Path, out: Path, arch: str, epochs: int, batch_size: int, lr: float, seed: int,
        eval_data: Path | None, threads: int, overwrite: bool) -> None:
    """Train the VQA model on whole images, crops around the referred objects and random windows."""
    import torch

    from perception.manifest import check_save_dir
    from perception.vqa import VQALearner

    _folder(data, "--data")
    if eval_data is not None:
        _folder(eval_data, "--eval-data")
    check_save_dir(out, overwrite)
    torch.set_num_threads(threads)
    learner = VQALearner(arch=arch, seed=seed)
    summary: dict[str, Any] = {"fit": learner.fit(data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)}
    if eval_data is not None:
        learner.metrics = learner.eval(eval_data)
        summary["eval"] = learner.metrics
    learner.save(out, overwrite=True)
    learner.export(out)
    summary["saved"] = str(out)
    click.echo(json.dumps(summary, indent=2))


@vqa.command("eval")
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
def eval_cmd(model_dir: Path, data: Path, threads: int) -> None:
    """Accuracy on whole images and on oracle crops (overall, far-small, per question family)."""
    import torch

    from perception.learner import load_model
    from perception.vqa import VQALearner  # noqa: F401  (registers the model name)

    _folder(data, "--data")
    torch.set_num_threads(threads)
    click.echo(json.dumps(load_model(model_dir).eval(data), indent=2))


@click.command("active-vs-static")
@click.argument("task", type=click.Choice(["vqa"]))
@click.option("--data", type=click.Path(path_type=Path, exists=True, file_okay=False),
              default=Path("data/vqa/clevr_test"), show_default=True,
              help="held-out CLEVR-format folder (vantage data vqa --split test --seed 1)")
@click.option("--episodes", type=click.IntRange(min=1), default=2000, show_default=True,
              help="held-out questions (a seeded sample of the folder's; the same for every policy)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--policies", default="whole_image,random,rule", show_default=True,
              help="baselines to run: whole_image, random, rule")
@click.option("--rainbow", "rainbow_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="run directory of a Rainbow agent (vantage train vqa --algo rainbow)")
@click.option("--ppo", "ppo_dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="run directory of a PPO agent (vantage train vqa --algo ppo)")
@click.option("--vqa-dir", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="saved VQA model (default assets/models/vqa_film)")
@click.option("--moves", type=click.Choice(["coarse", "paper"]), default="coarse", show_default=True)
@click.option("--speed-steps", type=click.IntRange(min=0), default=2000, show_default=True,
              help="environment steps of the speed run (0 skips it)")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/bench/vqa"), show_default=True)
@overwrite_option("the JSON, table and figure in --out")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def vqa_active_vs_static(task: str, data: Path, episodes: int, seed: int, policies: str, rainbow_dir: Path | None,
                         ppo_dir: Path | None, vqa_dir: Path | None, moves: str, speed_steps: int, threads: int,
                         out: Path, overwrite: bool, as_json: bool) -> None:
    """Accuracy of camera policies x answer rules (last, most-confident, average, oracle frame), overall and on
    the far-small split, with the oracle crop as the upper bound; per question family; speed; example figure."""
    from agents.vqa_benchmark import VQABenchConfig, run_vqa_benchmark

    _folder(data, "--data")
    agents = {name: path for name, path in (("rainbow", rainbow_dir), ("ppo", ppo_dir)) if path is not None}
    config = VQABenchConfig(dataset=data, out=out, episodes=episodes, seed=seed,
                            policies=tuple(split_list(policies, "--policies")), agents=agents, vqa_dir=vqa_dir,
                            moves=moves, speed_steps=speed_steps, threads=threads, overwrite=overwrite)
    summary = run_vqa_benchmark(config, progress=not as_json)
    tables = summary.pop("tables")
    click.echo(json.dumps(summary, indent=2) if as_json else tables)


class ActiveVsStaticDispatch(ErrorReportingGroup):
    """``vantage bench active-vs-static TASK ...``: the VQA task's benchmark for ``vqa``, the face task's otherwise.

    The two take different options; the task argument picks the command, which then parses the whole line
    (task included) as before.
    """

    def __init__(self, tasks: dict[str, click.Command]) -> None:
        super().__init__("active-vs-static", help="Active vs static perception benchmarks, per task: "
                                                  + ", ".join(tasks))
        self.tasks = tasks

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.tasks)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self.tasks.get(name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                             list[str]]:
        name, cmd, _ = super().resolve_command(ctx, args)
        return name, cmd, args  # the command keeps its TASK argument
