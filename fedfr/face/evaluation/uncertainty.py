"""Confidence intervals for the personalised protocol: a bootstrap over seeds, clients and
identities.

A client's personalised scores are kept grouped by identity (``ClientScores``), so that one
bootstrap replicate can redraw, at every level, with replacement:

1. the seeds (independent training runs) when there are several,
2. the clients of each seed,
3. each drawn client's local identities (their genuine pairs, their rows of impostor pairs and
   their mated 1:N probes) and the other clients' identities (columns of impostor pairs and
   non-mated probes).

Identities, not pairs, are the resampled unit: pairs that share an image are not independent.
The metric of a replicate is the mean over its drawn clients (then over its drawn seeds), as
the point estimate is. Every model is resampled with the SAME draws, so the interval of a
difference between two models (``paired_difference``) is a paired bootstrap.
The 1:N gallery (one mean training feature per local identity) is held fixed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedfr.face.evaluation.metrics import (
    _as_feats,
    _as_labels,
    identification_from_matches,
    level_key,
    tar_at_far,
    top_matches,
)

__all__ = ["ClientScores", "client_scores", "client_metrics", "Interval", "bootstrap",
           "paired_difference", "mean_metrics"]


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class ClientScores:
    """One client's personalised-protocol scores for one model, grouped for resampling.

    genuine: per local identity (K_l entries) its within-identity test pair scores (float32);
    impostor: (n, o) scores local test image x other clients' test image;
    local_groups: (n,) local identity index 0..K_l-1 of each impostor row / mated probe;
    other_groups: (o,) identity index 0..G-1 of each impostor column / non-mated probe;
    mated_correct: (n,) bool, top-1 gallery label == own label; mated_top: (n,) top-1 score;
    nonmated_top: (o,) top-1 gallery score of each other client's test image.
    """

    genuine: list[np.ndarray]
    impostor: np.ndarray
    local_groups: np.ndarray
    other_groups: np.ndarray
    mated_correct: np.ndarray
    mated_top: np.ndarray
    nonmated_top: np.ndarray

    @property
    def num_local(self) -> int:
        return len(self.genuine)

    @property
    def num_other(self) -> int:
        return int(self.other_groups.max()) + 1 if self.other_groups.size else 0


def _groups(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (n,) -> (sorted unique labels, index 0..G-1 of each element)."""
    uniq, inv = np.unique(labels, return_inverse=True)
    return uniq, inv.astype(np.int64)


def client_scores(test_feats, test_labels, train_feats, train_labels, other_feats,
                  other_labels) -> ClientScores:
    """Scores of one client from L2-normalised features (the personalised protocol's sets).

    test_feats (n,d) / test_labels (n,): the client's test images; train_feats (m,d) /
    train_labels (m,): its training images (gallery = their normalised mean per identity);
    other_feats (o,d) / other_labels (o,): other clients' test images with labels that tell
    their identities apart (any integers unique per identity).
    """
    lt = _as_feats(test_feats, "test_feats")
    yt = _as_labels(test_labels, lt.shape[0], "test_labels")
    tr = _as_feats(train_feats, "train_feats")
    ytr = _as_labels(train_labels, tr.shape[0], "train_labels")
    ot = _as_feats(other_feats, "other_feats")
    yo = _as_labels(other_labels, ot.shape[0], "other_labels")
    local_ids, local_groups = _groups(yt)
    gallery_labels = np.unique(ytr)
    missing = np.setdiff1d(local_ids, gallery_labels)
    if missing.size:
        raise ValueError(f"test_labels: identity {int(missing[0])} has no training images")
    genuine = []
    for g in range(local_ids.shape[0]):
        f = lt[local_groups == g]
        s = f @ f.T
        genuine.append(s[np.triu_indices(f.shape[0], k=1)].astype(np.float32))
    gallery = _l2n(np.stack([tr[ytr == c].mean(axis=0) for c in gallery_labels]))
    s_loc, i_loc = top_matches(lt, gallery, 1)
    s_oth, _ = top_matches(ot, gallery, 1)
    _, other_groups = _groups(yo)
    return ClientScores(genuine=genuine, impostor=(lt @ ot.T).astype(np.float32),
                        local_groups=local_groups, other_groups=other_groups,
                        mated_correct=gallery_labels[i_loc[:, 0]] == yt,
                        mated_top=s_loc[:, 0].astype(np.float32),
                        nonmated_top=s_oth[:, 0].astype(np.float32))


def _rows(groups: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Indices of the elements of each picked group, in pick order (repeats kept)."""
    order = np.argsort(groups, kind="stable")
    starts = np.searchsorted(groups[order], np.arange(int(groups.max()) + 2 if groups.size else 1))
    return np.concatenate([order[starts[p]:starts[p + 1]] for p in picks]) if len(picks) \
        else np.empty(0, np.int64)


def client_metrics(sc: ClientScores, fars: Sequence[float], fpirs: Sequence[float],
                   local_pick: np.ndarray | None = None,
                   other_pick: np.ndarray | None = None) -> dict[str, float]:
    """tar@FAR, rank1, tpir@FPIR and the pair / probe counts of one client, on all identities
    or on the picked ones (``local_pick``: local identity indices, ``other_pick``: other
    identity indices, repeats allowed). With no picks: ``personalized_protocol``'s values."""
    lp = np.arange(sc.num_local) if local_pick is None else np.asarray(local_pick)
    op = np.arange(sc.num_other) if other_pick is None else np.asarray(other_pick)
    rows = _rows(sc.local_groups, lp)
    cols = _rows(sc.other_groups, op)
    gen = np.concatenate([sc.genuine[p] for p in lp]) if len(lp) else np.empty(0, np.float32)
    imp = sc.impostor[np.ix_(rows, cols)].ravel()
    out = {level_key("tar", f): float(v) for f, v in tar_at_far(gen, imp, fars).items()}
    n, o = rows.shape[0], cols.shape[0]
    labels = np.concatenate([np.where(sc.mated_correct[rows], 1, 0), np.zeros(o, np.int64)])
    probe = np.concatenate([np.ones(n, np.int64), np.full(o, -1, np.int64)])
    scores = np.concatenate([sc.mated_top[rows], sc.nonmated_top[cols]])
    mated = np.concatenate([np.ones(n, bool), np.zeros(o, bool)])
    ident = identification_from_matches(labels[:, None], scores[:, None], probe, mated,
                                        list(fpirs), ranks=(1,))
    out.update({k: float(v) for k, v in ident.items() if k.startswith(("rank", "tpir"))})
    out.update({"num_genuine": float(gen.shape[0]), "num_impostor": float(imp.shape[0]),
                "num_mated": float(n), "num_nonmated": float(o)})
    return out


def mean_metrics(dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Key-wise mean ignoring nan (nan where every value is nan)."""
    keys: list[str] = []
    for d in dicts:
        keys.extend(k for k in d if k not in keys)
    out = {}
    for k in keys:
        vals = [float(d[k]) for d in dicts if k in d and not math.isnan(float(d[k]))]
        out[k] = sum(vals) / len(vals) if vals else math.nan
    return out


@dataclass
class Interval:
    """A point estimate with its bootstrap percentile interval (same units as the metric)."""

    estimate: float
    low: float
    high: float

    def separated_from(self, other: Interval) -> bool:
        """True when the two intervals do not overlap."""
        return self.low > other.high or other.low > self.high


def _replicates(runs: Mapping[str, Sequence[Sequence[ClientScores]]], fars, fpirs,
                num_samples: int, seed: int) -> tuple[dict[str, dict[str, float]],
                                                      dict[str, list[dict[str, float]]]]:
    names = list(runs)
    if not names:
        raise ValueError("bootstrap: no models given")
    shape = [[sc.num_local for sc in seed_scores] for seed_scores in runs[names[0]]]
    for name in names[1:]:
        other = [[sc.num_local for sc in s] for s in runs[name]]
        if other != shape:
            raise ValueError(f"bootstrap: model {name!r} has other seeds / clients / identities "
                             f"than {names[0]!r}; paired resampling needs the same ones")
    if not shape or any(not s for s in shape):
        raise ValueError("bootstrap: every seed needs at least one client")
    point = {n: mean_metrics([mean_metrics([client_metrics(sc, fars, fpirs) for sc in s])
                              for s in runs[n]]) for n in names}
    rng = np.random.default_rng(seed)
    reps: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    first = runs[names[0]]
    for _ in range(int(num_samples)):
        seeds = rng.integers(0, len(first), len(first))
        draws = []
        for s in seeds:
            clients = rng.integers(0, len(first[s]), len(first[s]))
            draws.append([(s, c, rng.integers(0, first[s][c].num_local, first[s][c].num_local),
                           rng.integers(0, first[s][c].num_other, first[s][c].num_other))
                          for c in clients])
        for n in names:
            reps[n].append(mean_metrics([
                mean_metrics([client_metrics(runs[n][s][c], fars, fpirs, lp, op)
                              for s, c, lp, op in seed_draw]) for seed_draw in draws]))
    return point, reps


def _interval(est: float, values: list[float], level: float) -> Interval:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if math.isnan(est) or v.size == 0:
        return Interval(est, math.nan, math.nan)
    a = (1.0 - level) / 2.0
    return Interval(est, float(np.quantile(v, a)), float(np.quantile(v, 1.0 - a)))


def bootstrap(runs: Mapping[str, Sequence[Sequence[ClientScores]]], fars: Sequence[float],
              fpirs: Sequence[float], num_samples: int = 200, level: float = 0.95,
              seed: int = 0, reference: str | None = None
              ) -> tuple[dict[str, dict[str, Interval]], dict[str, dict[str, Interval]]]:
    """Percentile intervals for every model and metric, and paired differences to ``reference``.

    runs: model name -> per seed -> per client ``ClientScores`` (same seeds, clients and local
    identities for every model). Returns (intervals {model: {metric: Interval}}, differences
    {model: {metric: Interval of model - reference}}; empty without a reference).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a value in (0, 1), got {level!r}")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples: expected a positive integer, got {num_samples!r}")
    if reference is not None and reference not in runs:
        raise ValueError(f"reference model {reference!r} is not among {sorted(runs)}")
    point, reps = _replicates(runs, fars, fpirs, num_samples, seed)
    intervals = {n: {k: _interval(v, [r.get(k, math.nan) for r in reps[n]], level)
                     for k, v in point[n].items()} for n in runs}
    diffs: dict[str, dict[str, Interval]] = {}
    if reference is not None:
        for n in runs:
            if n == reference:
                continue
            diffs[n] = {k: _interval(point[n][k] - point[reference].get(k, math.nan),
                                     [r.get(k, math.nan) - q.get(k, math.nan)
                                      for r, q in zip(reps[n], reps[reference], strict=True)],
                                     level)
                        for k in point[n]}
    return intervals, diffs


def paired_difference(runs: Mapping[str, Sequence[Sequence[ClientScores]]], a: str, b: str,
                      fars: Sequence[float], fpirs: Sequence[float], num_samples: int = 200,
                      level: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """Interval of model a - model b for every metric (paired: the same draws for both)."""
    _, diffs = bootstrap({a: runs[a], b: runs[b]}, fars, fpirs, num_samples, level, seed,
                         reference=b)
    return diffs[a]
