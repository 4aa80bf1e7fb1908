"""Margin losses against hand-computed values; TAR@FAR, ROC and open-set figures against hand-built scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.errors import InvalidArgumentError
from perception.faces.margin import MarginHead, margin_logits
from perception.faces.verification import open_set_report, pair_scores, roc_curve, tar_at_far, threshold_for_far


def test_cosface_logits_and_loss_by_hand() -> None:
    cos = torch.tensor([[0.8, 0.2]])
    logits = margin_logits(cos, torch.tensor([0]), "cosface", scale=10.0, margin=0.3)
    assert logits.tolist()[0] == pytest.approx([5.0, 2.0])
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-3.0)), rel=1e-6)


def test_arcface_logits_by_hand_including_the_fallback_past_pi() -> None:
    cos = torch.tensor([[0.8, 0.2], [-0.95, 0.3]], dtype=torch.float64)
    logits = margin_logits(cos, torch.tensor([0, 0]), "arcface", scale=10.0, margin=0.5)
    # cos(acos(0.8) + 0.5) = 0.8 cos 0.5 - 0.6 sin 0.5
    assert logits[0, 0].item() == pytest.approx(10 * (0.8 * 0.8775825619 - 0.6 * 0.4794255386), rel=1e-8)
    assert logits[0, 1].item() == pytest.approx(2.0)
    # theta = acos(-0.95) > pi - 0.5: the linear fallback -0.95 - 0.5 sin 0.5
    assert logits[1, 0].item() == pytest.approx(10 * (-0.95 - 0.5 * 0.4794255386), rel=1e-8)
    assert logits[1, 1].item() == pytest.approx(3.0)


def test_margin_head_loss_matches_the_logits_and_rejects_unknown_kinds() -> None:
    torch.manual_seed(0)
    head = MarginHead(4, 3, scale=8.0, margin=0.2, kind="arcface")
    emb = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    labels = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        cos = emb @ torch.nn.functional.normalize(head.weight, dim=1).T
        want = torch.nn.functional.cross_entropy(margin_logits(cos, labels, "arcface", 8.0, 0.2), labels)
        assert float(head(emb, labels)) == pytest.approx(float(want))
    with pytest.raises(InvalidArgumentError, match="sphereface"):
        MarginHead(4, 3, kind="sphereface")


IMPOSTOR = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
GENUINE = [0.95, 0.85, 0.81, 0.8, 0.5]


@pytest.mark.parametrize(("far", "tar", "achieved"), [(0.1, 0.6, 0.1), (0.0, 0.2, 0.0), (0.25, 0.8, 0.2),
                                                      (1.0, 1.0, 1.0)])
def test_tar_at_far_by_hand(far: float, tar: float, achieved: float) -> None:
    res = tar_at_far(GENUINE, IMPOSTOR, far)
    assert res["tar"] == pytest.approx(tar) and res["far"] == pytest.approx(achieved)
    assert res["far"] <= far


def test_threshold_rejects_ties_rather_than_exceed_the_far() -> None:
    thr = threshold_for_far([0.5, 0.5, 0.5, 0.1], 0.5)
    assert thr > 0.5 and np.mean(np.array([0.5, 0.5, 0.5, 0.1]) >= thr) == 0.0
    with pytest.raises(InvalidArgumentError):
        threshold_for_far([], 0.1)
    with pytest.raises(InvalidArgumentError):
        threshold_for_far([0.1], 1.5)


def test_roc_curve_by_hand() -> None:
    far, tar, thr = roc_curve([0.9, 0.6], [0.7, 0.2])
    assert thr.tolist() == [0.9, 0.7, 0.6, 0.2]
    assert tar.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert far.tolist() == [0.0, 0.5, 0.5, 1.0]


def test_pair_scores_and_open_set_report_by_hand() -> None:
    # gallery of 2; probes: a (col 0), b (col 1), an unknown, and a far-away a
    sims = np.array([[0.9, 0.1], [0.3, 0.6], [0.55, 0.2], [0.4, 0.45]])
    truth = np.array([0, 1, -1, 0])
    gen, imp = pair_scores(sims, truth)
    assert sorted(gen.tolist()) == [0.4, 0.6, 0.9]
    assert sorted(imp.tolist()) == [0.1, 0.2, 0.3, 0.45, 0.55]
    rep = open_set_report(sims, truth, threshold=0.5, distance=[1.0, 1.2, 2.0, 6.0], yaw=[0, 10, -20, 0],
                          pitch=[25, 5, 30, -40])
    assert rep["frontal_3m_n"] == 2 and rep["frontal_3m_identification"] == 1.0
    assert rep["frontal_3m_acceptance"] == 1.0
    assert rep["open_set_rejection"] == 0.0  # the unknown scores 0.55 >= 0.5 with a
    assert rep["close_range_n"] == 1 and rep["close_range_acceptance"] == 1.0  # only probe 0 has a steep pitch
    # frontal within 3 m: genuine 0.9, 0.6; impostors 0.1, 0.3, 0.55, 0.2 -> at FAR 1 % the threshold is above 0.55
    assert rep["tar_at_far_1e-2"] == 1.0 and rep["verification"]["tar_at_far_1e-2"]["far"] == 0.0
    assert open_set_report(sims, truth, 0.5, [1.0] * 4, [0] * 4)["close_range_acceptance"] is None
