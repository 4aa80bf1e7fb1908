"""Property-based fuzzing of every registered environment: actions, reset options and settings.

For arbitrary input, in or out of the documented spaces, an environment either works or raises a named
error (:class:`envs.errors.VantageError`); it never lets another exception escape, never returns a NaN or an
infinity in an observation, reward or numeric ``info`` value, and its observations always lie in its
observation space. The tests read every task from :data:`envs.specs.TASKS` (each option choice too), so a new
task is fuzzed without a line here.

Kept to a few seconds per environment (``VANTAGE_FUZZ_SCALE=20`` searches twenty times longer): each
environment is built once per module and its ``reset``/``step`` are fuzzed (a step costs about a
millisecond); only the settings test builds one per example. Inputs that would not fail but take unbounded
time or memory (a control period of years, ``k=10**9`` wheel levels) are kept out of the strategies: see
:data:`KNOWN_BUGS` and the ``xfail`` examples at the end for what the fuzzing found in code this suite does
not own.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import re
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra import numpy as hnp

import envs.observables  # also registers the environments
from envs.errors import VantageError
from envs.registration import ENVIRONMENTS
from envs.specs import TASKS
from envs.tasks.base import VantageEnv

# Hypothesis caches into ./.hypothesis by default; the checkout must stay clean.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "vantage-hypothesis")


def fuzz_settings(max_examples: int) -> settings:
    """Bounded and reproducible: the same examples on every run, no example database written to the checkout.

    ``VANTAGE_FUZZ_SCALE=20`` multiplies every test's examples, for a deeper search outside ``make test``.
    """
    max_examples = max(1, round(max_examples * float(os.environ.get("VANTAGE_FUZZ_SCALE", "1"))))
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])

#: Every registered id with its default settings, and with each non-default choice of its spec's options.
CASES: list[tuple[str, dict[str, Any]]] = []
for _spec in TASKS.values():
    CASES.append((_spec.env_id, {}))
    CASES += [(_spec.env_id, {o.name: c}) for o in _spec.options for c in o.choices if c != o.default]
IDS = [f"{env_id.split('/')[1]}{''.join(f'-{v}' for v in kw.values())}" for env_id, kw in CASES]


# -- known bugs in code this suite does not own: tolerated by the fuzz tests, pinned by xfail examples below ---
class Bug(NamedTuple):
    """Where a known bug raises: the innermost repository frame's file and function (``None``: anywhere), the
    exception types, and a pattern its message matches."""

    file: str | None
    function: str | None
    types: tuple[type[BaseException], ...]
    pattern: str = ""


#: Known bugs the fuzzing tolerates (each with an xfail example below) until they are fixed. The first run
#: found twelve in the environments; all are fixed, and their inputs are kept in :data:`FOUND_INPUTS`.
KNOWN_BUGS: dict[str, Bug] = {}
_ROOT = Path(__file__).resolve().parents[1]


def _origin(exc: BaseException) -> tuple[str, str] | None:
    """``(file relative to the repository, function)`` of the innermost repository frame that raised ``exc``,
    looking first at the original error where one was re-raised (gymnasium.make lengthens the creator's)."""
    chain = [exc]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    for error in reversed(chain):
        inside = [frame for frame in traceback.extract_tb(error.__traceback__)
                  if Path(frame.filename).is_relative_to(_ROOT) and ".venv" not in frame.filename
                  and "/tests/" not in frame.filename]
        if inside:
            return Path(inside[-1].filename).relative_to(_ROOT).as_posix(), inside[-1].name
    return None


def known_bug(exc: BaseException, bugs: dict[str, Bug] = KNOWN_BUGS) -> str | None:
    """The name of the known bug ``exc`` is, if any."""
    origin = _origin(exc) or (None, None)
    for name, bug in bugs.items():
        if (isinstance(exc, bug.types) and bug.file in (None, origin[0]) and bug.function in (None, origin[1])
                and re.search(bug.pattern, str(exc))):
            return name
    return None


def check_outcome(exc: BaseException | None) -> None:
    """Only a named error (or a known bug, pinned below) may escape."""
    if exc is None or isinstance(exc, VantageError) or known_bug(exc):
        return
    raise AssertionError(f"unnamed {type(exc).__name__} escaped: {exc}") from exc


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, BaseException | None]:
    """``fn(*args, **kwargs)`` and the exception it raised (``None`` when it returned)."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # the point of the test: anything may come out, and is checked
        return None, exc


def assert_finite(value: Any, what: str) -> None:
    """No NaN or infinity in ``value`` (a number, an array, or a mapping/sequence of them)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_finite(item, f"{what}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            assert_finite(item, f"{what}[{i}]")
    elif isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
        assert np.all(np.isfinite(value)), f"{what} holds NaN or inf"
    elif isinstance(value, float | np.floating):
        assert math.isfinite(value), f"{what} = {value!r}"


def check_step(env: gym.Env, out: tuple) -> tuple[bool, bool]:
    """A step's result obeys the contract; returns (terminated, truncated)."""
    obs, reward, terminated, truncated, info = out
    assert env.observation_space.contains(obs), f"observation outside {env.observation_space}"
    assert_finite(obs, "observation")
    assert isinstance(reward, float | int | np.floating | np.integer) and math.isfinite(reward), reward
    assert_finite(info, "info")
    return bool(terminated), bool(truncated)


# -- the environments, built once per module ---------------------------------------------------------------
@pytest.fixture(scope="module")
def cached_models() -> Iterator[None]:
    """Load each saved perception model once for the whole module (a task may load them for every env)."""
    from perception.faces.pipeline import FacePipeline

    patch = pytest.MonkeyPatch()
    original = FacePipeline.load.__func__

    @functools.cache
    def load(cls: type, *args: Any, **kwargs: Any) -> Any:
        return original(cls, *args, **kwargs)

    patch.setattr(FacePipeline, "load", classmethod(lambda cls, *a, **kw: load(cls, *a, **kw)))
    yield
    patch.undo()


@pytest.fixture(scope="module")
def built(cached_models: None) -> Iterator[dict[tuple[str, str], gym.Env]]:
    made: dict[tuple[str, str], gym.Env] = {}
    yield made
    for env in made.values():
        env.close()


def get_env(built: dict[tuple[str, str], gym.Env], env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    key = (env_id, repr(sorted(kwargs.items())))
    if key not in built:
        built[key] = gym.make(env_id, **kwargs)
    return built[key]


# -- strategies --------------------------------------------------------------------------------------------
def _doc_words(*objects: Any) -> list[str]:
    """Names a manual mentions in ``double backticks`` or quotes: candidate keys and string values."""
    words: set[str] = set()
    for obj in objects:
        doc = inspect.getdoc(obj) or ""
        words |= set(re.findall(r'``"?([A-Za-z_][A-Za-z0-9_]*)', doc)) | set(re.findall(r'"([A-Za-z_]\w*)"', doc))
    return sorted(words)


def env_class(env: gym.Env) -> type[VantageEnv]:
    return type(env.unwrapped)


def names_for(cls: type) -> list[str]:
    """Keys worth trying on ``cls``: its settings, reset options and the words its manual uses."""
    fields = [f.name for f in dataclasses.fields(cls.settings_class)]
    return sorted({*fields, *cls.reset_options, *_doc_words(cls, VantageEnv, envs.observables)})


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-10**6, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True, min_value=None, max_value=None).filter(
        lambda x: not math.isfinite(x) or abs(x) <= 100),  # finite ones bounded: see the module docstring
    st.text(max_size=6),
)


def values(words: list[str]) -> st.SearchStrategy[Any]:
    """Arbitrary JSON-like values whose strings and keys are often the given words (so nested options such as
    ``{"start": {"distance": ...}}`` are reached, not only refused at the top level)."""
    leaves = st.one_of(scalars, st.sampled_from(words) if words else st.nothing())
    keys = st.one_of(st.sampled_from(words), st.text(max_size=4)) if words else st.text(max_size=4)
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(keys, inner, max_size=3), st.dictionaries(keys, inner, min_size=1, max_size=3)),
        max_leaves=6)


def actions(space: gym.Space) -> st.SearchStrategy[Any]:
    """Valid actions (often) and every kind of invalid one: out of range, NaN, huge, wrong shape, bools,
    strings, None, lists."""
    if isinstance(space, gym.spaces.Discrete):
        valid = st.integers(int(space.start), int(space.start + space.n - 1))
        valid = st.one_of(valid, valid.map(np.int64), valid.map(lambda i: np.array(i)))
    else:
        valid = hnp.arrays(space.dtype, space.shape, elements=st.floats(-1.0, 1.0, width=32))
    dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.uint8, np.bool_, np.complex64])
    invalid = st.one_of(
        st.integers(min_value=-2**70, max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(), st.text(max_size=4), st.none(), st.binary(max_size=3),
        st.lists(st.one_of(st.integers(-3, 30), st.floats(), st.text(max_size=2), st.none()), max_size=4),
        st.lists(st.lists(st.floats(-1, 1), max_size=3), min_size=2, max_size=3),  # ragged
        hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    return st.one_of(valid, valid, invalid)


# -- the properties ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=IDS)
# A complex action is silently taken for its real part (see the tracking-continuous-action-conversion bug).
@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning")
def test_any_action_steps_or_is_refused_by_name(built: dict, env_id: str, kwargs: dict[str, Any]) -> None:
    env = get_env(built, env_id, kwargs)

    @fuzz_settings(60)
    @given(seed=st.integers(0, 2**32 - 1), sequence=st.lists(actions(env.action_space), min_size=1, max_size=8))
    def fuzz(seed: int, sequence: list[Any]) -> None:
        obs, info = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        assert_finite(info, "reset info")
        for action in sequence:
            out, exc = call(env.step, action)
            check_outcome(exc)
            if exc is None and any(check_step(env, out)):
                env.reset()

    fuzz()


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
def test_any_reset_options_reset_or_are_refused_by_name(built: dict, env_id: str) -> None:
    env = get_env(built, env_id, {})
    words = names_for(env_class(env))
    mapping = st.dictionaries(st.one_of(st.sampled_from(words), st.text(max_size=4)), values(words), max_size=3)
    options = st.one_of(st.none(), mapping, mapping, values(words))  # mostly mappings, as Gymnasium types them

    @fuzz_settings(150)
    @given(seed=st.integers(0, 2**32 - 1), options=options, steps=st.integers(0, 3))
    def fuzz(seed: int, options: dict[str, Any] | None, steps: int) -> None:
        out, exc = call(env.reset, seed=seed, options=options)
        check_outcome(exc)
        if exc is not None:
            return
        obs, info = out
        assert env.observation_space.contains(obs)
        assert_finite(obs, "observation")
        assert_finite(info, "reset info")
        env.action_space.seed(seed)
        for _ in range(steps):
            if any(check_step(env, env.step(env.action_space.sample()))):
                break

    fuzz()


@pytest.mark.parametrize("env_id", list(ENVIRONMENTS))
# Gymnasium warns about an unknown render_mode before the environment refuses it by name.
@pytest.mark.filterwarnings("ignore:.*render_mode.*:UserWarning")
def test_any_settings_build_or_are_refused_by_name(built: dict, env_id: str) -> None:
    cls = env_class(get_env(built, env_id, {}))  # also loads the task's models once for the module
    words = names_for(cls)
    fields = [f.name for f in dataclasses.fields(cls.settings_class)]
    defaults = {f.name: f.default for f in dataclasses.fields(cls.settings_class)}
    observations = list(get_env(built, env_id, {}).unwrapped.observables)
    kwargs = st.dictionaries(
        st.one_of(st.sampled_from(fields), st.sampled_from(fields), st.just("corruption"), st.text(max_size=4)),
        st.one_of(values(words), st.sampled_from(list(defaults.values()))), max_size=3)
    # Gymnasium's make() reads render_mode itself before the environment sees it: only names are ours to check.
    # ("human" is left out: Gymnasium wraps it in its pygame window, which is not installed here.)
    render_modes = st.one_of(st.none(), st.sampled_from(["rgb_array", "ansi", "rgb_array_list"]), st.text(max_size=4))
    corruption = st.dictionaries(st.one_of(st.sampled_from(observations), st.text(max_size=3)),
                                 st.dictionaries(st.sampled_from(words), values(words), max_size=3), max_size=2)

    @fuzz_settings(40)
    @given(kwargs=kwargs, render_mode=render_modes, corruption=st.one_of(st.none(), corruption),
           seed=st.integers(0, 2**32 - 1))
    def fuzz(kwargs: dict[str, Any], render_mode: str | None, corruption: dict | None, seed: int) -> None:
        if corruption is not None:
            kwargs["corruption"] = corruption
        env, exc = call(gym.make, env_id, render_mode=render_mode, **kwargs)
        check_outcome(exc)
        if env is None:
            return
        try:
            obs, _ = env.reset(seed=seed)
            assert env.observation_space.contains(obs)
            env.action_space.seed(seed)
            for _ in range(3):
                if any(check_step(env, env.step(env.action_space.sample()))):
                    break
        finally:
            env.close()

    fuzz()


# -- what the fuzzing found, one example per known bug -------------------------------------------------------
TRACKING, FACE = "vantage/ActiveTracking-v0", "vantage/DroneFaceRecognition-v0"


def _stepped(env_id: str, kwargs: dict[str, Any], action: Any) -> Callable[[dict], Any]:
    def run(built: dict) -> Any:
        env = get_env(built, env_id, kwargs)
        env.reset(seed=0)
        return env.step(action)

    return run


def _reset(env_id: str, options: Any) -> Callable[[dict], Any]:
    return lambda built: get_env(built, env_id, {}).reset(seed=0, options=options)


def _made(env_id: str, **kwargs: Any) -> Callable[[dict], Any]:
    def run(built: dict) -> Any:
        get_env(built, env_id, {})  # the models load once
        gym.make(env_id, **kwargs).close()

    return run


#: Inputs the fuzzing once broke the environments with -> (the input, what went wrong); each now gets a named error.
FOUND_INPUTS: dict[str, tuple[Callable[[dict], Any], str]] = {
    "discrete-action-conversion": (_stepped(TRACKING, {}, [[], [0.5, 0.5]]),
                                   "envs/tasks/base.py decode_discrete: np.asarray of a ragged list raises ValueError"),
    "tracking-continuous-action-conversion": (
        _stepped(TRACKING, {"action_mode": "continuous"}, "x"),
        "envs/tasks/active_tracking.py decode_action: np.asarray(action, float64) raises ValueError/TypeError for "
        "text, dicts and ragged lists (and silently drops the imaginary part of complex arrays)"),
    "corruption-not-a-mapping": (_made(TRACKING, corruption="noise"),
                                 "envs/tasks/base.py VantageEnv.__init__: dict(corruption) raises ValueError"),
    "reset-options-not-a-mapping": (_reset(TRACKING, 5),
                                    "envs/tasks/base.py _start_episode: dict(options) raises TypeError"),
    "tracking-range-settings": (_made(TRACKING, target_speed_range=0.3),
                                "envs/tasks/active_tracking.py TrackingSettings: target_speed_range unpacked "
                                "unchecked (TypeError for a number, ValueError for 3 items)"),
    "face-range-settings": (_made(FACE, start_height="low"),
                            "envs/tasks/face_recognition.py DroneFaceSettings: start_height unpacked unchecked"),
    "tracking-reward-params-not-a-mapping": (_made(TRACKING, reward_params="td"),
                                             "envs/tasks/active_tracking.py __init__: dict(reward_params) raises"),
    "reward-params-conversion": (_made(TRACKING, reward="hint", reward_params={"margin": "x"}),
                                 "envs/rewards.py: a scheme's parameter converted with float() before any check"),
    "corruption-option-types": (_made(TRACKING, corruption={"rgb": {"noise_std": "x"}}),
                                "envs/observables.py Observable: math.isfinite(noise_std) of a string (TypeError)"),
    "face-start-option-conversion": (_reset(FACE, {"start": {"distance": "far"}}),
                                     "envs/tasks/face_recognition.py _check_options: float(start['distance']) "
                                     "before any check"),
    "setting-named-self": (_made(TRACKING, self=1),
                           "envs/tasks/*.py: a setting named self collides with __init__'s self (TypeError 'got "
                           "multiple values'); make self positional-only or check the names first"),
    "tracking-k-unbounded": (_made(TRACKING, k=10**12),
                             "envs/tasks/active_tracking.py TrackingSettings: k has no upper bound; k=10**12 asks "
                             "numpy for 14.6 TiB of wheel levels (MemoryError; k=10**9 would exhaust memory)"),
}


@pytest.mark.parametrize("case", list(FOUND_INPUTS))
def test_inputs_the_fuzzing_found_are_refused_by_name(built: dict, case: str) -> None:
    _, exc = call(FOUND_INPUTS[case][0], built)
    assert isinstance(exc, VantageError), f"{case}: unnamed {type(exc).__name__}: {exc}"
