"""Face verification and open-set identification metrics, the way the field reports them.

* **TAR at FAR** (1:1 verification): a *genuine* score compares a probe with its own identity's gallery template,
  an *impostor* score with another identity's (a probe of an identity outside the gallery gives only impostor
  scores). The threshold for a false-accept rate ``far`` is the lowest one at which at most ``far`` of the
  impostor scores are accepted (score ``>=`` threshold); TAR is the share of genuine scores accepted there.
* **ROC / DET**: TAR and FAR over every threshold.
* **Open set** (1:N identification with rejection): an unknown probe is *rejected* when its best gallery score is
  below the operating threshold; an enrolled probe is *accepted* when it is named correctly and its best score
  reaches the threshold. The operating threshold is chosen on held-out identities for a target share of
  unknowns accepted (:func:`threshold_for_far`).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import InvalidArgumentError

#: Distance (m), |yaw| and |pitch| (degrees) bins of the open-set curves.
DISTANCE_BINS = (0.5, 1.0, 1.9, 3.0, 5.0, 8.0, 12.0, 20.0)
YAW_BINS = (0, 15, 30, 45, 60, 90, 180)
PITCH_BINS = (0, 10, 20, 30, 45, 90)
#: "Frontal within 3 m": |yaw| <= 30 degrees and distance <= 3 m.
FRONTAL_YAW, FRONTAL_DISTANCE = 30.0, 3.0
#: "Close range, steep pitch": 0.5-1.9 m, frontal (|yaw| <= 30), camera at least 20 degrees above or below the head.
CLOSE_RANGE = (0.5, 1.9)
STEEP_PITCH = 20.0


def _scores(values: Any, what: str) -> np.ndarray:
    a = np.asarray(values)
    # float32 scores stay float32: a threshold one float64 step above a float32 score would round back onto it
    # when the recogniser compares its float32 similarities with it.
    a = a.reshape(-1) if a.dtype == np.float32 else a.astype(np.float64).reshape(-1)
    if not np.all(np.isfinite(a)):
        raise InvalidArgumentError(f"{what} scores must be finite")
    return a


def threshold_for_far(impostor: Any, far: float) -> float:
    """The lowest threshold that accepts (score ``>=`` threshold) at most ``far`` of the ``impostor`` scores.

    With ``n`` scores the achievable rates are multiples of ``1 / n``; below ``1 / n`` the threshold sits just
    above the highest impostor score.

    Raises:
        InvalidArgumentError: ``far`` is not in [0, 1] or there are no impostor scores.
    """
    imp = _scores(impostor, "impostor")
    if not 0.0 <= far <= 1.0:
        raise InvalidArgumentError(f"false-accept rate must be in [0, 1], got {far!r}")
    if not len(imp):
        raise InvalidArgumentError("no impostor scores to choose a threshold from")
    desc = np.sort(imp)[::-1]
    k = int(np.floor(far * len(desc) + 1e-9))  # at most k impostors may be accepted
    if k >= len(desc):
        return float(desc[-1])
    # Accept only scores above the (k+1)-th highest impostor: ties with it are rejected too.
    return float(np.nextafter(desc[k], desc.dtype.type(np.inf)))


def tar_at_far(genuine: Any, impostor: Any, far: float) -> dict[str, float]:
    """TAR at the threshold of :func:`threshold_for_far`: ``{"tar", "far" (achieved), "threshold"}``."""
    gen, imp = _scores(genuine, "genuine"), _scores(impostor, "impostor")
    if not len(gen):
        raise InvalidArgumentError("no genuine scores")
    thr = threshold_for_far(imp, far)
    return {"tar": float(np.mean(gen >= thr)), "far": float(np.mean(imp >= thr)), "threshold": thr}


def roc_curve(genuine: Any, impostor: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, tar, threshold)`` at every distinct score, thresholds descending (accept ``>=``)."""
    gen, imp = np.sort(_scores(genuine, "genuine")), np.sort(_scores(impostor, "impostor"))
    thr = np.unique(np.concatenate([gen, imp]))[::-1]
    tar = 1.0 - np.searchsorted(gen, thr, side="left") / max(len(gen), 1)
    far = 1.0 - np.searchsorted(imp, thr, side="left") / max(len(imp), 1)
    return far, tar, thr


def pair_scores(sims: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores of probe-vs-template similarities ``sims`` ``(N, G)``; ``truth[i]`` is probe
    ``i``'s gallery column, or -1 for an identity outside the gallery."""
    sims = np.asarray(sims, np.float64)
    truth = np.asarray(truth)
    mask = np.zeros(sims.shape, bool)
    known = truth >= 0
    mask[np.flatnonzero(known), truth[known]] = True
    return sims[mask], sims[~mask]


def open_set_report(sims: np.ndarray, truth: np.ndarray, threshold: float, distance: np.ndarray, yaw: np.ndarray,
                    pitch: np.ndarray | None = None) -> dict[str, Any]:
    """Verification, identification and open-set figures of probes against a gallery.

    Args:
        sims: cosine similarities ``(N, G)`` of probes to gallery templates.
        truth: gallery column of each probe, or -1 for an unknown (never enrolled, never trained on) identity.
        threshold: the operating (unknown) threshold.
        distance: camera-to-head distance of each probe (m).
        yaw: camera azimuth from frontal (degrees).
        pitch: camera elevation seen from the head (degrees), or ``None`` when not recorded.

    Returns:
        ``tar_at_far_1e-2`` and ``tar_at_far_1e-3`` (frontal within 3 m), ``open_set_rejection`` (unknown
        probes frontal within 3 m rejected at ``threshold``), ``close_range_acceptance`` (enrolled probes at
        0.5-1.9 m, frontal, |pitch| >= 20 degrees, named correctly and accepted; ``None`` without pitch),
        ``frontal_3m_identification`` (rank-1) and ``frontal_3m_acceptance``, ``verification`` (details and
        counts), ``roc`` (a thinned curve) and ``by_distance`` / ``by_yaw`` / ``by_pitch`` bins.
    """
    sims = np.asarray(sims, np.float64)
    truth = np.asarray(truth)
    dist, ayaw = np.asarray(distance, float), np.abs(np.asarray(yaw, float))
    apitch = None if pitch is None else np.abs(np.asarray(pitch, float))
    known = truth >= 0
    best = sims.argmax(1) if sims.shape[1] else np.zeros(len(sims), int)
    top = sims.max(1) if sims.shape[1] else np.full(len(sims), -np.inf)
    rank1 = known & (best == truth)
    accepted = rank1 & (top >= threshold)
    rejected = top < threshold
    frontal = (ayaw <= FRONTAL_YAW) & (dist <= FRONTAL_DISTANCE)

    def rate(values: np.ndarray, mask: np.ndarray) -> float | None:
        return float(values[mask].mean()) if mask.any() else None

    gen, imp = pair_scores(sims[frontal], truth[frontal])
    verification: dict[str, Any] = {"genuine_n": len(gen), "impostor_n": len(imp)}
    out: dict[str, Any] = {}
    for far, key in ((1e-2, "tar_at_far_1e-2"), (1e-3, "tar_at_far_1e-3")):
        if len(gen) and len(imp):
            res = tar_at_far(gen, imp, far)
            out[key] = res["tar"]
            verification[key] = res
        else:
            out[key] = None
    close = known & (ayaw <= FRONTAL_YAW) & (dist >= CLOSE_RANGE[0]) & (dist <= CLOSE_RANGE[1])
    if apitch is not None:
        close &= apitch >= STEEP_PITCH
    out.update({
        "open_set_rejection": rate(rejected, ~known & frontal),
        "open_set_rejection_all": rate(rejected, ~known),
        "unknown_n": int((~known & frontal).sum()),
        "close_range_acceptance": rate(accepted, close) if apitch is not None else None,
        "close_range_n": int(close.sum()) if apitch is not None else 0,
        "frontal_3m_identification": rate(rank1, known & frontal),
        "frontal_3m_acceptance": rate(accepted, known & frontal),
        "frontal_3m_n": int((known & frontal).sum()),
        "threshold": float(threshold),
        "verification": verification,
    })
    if len(gen) and len(imp):
        far, tar, thr = roc_curve(gen, imp)
        grid = np.unique(np.clip(np.geomspace(1e-4, 1.0, 41), 0, 1))
        idx = np.minimum(np.searchsorted(far, grid, side="right") - 1, len(far) - 1).clip(0)
        out["roc"] = {"far": far[idx].tolist(), "tar": tar[idx].tolist(), "threshold": thr[idx].tolist()}

    def bins(values: np.ndarray, edges: tuple[float, ...], base: np.ndarray, unit: str) -> list[dict[str, Any]]:
        rows = []
        for lo, hi in pairwise(edges):
            m = base & (values >= lo) & (values < hi)
            rows.append({f"range_{unit}": [lo, hi], "identification": rate(rank1, m & known),
                         "acceptance": rate(accepted, m & known), "open_set_rejection": rate(rejected, m & ~known),
                         "n_known": int((m & known).sum()), "n_unknown": int((m & ~known).sum())})
        return rows

    out["by_distance"] = bins(dist, DISTANCE_BINS, ayaw <= FRONTAL_YAW, "m")
    out["by_yaw"] = bins(ayaw, YAW_BINS, dist <= FRONTAL_DISTANCE, "deg")
    if apitch is not None:
        out["by_pitch"] = bins(apitch, PITCH_BINS, (ayaw <= FRONTAL_YAW) & (dist <= FRONTAL_DISTANCE), "deg")
    return out


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """The ROC (TAR over FAR, log scale) and open-set rejection / acceptance over distance and pitch, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    panels = 3 if "by_pitch" in report else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    roc = report.get("roc")
    if roc:
        axes[0].semilogx(np.maximum(roc["far"], 1e-5), roc["tar"], "o-", ms=3)
    for far in (1e-2, 1e-3):
        axes[0].axvline(far, color="grey", linestyle=":")
    axes[0].set_xlabel("FAR (impostor pairs accepted)")
    axes[0].set_ylabel("TAR (frontal, <= 3 m)")
    axes[0].set_title("ROC, verification against the gallery")

    def curve(ax: Any, rows: list[dict[str, Any]], key: str, xlabel: str) -> None:
        x = [np.mean(r[key]) for r in rows]
        for name, style in (("acceptance", "o-"), ("identification", "s--"), ("open_set_rejection", "^-")):
            ax.plot(x, [np.nan if r[name] is None else r[name] for r in rows], style, label=name.replace("_", " "))
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)

    curve(axes[1], report["by_distance"], "range_m", "distance (m), |yaw| <= 30")
    if panels == 3:
        curve(axes[2], report["by_pitch"], "range_deg", "|pitch| (deg), frontal, <= 3 m")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
