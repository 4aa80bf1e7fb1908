"""``vantage data faces``: render a labelled face dataset in the simulator (sharded, resumable)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from scripts.options import ErrorReportingGroup


@click.group(cls=ErrorReportingGroup)
def data() -> None:
    """Generate datasets from the simulator."""


@data.command("faces")
@click.option("--n", "n", type=int, required=True, help="number of frames")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--distance", nargs=2, type=float, default=(0.5, 20.0), show_default=True,
              help="camera-to-head distance range in metres (log-uniform), within 0.3 .. 24")
@click.option("--yaw", nargs=2, type=float, default=(-180.0, 180.0), show_default=True,
              help="camera azimuth around the subject in degrees, 0 = frontal, within -180 .. 180")
@click.option("--height", nargs=2, type=float, default=(0.5, 2.5), show_default=True,
              help="camera height range (m), within 0.1 .. 3")
@click.option("--identities", type=int, default=60, show_default=True, help="identities in the world")
@click.option("--heldout", type=int, default=10, show_default=True, help="identities kept out of training")
@click.option("--identity-seed", type=int, default=0, show_default=True)
@click.option("--extra-people", type=int, default=2, show_default=True, help="max other people per frame")
@click.option("--size", nargs=2, type=int, default=(240, 320), show_default=True,
              help="image height width, each 16 .. 4096")
@click.option("--shard-size", type=int, default=250, show_default=True)
@click.option("--no-progress", is_flag=True,
              help="print no progress (default: on stderr; off a terminal a line per shard)")
def faces(n: int, seed: int, out: Path, distance: tuple[float, float], yaw: tuple[float, float],
          height: tuple[float, float], identities: int, heldout: int, identity_seed: int, extra_people: int,
          size: tuple[int, int], shard_size: int, no_progress: bool) -> None:
    """Render N frames of people in the furnished face room with face boxes and identities.

    Every setting and the --out folder are checked before anything is written. Re-running the same command
    resumes an interrupted run (even one that was killed) to the same content; other settings in the same
    folder are refused, and so is a folder holding a saved model or a training run. Nothing already rendered
    is ever replaced, so there is no --overwrite.
    """
    from envs.worlds.face_scenes import FaceSceneSampler
    from perception.faces.dataset import FaceDataset, FaceSceneConfig, generate_dataset

    # FaceSceneConfig checks every range when it is made: nothing is written before that.
    config = FaceSceneConfig(n_identities=identities, n_heldout=heldout, identity_seed=identity_seed,
                             distance=tuple(distance), yaw=tuple(yaw), camera_height=tuple(height),
                             max_extra_people=extra_people, image_size=tuple(size), shard_size=shard_size)
    generate_dataset(out, n, seed, config, sampler=FaceSceneSampler, progress=not no_progress)
    ds = FaceDataset(out)
    visible = sum(f.visible for _, label in ds for f in label.faces)
    click.echo(json.dumps({"out": str(out), "frames": len(ds), "visible_faces": visible,
                           "hash": ds.content_hash}, indent=2))


@data.command("face-bank")
@click.option("--identities", "ranges", required=True,
              help="identity ranges START:STOP (stop excluded), comma-separated, e.g. 550:2550 or 0:50,300:550")
@click.option("--views", type=int, default=16, show_default=True, help="views per identity")
@click.option("--gallery", default="0:50", show_default=True,
              help="identities whose frontal 1 m enrolment crop is stored (START:STOP), or 'none'")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--distance", nargs=2, type=float, default=(0.4, 6.0), show_default=True,
              help="camera-to-head distance range in metres (log-uniform)")
@click.option("--yaw", nargs=2, type=float, default=(-75.0, 75.0), show_default=True,
              help="camera azimuth around the subject in degrees, 0 = frontal")
@click.option("--height", nargs=2, type=float, default=(0.3, 2.9), show_default=True,
              help="camera height range (m), within 0.1 .. 3")
@click.option("--identity-seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="print no progress")
def face_bank(ranges: str, views: int, gallery: str, seed: int, out: Path, distance: tuple[float, float],
              yaw: tuple[float, float], height: tuple[float, float], identity_seed: int, no_progress: bool) -> None:
    """Render VIEWS face crops of each identity in the ranges, one person at a time (thousands of identities).

    The training identities of the shipped recogniser are 550 and up; 0-49 are its gallery and 50-549 are held
    out (envs.worlds.identities.identity_split). Re-running the same command resumes; other settings in the
    same folder are refused.
    """
    from envs.worlds.face_scenes import IdentityViewSampler
    from envs.worlds.identities import GALLERY_IDENTITIES, HELDOUT_IDENTITIES
    from perception.faces.bank import FaceBank, FaceBankConfig, generate_bank

    def span(text: str, option: str) -> tuple[int, int]:
        try:
            start, stop = (int(v) for v in text.split(":"))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not START:STOP (two integers)", param_hint=option) from None
        return start, stop

    spans = tuple(span(t.strip(), "--identities") for t in ranges.split(",") if t.strip())
    config = FaceBankConfig(identities=spans, gallery=None if gallery == "none" else span(gallery, "--gallery"),
                            views=views, identity_seed=identity_seed, distance=tuple(distance), yaw=tuple(yaw),
                            camera_height=tuple(height),
                            split_gallery=(GALLERY_IDENTITIES.start, GALLERY_IDENTITIES.stop),
                            split_heldout=(HELDOUT_IDENTITIES.start, HELDOUT_IDENTITIES.stop))
    generate_bank(out, seed, config, sampler=IdentityViewSampler, progress=not no_progress)
    bank = FaceBank(out)
    click.echo(json.dumps({"out": str(out), "identities": len(bank.identities),
                           "views": int(sum(json.loads(s.with_suffix(".json").read_text())["count"]
                                            for s in bank.shards)),
                           "hash": bank.content_hash}, indent=2))


@data.command("vqa")
@click.option("--scenes", type=int, required=True, help="number of scenes (1024x1024 renders), 1 or more")
@click.option("--questions-per-scene", type=int, default=10, show_default=True, help="1 .. 100")
@click.option("--seed", type=int, default=0, show_default=True, help="scene i depends only on (seed, i)")
@click.option("--split", default="train", show_default=True, help="train, val or test (the CLEVR file names)")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--overwrite", is_flag=True, help="replace the split's files in --out")
@click.option("--no-progress", is_flag=True, help="print no progress")
def vqa(scenes: int, questions_per_scene: int, seed: int, split: str, out: Path, overwrite: bool,
        no_progress: bool) -> None:
    """Render CLEVR-like scenes in MuJoCo with balanced questions, as a CLEVR-format folder (docs/vqa.md)."""
    from envs.worlds.vqa_questions import generate_vqa_dataset

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            click.echo(f"{done}/{total} scenes", err=True)

    summary = generate_vqa_dataset(out, scenes, seed=seed, split=split, questions_per_scene=questions_per_scene,
                                   overwrite=overwrite, progress=None if no_progress else progress)
    click.echo(json.dumps(summary, indent=2))


@data.command("fusion")
@click.option("--episodes", type=int, required=True, help="episodes to record, 1 or more")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--peg", type=click.Choice(["round", "square", "triangle"]), default="round", show_default=True)
@click.option("--max-steps", type=int, default=80, show_default=True, help="steps per episode at most")
@click.option("--random-fraction", type=float, default=0.3, show_default=True,
              help="share of episodes driven by random actions (the rest: the scripted controller plus noise)")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--overwrite", is_flag=True, help="replace a dataset in --out")
@click.option("--no-progress", is_flag=True, help="print no progress")
def fusion(episodes: int, seed: int, peg: str, max_steps: int, random_fraction: float, out: Path, overwrite: bool,
           no_progress: bool) -> None:
    """Record synchronised RGB, depth, force/torque and proprioception from the peg world (docs/fusion.md)."""
    from agents.fusion_data import collect_fusion_data

    ds = collect_fusion_data(out, episodes, seed=seed, peg=peg, max_steps=max_steps, random_fraction=random_fraction,
                             overwrite=overwrite, progress=not no_progress)
    click.echo(json.dumps({"out": str(out), "samples": len(ds), "episodes": ds.info["episodes"],
                           "seconds": ds.info["seconds"], "hash": ds.content_hash}, indent=2))
