"""Sweep axes, grids, YAML files and searches: what trials a sweep makes, and the bad input it refuses."""

from pathlib import Path

import pytest

from agents.reward_study import RewardStudyConfig, study_trials
from agents.sweeps import SweepSpace, load_yaml, resolve_axis
from agents.training import TrainConfig
from common.errors import InvalidArgumentError

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def test_axis_names_resolve_to_config_paths():
    paths = {name: resolve_axis("tracking", "ppo", name).path for name in (
        "seed", "normalize_rewards", "reward", "motion", "c_g", "margin", "margin.distance_error",
        "reward_params.c_p", "weights.angle_error", "env.safe_distance", "lost_patience", "gamma",
        "agent.learning_rate")}
    assert paths == {
        "seed": "seed", "normalize_rewards": "normalize_rewards", "reward": "env_kwargs.reward",
        "motion": "env_kwargs.motion", "c_g": "env_kwargs.reward_params.c_g",
        "margin": "env_kwargs.reward_params.margin",
        "margin.distance_error": "env_kwargs.reward_params.margin.distance_error",
        "reward_params.c_p": "env_kwargs.reward_params.c_p",
        "weights.angle_error": "env_kwargs.reward_params.weights.angle_error",
        "env.safe_distance": "env_kwargs.safe_distance", "lost_patience": "env_kwargs.lost_patience",
        "gamma": "agent_overrides.gamma", "agent.learning_rate": "agent_overrides.learning_rate"}


def test_the_issues_grid_makes_every_combination_with_readable_names():
    space = SweepSpace(task="tracking", steps=100_000, seeds=(0, 1, 2),
                       grid={"reward": ["td", "negative", "hint"], "action_mode": ["discrete", "continuous"],
                             "motion": ["constant", "switching", "obstacles"]})
    trials = space.trials()
    assert len(trials) == 3 * 2 * 3 * 3
    assert trials[0].name == "td_discrete_constant_s0" and trials[-1].name == "hint_continuous_obstacles_s2"
    assert len({t.name for t in trials}) == len(trials)
    last = trials[-1].config
    assert last.env_kwargs == {"reward": "hint", "action_mode": "continuous", "motion": "obstacles"}
    assert last.seed == 2 and last.steps == 100_000 and last.agent_overrides == {}


def test_reward_parameters_and_hyperparameters_land_in_the_run_config():
    space = SweepSpace(task="tracking", steps=64, seeds=(0,), fixed={"reward": "hint", "margin.angle_error": 0.1,
                                                                     "margin.distance_error": 0.02},
                       grid={"c_g": [1.0, 2.0], "gamma": [0.75, 0.9], "normalize_rewards": [True]})
    trials = space.trials()
    assert [t.name for t in trials] == ["1.0_0.75_true_s0", "1.0_0.9_true_s0", "2.0_0.75_true_s0",
                                        "2.0_0.9_true_s0"]
    config = trials[3].config
    assert config.env_kwargs == {"reward": "hint", "reward_params": {"c_g": 2.0, "margin": {"angle_error": 0.1,
                                                                                             "distance_error": 0.02}}}
    assert config.agent_overrides == {"gamma": 0.9} and config.normalize_rewards is True
    assert trials[3].params == {"c_g": 2.0, "gamma": 0.9, "normalize_rewards": True, "seed": 0}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"grid": {"rewards": ["td"]}}, "unknown sweep axis 'rewards'"),
    ({"grid": {"reward": ["td", "bonus"]}}, "reward='bonus' is not allowed; choose from td, negative, hint"),
    ({"grid": {"reward": []}}, "grid axis 'reward' has no values"),
    ({"grid": {"reward": ["td", "td"]}}, "repeats a value"),
    ({"seeds": ()}, "the sweep has no seeds"),
    ({"seeds": (0, -1)}, "seed -1 must be an integer >= 0"),
    ({"grid": {"gamma": ["high"]}}, "ppo setting gamma='high' must be a finite number"),
    ({"grid": {"no_such_agent_setting": [1]}}, "allowed: seed: seed; run settings"),
    ({"fixed": {"reward": "hint"}, "grid": {"reward": ["td"]}}, "'reward' is given more than once"),
    ({"search": {"c_g": {"uniform": [2.0, 1.0]}}, "samples": 4}, "must be [low, high] with low <= high"),
    ({"search": {"c_g": {"normal": [0, 1]}}, "samples": 4}, "kind 'normal' of c_g is unknown"),
    ({"search": {"c_g": {"uniform": [0, 1]}}}, "a search needs samples >= 1"),
    ({"search": {"reward": {"uniform": [0, 1]}}, "samples": 2}, "use choice, not uniform"),
    ({"fixed": {"reward": "hint"}, "grid": {"margin": [0.05, -1.0]}}, "trial -1.0_s0 (margin=-1.0): hint margin"),
    ({"grid": {"lost_patience": [0]}}, "lost_patience=0 must be an integer >= 1"),
])
def test_bad_axes_and_values_are_refused_by_name(kwargs, message):
    with pytest.raises(InvalidArgumentError) as info:
        SweepSpace(task="tracking", steps=64, **{"seeds": (0,), **kwargs}).trials()
    assert message in str(info.value)


def test_unknown_axis_lists_what_is_allowed_by_group():
    with pytest.raises(InvalidArgumentError) as info:
        resolve_axis("tracking", "ppo", "c_x")
    text = str(info.value)
    for group in ("task options: reward, action_mode, motion", "c_g, c_m, c_p, margin", "gamma", "safe_distance"):
        assert group in text


def test_a_search_is_the_same_on_every_call_and_spreads_its_points():
    search = {"c_g": {"uniform": [0.5, 2.0]}, "margin": {"loguniform": [0.01, 0.2]}, "n_epochs": {"int": [1, 4]},
              "c_p": {"choice": [-2.0, -1.2, -0.5]}}
    for sampler in ("random", "quasi"):
        make = lambda s=sampler: SweepSpace(task="tracking", steps=64, seeds=(0, 1), fixed={"reward": "hint"},  # noqa: E731
                                            search=search, samples=8, sampler=s, sample_seed=3).trials()
        first, again = make(), make()
        assert [t.params for t in first] == [t.params for t in again]
        assert len(first) == 16 and first[0].name == "p000_s0" and first[-1].name == "p007_s1"
        values = [t.params["c_g"] for t in first[::2]]
        assert all(0.5 <= v <= 2.0 for v in values) and len(set(values)) == 8
        assert all(0.01 <= t.params["margin"] <= 0.2 for t in first)
        assert {t.params["n_epochs"] for t in first} <= {1, 2, 3, 4}
        assert first[0].config.env_kwargs["reward_params"]["c_p"] in (-2.0, -1.2, -0.5)
    quasi = [t.params["c_g"] for t in SweepSpace(task="tracking", steps=64, fixed={"reward": "hint"},
                                                 search={"c_g": {"uniform": [0.0, 1.0]}}, samples=8,
                                                 sampler="quasi").trials()]
    # Halton points: one in each eighth of the range.
    assert sorted(int(v * 8) for v in quasi) == list(range(8))


def test_example_yaml_files_parse_into_trials():
    files = sorted(SWEEPS.glob("*.yaml"))
    assert files, "sweeps/*.yaml examples are shipped"
    for path in files:
        conf = load_yaml(path)
        space = SweepSpace(task=conf.get("task", "tracking"), steps=conf.get("steps", 1000),
                           seeds=tuple(conf.get("seeds", [0])), fixed=conf.get("set", {}), grid=conf.get("grid", {}),
                           search=conf.get("search", {}), samples=conf.get("samples", 0),
                           sampler=conf.get("sampler", "random"), sample_seed=conf.get("sample_seed", 0),
                           base=conf.get("base", {}))
        assert space.trials(), path


def test_yaml_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [1, 2\n")
    with pytest.raises(InvalidArgumentError, match=r"bad\.yaml is not valid YAML"):
        load_yaml(bad)
    bad.write_text("grids:\n  reward: [td]\n")
    with pytest.raises(InvalidArgumentError, match="unknown key 'grids'; known: task, algo"):
        load_yaml(bad)
    bad.write_text("- 1\n")
    with pytest.raises(InvalidArgumentError, match="must hold a mapping"):
        load_yaml(bad)


def _old_trial_list(steps, seeds, rewards, modes, normalize):
    """The runs the reward study made before it became a sweep (its ``_run_one``), name and config."""
    out = {}
    for reward in rewards:
        for mode in modes:
            for seed in seeds:
                out[f"{reward}_{mode}_s{seed}"] = TrainConfig(
                    task="tracking", algo="ppo", steps=steps, seed=seed,
                    normalize_rewards=normalize and reward in ("td", "negative"),
                    env_kwargs={"reward": reward, "action_mode": mode, "motion": "constant"}, agent_overrides={})
    return out


@pytest.mark.parametrize("normalize", [False, True])
def test_the_reward_study_preset_makes_the_old_commands_trials(normalize):
    study = RewardStudyConfig(out=Path("study"), steps=30_000, seeds=(0, 1, 2), normalize_rewards=normalize)
    trials = study_trials(study)
    old = _old_trial_list(30_000, (0, 1, 2), ("td", "negative", "hint"), ("discrete", "continuous"), normalize)
    assert [t.name for t in trials] == list(old)
    for trial in trials:
        expected = old[trial.name]
        expected.validate()
        assert trial.config.to_json() == expected.to_json(), trial.name
