"""Progressive data selection (Sec. 3.3.6, Eq. 3.4): tau_l from the labelled set's distance
distributions, and the per-cluster reliable subsets X^r.

tau_l: the squared Euclidean distance where the positive-pair (same identity) and the
negative-pair (different identities) distance densities of X^l cross (Fig. 3.3). ``histogram``
(the default): both densities as normalised histograms over ``bins`` shared bins; tau_l is the
first bin edge, going up from the positive mode, where the negative density reaches the
positive one. ``balanced``: the threshold that minimises FNR + FPR exactly (what the crossing of
two normalised densities minimises), by sorting. tau = tau_l + d_t with d_t = (t - 1) x step
at iteration t (d_1 = 0); ``step_units`` "distance" (the thesis: +1 in squared-distance units)
or "tau_l" (+step x tau_l, for features whose scale makes a step of 1 meaningless).

Which distances form the two distributions (``pairs``): ``pairwise`` (the thesis, Fig. 3.3:
all pairs of X^l) or ``exemplar`` (ours: each labelled image's distance to its own identity's
exemplar (positive) and to the nearest other identity's exemplar (negative); exemplar = the
member nearest the identity's mean). ``exemplar`` measures the quantity Eq. 3.4 thresholds (a
member's distance to its exemplar; the text calls tau_l "the expected maximum distance between
an exemplar and its positive members"), and its negatives are the distances that decide a wrong
assignment (a point joins the wrong cluster when a wrong exemplar is its nearest); with a weak
model, ``pairwise``'s crossing admits nearly every clustered point (docs/unsupervised-reid.md,
SGC-DPL, "What was wrong and what changed").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedfr.errors import ConfigError
from fedfr.reid.semi.clustering import (
    _features,
    medoid_exemplars,
    sampled_sq_distances,
    sq_distances,
)

TAU_RULES = ("histogram", "balanced")
TAU_PAIRS = ("pairwise", "exemplar")
STEP_UNITS = ("distance", "tau_l")


def pair_distances(x: Any, labels: Any, max_pairs: int = 2_000_000, seed: int = 0,
                   chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) squared distances over pairs i < j of ``x`` (N, D); when there are
    more than ``max_pairs`` pairs, a seeded uniform sample of that many."""
    a = _features(x)
    y = torch.as_tensor(np.asarray(labels)).long()
    n = a.shape[0]
    if y.shape != (n,):
        raise ValueError(f"labels: expected ({n},), got {tuple(y.shape)}")
    if n * (n - 1) // 2 <= max_pairs:
        pos, neg = [], []
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            d = sq_distances(a[s:e], a)
            upper = torch.arange(n)[None] > torch.arange(s, e)[:, None]
            same = y[s:e, None] == y[None]
            pos.append(d[upper & same].numpy())
            neg.append(d[upper & ~same].numpy())
        return np.concatenate(pos), np.concatenate(neg)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, max_pairs)
    j = rng.integers(0, n - 1, max_pairs)
    j = j + (j >= i)
    d = sampled_sq_distances(a, i, j)
    same = (y[i] == y[j]).numpy()
    return d[same], d[~same]


def exemplar_distances(x: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(positive (N,), negative (N,)) squared distances of each row of ``x`` (N, D) to its own
    identity's exemplar and to the nearest exemplar of another identity (``labels`` (N,);
    exemplar = ``medoid_exemplars``). Needs 2+ identities."""
    a = _features(x)
    y = np.asarray(labels)
    if y.shape != (a.shape[0],):
        raise ValueError(f"labels: expected ({a.shape[0]},), got {y.shape}")
    _, y = np.unique(y, return_inverse=True)
    if y.max(initial=0) < 1:
        raise ConfigError("tau_l: the labelled set needs 2+ identities")
    d = sq_distances(a, a[torch.as_tensor(medoid_exemplars(a, y))]).numpy()  # (N, C)
    rows = np.arange(y.size)
    pos = d[rows, y].copy()
    d[rows, y] = np.inf
    return pos, d.min(1)


def tau_from_distances(pos: np.ndarray, neg: np.ndarray, rule: str = "histogram",
                       bins: int = 100) -> float:
    """The crossing of the positive and negative distance distributions (see the module)."""
    if rule not in TAU_RULES:
        raise ConfigError(f"tau_l rule: expected one of {TAU_RULES}, got {rule!r}")
    if pos.size == 0 or neg.size == 0:
        raise ConfigError("tau_l: the labelled set needs both positive pairs (an identity with "
                          "2+ images) and negative pairs (2+ identities)")
    if rule == "balanced":
        values = np.concatenate([pos, neg])
        order = np.argsort(values, kind="stable")
        is_pos = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])[order]
        # threshold after k sorted values: FN = pos above, FP = neg at or below
        fn = 1.0 - np.cumsum(is_pos) / pos.size
        fp = np.cumsum(1.0 - is_pos) / neg.size
        k = int(np.argmin(fn + fp))
        v = values[order]
        return float((v[k] + v[k + 1]) / 2 if k + 1 < v.size else v[k])
    hi = float(max(pos.max(), neg.max()))
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)
    hp, _ = np.histogram(pos, edges, density=True)
    hn, _ = np.histogram(neg, edges, density=True)
    start = int(np.argmax(hp))
    stop = max(int(np.argmax(hn)), start)
    for b in range(start, stop + 1):
        if hn[b] >= hp[b]:
            return float(edges[b])
    return float(edges[stop])


def labelled_tau(x: Any, labels: Any, rule: str = "histogram", bins: int = 100,
                 max_pairs: int = 2_000_000, seed: int = 0, pairs: str = "pairwise") -> float:
    """tau_l of the labelled features ``x`` (N^l, D) with identity ``labels`` (N^l,), from
    ``pairs`` distances (``pairwise`` or ``exemplar``, see the module)."""
    if pairs not in TAU_PAIRS:
        raise ConfigError(f"tau_l pairs: expected one of {TAU_PAIRS}, got {pairs!r}")
    if pairs == "exemplar":
        pos, neg = exemplar_distances(x, labels)
    else:
        pos, neg = pair_distances(x, labels, max_pairs, seed)
    return tau_from_distances(pos, neg, rule, bins)


def threshold(tau_l: float, iteration: int, step: float = 1.0, units: str = "distance") -> float:
    """tau = tau_l + d_t, d_t = (iteration - 1) x step (x tau_l for ``units='tau_l'``);
    ``iteration`` counts from 1."""
    if units not in STEP_UNITS:
        raise ConfigError(f"tau step units: expected one of {STEP_UNITS}, got {units!r}")
    if iteration < 1:
        raise ConfigError(f"SGC-DPL iteration counts from 1, got {iteration}")
    d_t = (iteration - 1) * step * (tau_l if units == "tau_l" else 1.0)
    return tau_l + d_t


@dataclass
class Selection:
    """mask (N^u,) bool: the reliable points; distance (N^u,) squared distance of each point
    to its cluster's exemplar (inf for DBSCAN noise); tau the threshold used."""

    mask: np.ndarray
    distance: np.ndarray
    tau: float

    @property
    def share(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def select_reliable(x: Any, labels: np.ndarray, exemplars: np.ndarray, tau: float) -> Selection:
    """Eq. 3.4: x_i is reliable when ||phi(x_i) - phi(x_{c_i})||^2 < tau (exemplars always are;
    points with label -1, DBSCAN's noise, never)."""
    a = _features(x)
    labels = np.asarray(labels)
    dist = np.full(a.shape[0], np.inf)
    ok = labels >= 0
    if ok.any():
        idx = torch.as_tensor(np.flatnonzero(ok))
        ex = torch.as_tensor(np.asarray(exemplars)[labels[ok]])
        dist[ok] = ((a[idx] - a[ex]) ** 2).sum(1).numpy()
    mask = (dist < tau) & ok
    if len(exemplars):
        mask[np.asarray(exemplars)] = True
    return Selection(mask, dist, float(tau))
