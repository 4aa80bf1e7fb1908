"""One :class:`TaskSpec` per task: everything the tooling needs to know about it, in one entry.

``vantage train|eval|bench``, the demo and the Gymnasium registration are built from :data:`TASKS`, so a new
task is a task file (``envs/tasks/``), a world, and one entry here (``docs/adding-a-task.md``). Entries
reference code by ``"module:attribute"`` strings, like Gymnasium's entry points: reading the table imports
nothing heavy, and an entry can name agent-side code (a benchmark) without ``envs`` importing ``agents``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.errors import InvalidArgumentError, UnknownNameError, lookup

__all__ = ["ASSETS", "TASKS", "BundleSpec", "DemoSpec", "TaskOption", "TaskSpec", "get_task", "resolve", "task_of_env"]

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def resolve(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names (imported on first use)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class TaskOption:
    """An environment setting the command line exposes as ``--<name with dashes>``.

    Attributes:
        name: the environment keyword (``reward``, ``action_mode``, ...).
        choices: allowed values.
        default: the value training uses unless told otherwise.
        help: one line for ``--help``.
    """

    name: str
    choices: tuple[str, ...]
    default: str
    help: str = ""


@dataclass(frozen=True)
class DemoSpec:
    """How ``make demo`` shows a task: its shipped agent against its baselines.

    Attributes:
        variants: ``(label, environment overrides)`` pairs, each evaluated for every policy.
        episodes: episodes per policy and variant.
        baselines: baselines shown beside the agent.
        max_steps: step cap per episode (``None``: the registered limit).
        video_fps: frames per second of the video of the agent's first episode.
        trace_label: y-axis label of the per-step trace (the evaluator's ``trace_key``) plotted for one episode.
        metric: the summary figure the bar chart compares (``<name>_std`` beside it gives error bars).
        metric_label: its axis label.
    """

    variants: tuple[tuple[str, Mapping[str, Any]], ...] = (("default", {}),)
    episodes: int = 5
    baselines: tuple[str, ...] = ("static",)
    max_steps: int | None = None
    video_fps: int = 20
    trace_label: str = ""
    metric: str = "return_mean"
    metric_label: str = "mean return"


@dataclass(frozen=True)
class BundleSpec:
    """What a deployment bundle of the task's agents holds beside the policy (``vantage export``, ``deploy/``).

    Attributes:
        perception: model name -> saved perception model folder the robot runs beside the policy.
        chain: ``"module:Class"`` in ``deploy/`` that runs those models on a frame (its ``describe`` writes their
            decoding settings into the manifest).
        sim_argument: the environment keyword the chain is given as in the simulator closed loop.
        trigger_actions: actions after which the chain runs on the robot's frame.
        every_step_when: environment settings under which the chain runs on every step instead.
        frames: which frames the chain sees, in words, for the manifest.
    """

    perception: Mapping[str, Path] = field(default_factory=dict)
    chain: str | None = None
    sim_argument: str | None = None
    trigger_actions: tuple[str, ...] = ()
    every_step_when: Mapping[str, Any] = field(default_factory=dict)
    frames: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """Everything about one task that is not the environment itself.

    Attributes:
        name: the task's command-line name (``vantage train NAME``).
        env_id: Gymnasium id.
        entry_point: ``"module:callable"`` that builds the environment.
        max_episode_steps: the registered episode limit (a ``TimeLimit``).
        summary: one line for ``--help`` and the demo.
        options: environment settings the command line exposes, with training defaults.
        presets: algorithm -> the agent preset the task trains with by default (algorithms absent here
            need an explicit ``--preset``).
        preset_aliases: older preset names of this task's runs -> today's (runs made before presets were
            named per kind of task still load and resume).
        evaluator: ``"module:Class"`` of the task's :class:`envs.tasks.base.EpisodeEvaluator`.
        baselines: baseline name -> ``"module:Class"`` (built from the environment; SB3's ``predict``).
        eval_max_steps: step cap of an evaluation episode (``None``: the registered limit).
        benchmarks: the ``vantage bench`` commands that take this task.
        shipped_agent: folder of a trained agent shipped in ``assets/models``, if any.
        agent_sampled: run the agent with sampled (not most likely) actions in the demo and benchmarks.
        bundle: what a deployment bundle of the task's agents holds beside the policy (perception models).
        demo: how ``make demo`` shows the task.
        sweep_metric: ``(figure, "min" | "max")``: what ``vantage sweep`` trials report to the scheduler and rank
            by, a key of the evaluator's summary without its ``_mean`` suffix (``distance_error``), and its
            better direction.
    """

    name: str
    env_id: str
    entry_point: str
    max_episode_steps: int
    summary: str
    options: tuple[TaskOption, ...] = ()
    presets: Mapping[str, str] = field(default_factory=dict)
    preset_aliases: Mapping[str, str] = field(default_factory=dict)
    evaluator: str = "envs.tasks.base:EpisodeEvaluator"
    baselines: Mapping[str, str] = field(default_factory=dict)
    eval_max_steps: int | None = None
    benchmarks: tuple[str, ...] = ()
    shipped_agent: Path | None = None
    agent_sampled: bool = False
    bundle: BundleSpec = field(default_factory=BundleSpec)
    demo: DemoSpec | None = None
    sweep_metric: tuple[str, str] = ("return", "max")

    def defaults(self) -> dict[str, str]:
        """The environment settings training uses unless told otherwise."""
        return {option.name: option.default for option in self.options}

    def make_evaluator(self) -> Any:
        """A fresh episode evaluator for this task."""
        return resolve(self.evaluator)()

    def make_baseline(self, name: str, env: Any) -> Any:
        """Baseline ``name`` for ``env``; an unknown name lists this task's baselines."""
        return resolve(lookup(f"{self.name} baseline", dict(self.baselines), name))(env)

    def preset(self, algo: str) -> str:
        """The default preset of ``algo`` for this task.

        Raises:
            InvalidArgumentError: the task names no default for ``algo`` (a preset must then be chosen).
        """
        if algo not in self.presets:
            defaults = ", ".join(f"{a}: {p}" for a, p in self.presets.items()) or "none"
            raise InvalidArgumentError(f"task {self.name!r} has no default {algo} preset (its defaults: {defaults});"
                                       f" choose one with --preset")
        return self.presets[algo]


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="tracking",
            env_id="vantage/ActiveTracking-v0",
            entry_point="envs.tasks.active_tracking:ActiveTrackingEnv",
            max_episode_steps=1000,
            summary="a wheeled tracker keeps a moving robot in view at 0.2 m (TD rewards, Tiritiris et al. 2021)",
            options=(
                TaskOption("reward", ("td", "negative", "hint"), "td", "reward scheme"),
                TaskOption("action_mode", ("discrete", "continuous"), "discrete", "wheel-speed actions"),
                TaskOption("motion", ("constant", "switching", "obstacles"), "constant", "target motion"),
            ),
            presets={"ppo": "tracking-paper", "rainbow": "tracking"},
            preset_aliases={"paper": "tracking-paper"},
            evaluator="envs.tasks.active_tracking:TrackingEvaluator",
            baselines={"static": "envs.baselines:StaticPolicy"},
            benchmarks=("env", "rewards"),
            shipped_agent=ASSETS / "models" / "tracking_ppo_td",
            demo=DemoSpec(variants=(("constant", {"motion": "constant"}), ("switching", {"motion": "switching"})),
                          episodes=5, video_fps=20, trace_label="distance error |d - 0.2 m| (m)",
                          metric="distance_error_mean", metric_label="mean distance error (m)"),
            sweep_metric=("distance_error", "min"),
        ),
        TaskSpec(
            name="face-recognition",
            env_id="vantage/DroneFaceRecognition-v0",
            entry_point="envs.registration:make_drone_face_env",
            max_episode_steps=2000,
            summary="a camera drone flies to where the face models recognise a person (OpenDR D3.2 Sec. 2.2)",
            options=(
                TaskOption("reward", ("shaped", "paper"), "shaped", "reward scheme"),
                TaskOption("action_set", ("toolkit", "paper"), "toolkit", "toolkit: 10 actions; paper: 5"),
            ),
            presets={"ppo": "face-toolkit"},
            preset_aliases={"toolkit": "face-toolkit", "paper": "face-paper", "cpu": "face-cpu"},
            evaluator="envs.tasks.face_recognition:FaceEvaluator",
            baselines={"static": "envs.baselines:FaceStaticPolicy", "rule": "envs.baselines:FaceRulePolicy"},
            eval_max_steps=300,
            benchmarks=("active-vs-static",),
            shipped_agent=ASSETS / "models" / "face_ppo_paper_shaped",
            agent_sampled=True,
            bundle=BundleSpec(perception={"detector": ASSETS / "models" / "face_detector",
                                          "recognizer": ASSETS / "models" / "face_recognizer"},
                              chain="deploy.faces:FaceChain", sim_argument="pipeline", trigger_actions=("recognize",),
                              every_step_when={"reward": "paper"},
                              frames="the recognition camera's RGB frame (320x240 in the simulator; on a robot the "
                                     "camera frame), after the decoded action asks for it"),
            demo=DemoSpec(episodes=10, baselines=("static", "rule"), max_steps=300, video_fps=10,
                          trace_label="distance to the person (m)", metric="accuracy",
                          metric_label="identification accuracy (random starts)"),
            sweep_metric=("accuracy", "max"),
        ),
        TaskSpec(
            name="fusion",
            env_id="vantage/PegInsertion-v0",
            entry_point="envs.tasks.peg_insertion:PegInsertionEnv",
            max_episode_steps=150,
            summary="a Panda inserts a peg from fused RGB, depth, force/torque and proprioception, with failing "
                    "sensors (OpenDR D4.1/D4.2 Sec. 5.1)",
            options=(
                TaskOption("peg", ("round", "square", "triangle"), "round", "peg shape (hole to match)"),
                TaskOption("reward", ("shaped", "sparse"), "shaped", "reward scheme"),
            ),
            presets={"ppo": "fusion-latent"},
            evaluator="envs.tasks.peg_insertion:PegInsertionEvaluator",
            baselines={"scripted": "agents.fusion_scripted:ScriptedInsertion"},
            benchmarks=("env", "fusion"),
            sweep_metric=("success_rate", "max"),
        ),
        TaskSpec(
            name="vqa",
            env_id="vantage/VQAVirtualCamera-v0",
            entry_point="envs.registration:make_vqa_env",
            max_episode_steps=100,
            summary="a virtual camera zooms and pans over a scene so a frozen VQA model answers better "
                    "(Bozinis et al., ICPR 2020; OpenDR D4.1 Sec. 2.7)",
            options=(
                TaskOption("camera", ("crop", "ptz"), "crop", "crop: window over one render; ptz: re-rendered camera"),
                TaskOption("moves", ("coarse", "paper"), "coarse", "step sizes: coarse 50 % zoom; paper 4 %"),
                TaskOption("reward", ("gain",), "gain", "reward scheme (confidence gain of the correct answer)"),
            ),
            presets={"ppo": "vqa", "rainbow": "vqa"},
            evaluator="envs.tasks.vqa_camera:VQAEvaluator",
            baselines={"whole_image": "agents.vqa_policies:WholeImagePolicy",
                       "random": "agents.vqa_policies:RandomMovesPolicy", "rule": "agents.vqa_policies:RulePolicy"},
            benchmarks=("active-vs-static",),
            sweep_metric=("accuracy", "max"),
        ),
    )
}


def get_task(name: str) -> TaskSpec:
    """The spec of task ``name``; an unknown name lists the tasks."""
    return lookup("task", TASKS, name)


def task_of_env(env_id: str) -> TaskSpec:
    """The spec of the task registered as ``env_id``."""
    for spec in TASKS.values():
        if spec.env_id == env_id:
            return spec
    raise UnknownNameError("environment id", env_id, [spec.env_id for spec in TASKS.values()])
