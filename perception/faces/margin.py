"""Angular-margin softmax losses for face embeddings: CosFace and ArcFace.

Both compare a unit embedding with unit class weights by cosine, and make the true class harder to win by a
margin ``m`` before a scaled softmax, which pulls each identity's embeddings together and pushes identities
apart by an angle — what lets a threshold on cosine similarity reject identities never seen in training:

* CosFace (Wang et al., 2018): the true-class logit is ``s * (cos(theta_y) - m)``;
* ArcFace (Deng et al., 2019): it is ``s * cos(theta_y + m)``; where ``theta_y + m`` would pass ``pi`` (and the
  cosine turn back up), it is ``s * (cos(theta_y) - m * sin(m))`` instead, as in the reference implementation.

Every other logit is ``s * cos(theta_j)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from perception.errors import InvalidArgumentError

MARGIN_LOSSES = ("cosface", "arcface")


def margin_logits(cos: torch.Tensor, labels: torch.Tensor, kind: str = "cosface", scale: float = 30.0,
                  margin: float = 0.35) -> torch.Tensor:
    """The margin-adjusted, scaled logits for cosines ``cos`` ``(N, C)`` and true classes ``labels`` ``(N,)``.

    Raises:
        InvalidArgumentError: ``kind`` is not one of :data:`MARGIN_LOSSES`.
    """
    if kind not in MARGIN_LOSSES:
        raise InvalidArgumentError(f"margin loss {kind!r} is not one of {', '.join(MARGIN_LOSSES)}")
    onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
    if kind == "cosface":
        return scale * (cos - margin * onehot)
    c = cos.clamp(-1.0, 1.0)
    sin = torch.sqrt((1.0 - c * c).clamp_min(0.0))
    phi = c * math.cos(margin) - sin * math.sin(margin)  # cos(theta + m)
    # Past theta = pi - m the cosine would grow again with the angle; fall back to a linear penalty there.
    phi = torch.where(c > math.cos(math.pi - margin), phi, c - margin * math.sin(margin))
    return scale * (onehot * phi + (1.0 - onehot) * c)


class MarginHead(nn.Module):
    """Class weights and the margin loss (training only; the gallery replaces the weights at inference).

    Args:
        embedding_dim: embedding size.
        n_classes: training identities.
        scale: logit scale ``s``.
        margin: margin ``m`` (CosFace: a cosine; ArcFace: radians).
        kind: ``"cosface"`` or ``"arcface"``.
    """

    def __init__(self, embedding_dim: int, n_classes: int, scale: float = 30.0, margin: float = 0.35,
                 kind: str = "cosface") -> None:
        super().__init__()
        if kind not in MARGIN_LOSSES:
            raise InvalidArgumentError(f"margin loss {kind!r} is not one of {', '.join(MARGIN_LOSSES)}")
        self.weight = nn.Parameter(torch.randn(n_classes, embedding_dim) * 0.01)
        self.scale, self.margin, self.kind = scale, margin, kind

    def cosines(self, emb: torch.Tensor) -> torch.Tensor:
        return emb @ F.normalize(self.weight, dim=1).T

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the margin logits of unit embeddings ``emb`` ``(N, D)``."""
        return F.cross_entropy(margin_logits(self.cosines(emb), labels, self.kind, self.scale, self.margin), labels)
