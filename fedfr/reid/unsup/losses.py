"""HSR's losses (dissertation Eq. 4.1 / 4.2): cross-entropy on the PBH-refined pseudo-labels plus
two weighted soft-plus triplet terms, one on pseudo-label positives (L_trip) and one on the ICM
mutual inter-camera positives (L_ICM).

Weighted triplet (Ristani & Tomasi [48], the thesis's Eq. 4.2), per anchor a with positive set
P(a) and negative set N(a) in the batch (Euclidean distances d):

    w_p = softmax_{p in P(a)}(d_ap),  w_n = softmax_{n in N(a)}(-d_an)
    l_a = softplus(sum_p w_p d_ap - sum_n w_n d_an)

i.e. the per-anchor weighted-sum form of [48] (the thesis writes a looser sum over (a, p, n);
seed-reid.md E.2 item 6). The loss is the mean over the anchors that have at least one positive
and one negative. The weights carry gradient (as in [48]'s and fast-reid's code); ``detach_weights``
treats them as constants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fedfr.metric_losses import pairwise_distance


def weighted_soft_triplet(features: Tensor, pos: Tensor, neg: Tensor, *,
                          metric: str = "euclidean", detach_weights: bool = False) -> Tensor:
    """Weighted soft-plus triplet loss from explicit masks.

    features: (B, d) (the triplet feature f); pos, neg: (B, B) bool, pos[a, b] = b is a
    positive of anchor a (the diagonal is ignored). Returns a scalar (a zero with a graph when
    no anchor has both a positive and a negative).
    """
    b = features.shape[0]
    if pos.shape != (b, b) or neg.shape != (b, b):
        raise ValueError(f"pos / neg: expected ({b}, {b}) masks, got {tuple(pos.shape)} and "
                         f"{tuple(neg.shape)}")
    eye = torch.eye(b, dtype=torch.bool, device=features.device)
    pos = pos.bool() & ~eye
    neg = neg.bool() & ~eye & ~pos
    valid = pos.any(1) & neg.any(1)
    if not bool(valid.any()):
        return features.sum() * 0.0
    d = pairwise_distance(features.float(), metric=metric)[valid]
    pos, neg = pos[valid], neg[valid]
    dw = d.detach() if detach_weights else d
    wp = torch.softmax(dw.masked_fill(~pos, float("-inf")), dim=1)
    wn = torch.softmax((-dw).masked_fill(~neg, float("-inf")), dim=1)
    d_ap = (wp * d.masked_fill(~pos, 0.0)).sum(1)
    d_an = (wn * d.masked_fill(~neg, 0.0)).sum(1)
    return F.softplus(d_ap - d_an).mean()


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(pos, neg) (B, B) masks of a labelled batch: same label / different label."""
    same = labels[:, None] == labels[None, :]
    return same, ~same


def weighted_triplet_from_labels(features: Tensor, labels: Tensor, *,
                                 metric: str = "euclidean") -> Tensor:
    """L_trip: the weighted soft-plus triplet with positives = same pseudo-label."""
    pos, neg = label_masks(labels)
    return weighted_soft_triplet(features, pos, neg, metric=metric)


def icm_masks(batch: Tensor, groups: Tensor, pseudo: Tensor, rank: Tensor) -> tuple[Tensor, Tensor]:
    """(pos, neg) masks of an ICM batch.

    batch: (B,) dataset indices; groups: (B,) the ICM group of each position (an anchor and
    the mutual inter-camera neighbours drawn for it); pseudo: (N,) pseudo-labels of all target
    images (outliers must carry unique labels); rank: (N, K) each image's inter-camera top-K
    list (-1 padding). Positives: the same ICM group. Negatives (thesis Sec. 4.3.2): a different
    pseudo-label from the anchor's and not in the anchor's Rank list.
    """
    pos = groups[:, None] == groups[None, :]
    y = pseudo[batch]
    in_rank = (rank[batch][:, None, :] == batch[None, :, None]).any(-1)  # (B, B)
    neg = (y[:, None] != y[None, :]) & ~in_rank & ~pos
    return pos, neg
