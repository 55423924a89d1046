"""Pseudo-labels for the reliable set (Sec. 3.3.7, Eq. 3.5) and the targets of the expanded
classifier (Sec. 3.3.8).

Soft: y_i^p = softmax(-d(i, 1..C') / T) over the C' exemplars, d the squared Euclidean
distance (Eq. 3.4's) or the Euclidean one, T = 1 (the thesis). Hard: one-hot of the cluster.
The classifier grows to C^l + C' classes: labelled images keep their one-hot class (with
BoT's label smoothing over all classes), reliable images put y^p on the C' new classes and zero
on the C^l old ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from fedfr.errors import ConfigError
from fedfr.reid.models import IdentityClassifier
from fedfr.reid.semi.clustering import _features, sq_distances

LABEL_KINDS = ("soft", "hard")
DISTANCES = ("sqeuclidean", "euclidean")


def soft_pseudo_labels(x: Any, exemplar_features: Any, temperature: float = 1.0,
                       distance: str = "sqeuclidean", chunk: int = 4096) -> Tensor:
    """(N, C') soft labels: softmax of -d(x_i, exemplar_j) / temperature (float32)."""
    if distance not in DISTANCES:
        raise ConfigError(f"pseudo-label distance: expected one of {DISTANCES}, "
                          f"got {distance!r}")
    if not temperature > 0:
        raise ConfigError(f"pseudo-label temperature must be > 0, got {temperature!r}")
    a, c = _features(x), _features(exemplar_features)
    out = []
    for s in range(0, a.shape[0], chunk):
        d = sq_distances(a[s:s + chunk], c)
        if distance == "euclidean":
            d = d.sqrt()
        out.append(torch.softmax(-d / temperature, dim=1).float())
    return torch.cat(out) if out else torch.zeros(0, c.shape[0])


def expanded_targets(labelled: Any, num_labelled_classes: int, pseudo: Tensor,
                     smoothing: float = 0.1) -> Tensor:
    """(N^l + N^r, C^l + C') targets: rows of ``labelled`` (N^l,) class indices, smoothed by
    ``smoothing`` over all classes, then the reliable rows ``pseudo`` (N^r, C')."""
    y = torch.as_tensor(np.asarray(labelled)).long()
    cp = pseudo.shape[1]
    total = num_labelled_classes + cp
    lab = torch.full((len(y), total), smoothing / total)
    lab[torch.arange(len(y)), y] += 1.0 - smoothing
    unl = torch.cat([torch.zeros(pseudo.shape[0], num_labelled_classes), pseudo.float()], 1)
    return torch.cat([lab, unl])


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over the batch of -sum_j t_j log softmax(logits)_j; logits, targets (B, C)."""
    if logits.shape != targets.shape:
        raise ValueError(f"soft CE: logits {tuple(logits.shape)} and targets "
                         f"{tuple(targets.shape)} differ")
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def expand_classifier(old: IdentityClassifier, num_labelled: int, num_new: int,
                      keep_labelled: bool = True) -> IdentityClassifier:
    """A classifier with ``num_labelled + num_new`` classes; with ``keep_labelled`` the first
    ``num_labelled`` rows are copied from ``old`` (the labelled identities' classes), the new
    ones start at N(0, 0.001^2) like BoT's."""
    new = IdentityClassifier(old.dim, num_labelled + num_new)
    if keep_labelled:
        with torch.no_grad():
            new.fc.weight[:num_labelled] = old.fc.weight[:num_labelled].to(new.fc.weight)
    return new
