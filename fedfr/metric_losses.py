"""Metric-learning losses for any domain (re-ID today): label-smoothed cross-entropy and the
batch-hard triplet loss (soft margin, as the thesis, or hinge, as torchreid / BoT).

Every loss returns a scalar, the mean over the batch. Shapes: B = batch size, d = feature size,
K = number of classes.

- ``label_smoothing_ce``: targets q = (1 - eps) * onehot(y) + eps / K (BoT's and
  ``torch.nn.functional.cross_entropy(label_smoothing=eps)``'s convention); eps = 0.1 by default.
- ``batch_hard_triplet_loss`` (Hermans et al. 2017): for each anchor a, d_ap = the largest
  distance to a sample of the same label (a itself excluded), d_an = the smallest to a sample of
  another label; soft margin (``margin=None``, the thesis): log(1 + exp(d_ap - d_an)); hinge
  (``margin=m``, torchreid's 0.3): max(0, d_ap - d_an + m). Distances are Euclidean (not squared)
  or cosine (1 - cos). Anchors with no positive or no negative in the batch are left out; a batch
  without any valid anchor gives a zero loss that still has a gradient graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fedfr.errors import ConfigError
from fedfr.losses import _check_labels as check_labels

__all__ = [
    "DISTANCES",
    "pairwise_distance",
    "label_smoothing_ce",
    "batch_hard_triplet_loss",
    "LabelSmoothingCE",
    "BatchHardTripletLoss",
]

DISTANCES = ("euclidean", "cosine")


def _check_features(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        got = (f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__)
        raise ValueError(f"{name}: expected a 2-D floating-point tensor (B, d), got {got}")


def _check_labels(labels: Tensor, batch: int, num_classes: int | None = None) -> Tensor:
    """(B,) integer labels as long; in [0, num_classes) when ``num_classes`` is given."""
    if num_classes is None:
        return check_labels(labels, batch, -(2**62), 2**62)
    return check_labels(labels, batch, 0, num_classes)


def pairwise_distance(x: Tensor, y: Tensor | None = None, metric: str = "euclidean") -> Tensor:
    """(N, M) distances between the rows of x (N, d) and y (M, d) (y = x if omitted).

    euclidean: ||x_i - y_j||_2 (the square root of the clamped squared distance, so that the
    gradient at zero distance is finite); cosine: 1 - cos(x_i, y_j), in [0, 2].
    """
    if metric not in DISTANCES:
        raise ConfigError(f"metric must be one of {DISTANCES}, got {metric!r}")
    y = x if y is None else y
    _check_features("x", x)
    _check_features("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has feature size {x.shape[1]} but y has {y.shape[1]}")
    if metric == "cosine":
        return 1.0 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).t()
    sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0) - 2.0 * x @ y.t()
    return sq.clamp_min(1e-12).sqrt()


def label_smoothing_ce(logits: Tensor, labels: Tensor, epsilon: float = 0.1) -> Tensor:
    """Cross-entropy with label smoothing, mean over the batch.

    logits: (B, K); labels: (B,) integer in 0..K-1; epsilon in [0, 1). Per sample:
    -sum_j q_j log softmax(logits)_j with q = (1 - epsilon) onehot(y) + epsilon / K.
    """
    _check_features("logits", logits)
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon: expected a value in [0, 1), got {epsilon!r}")
    k = logits.shape[1]
    labels = _check_labels(labels, logits.shape[0], k)
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -logp.gather(1, labels[:, None]).squeeze(1)
    return ((1.0 - epsilon) * nll - epsilon * logp.mean(dim=1)).mean()


def batch_hard_triplet_loss(features: Tensor, labels: Tensor, margin: float | None = None,
                            metric: str = "euclidean", normalize: bool = False) -> Tensor:
    """Batch-hard triplet loss, mean over the valid anchors.

    features: (B, d) (the triplet feature f, before BNNeck); labels: (B,) integer.
    margin None: soft margin softplus(d_ap - d_an) (the thesis); margin m >= 0: hinge
    relu(d_ap - d_an + m) (torchreid / BoT use 0.3). normalize: L2-normalise features first.
    """
    _check_features("features", features)
    labels = _check_labels(labels, features.shape[0])
    if margin is not None and not margin >= 0:
        raise ValueError(f"margin: expected None (soft margin) or a value >= 0, got {margin!r}")
    x = F.normalize(features.float(), dim=1) if normalize else features.float()
    dist = pairwise_distance(x, metric=metric)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not bool(valid.any()):
        return features.sum() * 0.0
    d_ap = dist.masked_fill(~pos_mask, float("-inf")).amax(1)[valid]
    d_an = dist.masked_fill(~neg_mask, float("inf")).amin(1)[valid]
    gap = d_ap - d_an
    per_anchor = F.softplus(gap) if margin is None else F.relu(gap + margin)
    return per_anchor.mean()


class LabelSmoothingCE(nn.Module):
    """``label_smoothing_ce`` as a module: forward(logits (B,K), labels (B,)) -> scalar."""

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return label_smoothing_ce(logits, labels, self.epsilon)


class BatchHardTripletLoss(nn.Module):
    """``batch_hard_triplet_loss`` as a module: forward(features (B,d), labels (B,)) -> scalar."""

    def __init__(self, margin: float | None = None, metric: str = "euclidean",
                 normalize: bool = False) -> None:
        super().__init__()
        self.margin, self.metric, self.normalize = margin, metric, normalize

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        return batch_hard_triplet_loss(features, labels, self.margin, self.metric, self.normalize)
