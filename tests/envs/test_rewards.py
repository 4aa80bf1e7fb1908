"""Each reward scheme against hand-computed values."""

import numpy as np
import pytest

from envs.errors import InvalidArgumentError, UnknownNameError
from envs.rewards import (
    RECOGNITION_REWARDS,
    HintReward,
    NegativeReward,
    PaperRecognitionReward,
    ShapedRecognitionReward,
    TDReward,
    make_reward,
    minmax_normalize,
)

SIGNALS = ("distance_error", "angle_error")


def _run(scheme, sequence):
    scheme.reset(sequence[0])
    return [scheme(errors) for errors in sequence[1:]]


def test_td_reward_is_previous_minus_current_per_signal():
    seq = [{"distance_error": 0.10, "angle_error": 0.30},
           {"distance_error": 0.07, "angle_error": 0.35},
           {"distance_error": 0.08, "angle_error": 0.05}]
    (t1, terms1), (t2, terms2) = _run(TDReward(SIGNALS), seq)
    assert terms1["distance_error"] == pytest.approx(0.03)
    assert terms1["angle_error"] == pytest.approx(-0.05)
    assert t1 == pytest.approx(-0.02)
    assert terms2 == pytest.approx({"distance_error": -0.01, "angle_error": 0.30})
    assert t2 == pytest.approx(0.29)


def test_td_rewards_telescope_over_an_episode():
    rng = np.random.default_rng(0)
    seq = [{"distance_error": float(d), "angle_error": float(a)} for d, a in rng.uniform(0, 1, (50, 2))]
    total = sum(r for r, _ in _run(TDReward(SIGNALS), seq))
    first, last = seq[0], seq[-1]
    assert total == pytest.approx(sum(first.values()) - sum(last.values()))


def test_negative_reward_and_weights():
    scheme = NegativeReward(SIGNALS, weights={"angle_error": 0.5})
    scheme.reset({"distance_error": 1.0, "angle_error": 1.0})
    total, terms = scheme({"distance_error": 0.2, "angle_error": 0.4})
    assert terms == pytest.approx({"distance_error": -0.2, "angle_error": -0.2})
    assert total == pytest.approx(-0.4)


def test_hint_reward_goal_improve_and_penalty_cases():
    scheme = HintReward(("e",), c_g=1.0, c_m=0.5, c_p=-1.2, margin=0.05)
    seq = [{"e": 0.2}, {"e": 0.04}, {"e": 0.06}, {"e": 0.055}, {"e": 0.055}, {"e": 0.049}]
    values = [r for r, _ in _run(scheme, seq)]
    assert values == pytest.approx([1.0, -1.2, 0.5, -1.2, 1.0])


def test_hint_margin_per_signal():
    scheme = HintReward(SIGNALS, margin={"distance_error": 0.01, "angle_error": 0.2})
    scheme.reset({"distance_error": 0.5, "angle_error": 0.5})
    _, terms = scheme({"distance_error": 0.02, "angle_error": 0.1})
    assert terms == {"distance_error": 0.5, "angle_error": 1.0}


def test_make_reward_unknown_name_lists_known():
    with pytest.raises(UnknownNameError, match="hint, negative, td"):
        make_reward("tdd", SIGNALS)


@pytest.mark.parametrize("bad", [float("nan"), -0.1, float("inf")])
def test_bad_error_values_rejected(bad):
    scheme = TDReward(SIGNALS)
    scheme.reset({"distance_error": 0.1, "angle_error": 0.1})
    with pytest.raises(InvalidArgumentError, match="distance_error"):
        scheme({"distance_error": bad, "angle_error": 0.1})


def test_missing_signal_and_step_before_reset():
    scheme = TDReward(SIGNALS)
    with pytest.raises(InvalidArgumentError, match="reset"):
        scheme({"distance_error": 0.1, "angle_error": 0.1})
    with pytest.raises(UnknownNameError, match="angle_error"):
        scheme.reset({"distance_error": 0.1})


def test_bad_hint_margin_and_params():
    with pytest.raises(InvalidArgumentError, match="margin"):
        HintReward(SIGNALS, margin=0.0)
    with pytest.raises(InvalidArgumentError, match="bad parameters"):
        make_reward("td", SIGNALS, margin=0.1)


def test_minmax_normalize():
    assert minmax_normalize(np.array([1.0, 3.0, 2.0])) == pytest.approx([0.0, 1.0, 0.5])
    assert minmax_normalize(np.array([2.0, 2.0])) == pytest.approx([0.0, 0.0])
    assert minmax_normalize(np.array([])).size == 0


def test_gain_reward_is_signed_and_rewards_increases():
    scheme = make_reward("gain", ["confidence"])
    assert scheme.signed
    scheme.reset({"confidence": -0.2})
    total, terms = scheme({"confidence": 0.5})
    assert terms == pytest.approx({"confidence": 0.7}) and total == pytest.approx(0.7)


def test_error_schemes_refuse_negative_errors_unless_signed():
    with pytest.raises(InvalidArgumentError, match="must be finite and >= 0"):
        TDReward(("e",)).reset({"e": -0.1})
    scheme = TDReward(("e",), signed=True)
    scheme.reset({"e": -0.1})
    assert scheme({"e": -0.3})[0] == pytest.approx(0.2)
    with pytest.raises(InvalidArgumentError, match="must be finite"):
        scheme({"e": float("nan")})


def _face_signals(**events):
    signals = {"angle": 0.5, "frontal": 1.0, "distance": 2.0, "height": 0.2, "collision": False,
               "recognized": False, "in_zone": False, "correct": False, "similarity": -1.0, "confidence_correct": 0.0}
    return {**signals, **events}


def test_shaped_recognition_reward_terms():
    scheme = ShapedRecognitionReward(bonus=20.0, recognize_penalty=0.05, collision_penalty=1.0)
    scheme.reset(_face_signals())
    total, terms = scheme(_face_signals(angle=0.4, frontal=0.9, distance=1.5, height=0.1))
    assert list(terms) == ["angle", "frontal", "distance", "height", "recognition", "collision"]
    assert terms["angle"] == pytest.approx(0.2) and terms["frontal"] == pytest.approx(0.2)
    assert terms["distance"] == pytest.approx(0.5) and terms["height"] == pytest.approx(0.1)
    assert total == pytest.approx(sum(terms.values()))
    _, terms = scheme(_face_signals(angle=0.4, frontal=0.9, distance=1.5, height=0.1, recognized=True))
    assert terms["recognition"] == -0.05
    _, terms = scheme(_face_signals(angle=0.4, frontal=0.9, distance=1.5, height=0.1, recognized=True, in_zone=True,
                                    confidence_correct=0.9))
    assert terms["recognition"] == pytest.approx(18.0)
    total, terms = scheme(_face_signals(collision=True))
    assert total == -1.0 and terms["angle"] == 0.0
    with pytest.raises(InvalidArgumentError, match="recognition_bonus"):
        ShapedRecognitionReward(bonus=-1)


def test_paper_recognition_reward_from_the_embedding_distance():
    scheme = PaperRecognitionReward(cutoff=0.7)
    scheme.reset({})
    total, terms = scheme(_face_signals(recognized=True, correct=True, similarity=0.955))
    assert total == pytest.approx(1 - (2 - 2 * 0.955) ** 0.5 / 0.7) and terms == {"recognition": total}
    assert scheme(_face_signals(recognized=True, correct=False, similarity=0.99))[0] == 0.0
    assert scheme(_face_signals(recognized=True, correct=True, similarity=0.5))[0] == 0.0  # beyond the cut-off
    with pytest.raises(InvalidArgumentError, match="distance_cutoff"):
        PaperRecognitionReward(cutoff=3.0)
    assert set(RECOGNITION_REWARDS) == {"shaped", "paper"}
