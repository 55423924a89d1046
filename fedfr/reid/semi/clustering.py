"""Clustering for SGC-DPL: affinity propagation (AP) with per-point preferences, dense or on a
k-nearest-neighbour graph in bounded memory; the similarity-ranking (SR) adaptive preference;
the semantics-guided search for p* (SG-AP); DBSCAN with scikit-learn's defaults and with SSG's
settings (the ablations of Table 3.4).

AP (Frey & Dueck 2007) on an edge list: every point i has ``m`` outgoing edges (i, idx[i, e]),
edge 0 being the self edge (i, i) whose similarity is i's preference s(i, i). Dense AP is the
case m = N (all pairs); the sparse variant keeps the self edge and the k most similar points
(missing pairs have similarity -inf, so they never exchange messages). Messages per iteration,
with damping lambda (x <- lambda x_old + (1 - lambda) x_new):

    r(i,k) = s(i,k) - max_{k' != k} (a(i,k') + s(i,k'))
    a(i,k) = min(0, r(k,k) + sum_{i' not in {i,k}} max(0, r(i',k)))      (i != k)
    a(k,k) = sum_{i' != k} max(0, r(i',k))

Exemplars: points with r(k,k) + a(k,k) > 0; stop when the exemplar set has not changed for
``convergence_iter`` iterations or after ``max_iter``. Memory: O(N m) floats (edges), never
O(N^2) for the sparse graph; its construction is chunked (``chunk`` rows at a time).
Similarities are s(i,j) = -||x_i - x_j||^2 (the thesis, Sec. 3.3.3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedfr.errors import ConfigError

log = logging.getLogger(__name__)

#: Frey & Dueck's reference code (the thesis: "default hyperparameters proposed in [115]")
FREY_DEFAULTS = {"damping": 0.5, "max_iter": 1000, "convergence_iter": 100}
#: scikit-learn's AffinityPropagation defaults
SKLEARN_DEFAULTS = {"damping": 0.5, "max_iter": 200, "convergence_iter": 15}
ASSIGN_RULES = ("similarity", "messages")


def _features(x: Any) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dim() != 2 or t.shape[0] < 1:
        raise ValueError(f"features: expected a 2-D (N, D) array with N >= 1, got shape "
                         f"{tuple(t.shape)}")
    return t.to(torch.float64)


def sq_distances(x: Any, y: Any | None = None) -> torch.Tensor:
    """(N, M) squared Euclidean distances (float64, clamped at 0)."""
    a = _features(x)
    b = a if y is None else _features(y)
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None] - 2.0 * a @ b.t()
    return d.clamp_min_(0.0)


def similarity_matrix(x: Any) -> np.ndarray:
    """Dense (N, N) s(i, j) = -||x_i - x_j||^2, diagonal 0 (float64)."""
    s = -sq_distances(x)
    s.fill_diagonal_(0.0)
    return s.numpy()


def similarity_row_sums(x: Any) -> np.ndarray:
    """sum_{j != i} s(i, j) for every i, in O(N D):
    -(N |x_i|^2 + sum_j |x_j|^2 - 2 x_i . sum_j x_j)."""
    a = _features(x)
    sq = (a * a).sum(1)
    d = a.shape[0] * sq + sq.sum() - 2.0 * a @ a.sum(0)
    return (-d.clamp_min(0.0)).numpy()


def sr_coefficients(x: Any) -> np.ndarray:
    """The similarity-ranking coefficient (Eq. 3.2): SR_i = N sum_{j!=i} s(i,j) / sum_i sum_{j!=i}
    s(i,j); mean 1, larger for points far from the others. N = the number of rows of ``x``."""
    rows = similarity_row_sums(x)
    total = rows.sum()
    if total == 0:
        return np.ones_like(rows)
    return len(rows) * rows / total


def preferences(x: Any, p: float, mode: str = "adaptive") -> np.ndarray:
    """Per-point preferences s(i, i): ``adaptive`` SR_i * p (Eq. 3.3) or ``uniform`` p."""
    n = _features(x).shape[0]
    if mode == "adaptive":
        return sr_coefficients(x) * p
    if mode == "uniform":
        return np.full(n, float(p))
    raise ConfigError(f"preference mode: expected 'adaptive' or 'uniform', got {mode!r}")


def median_similarity(x: Any, max_pairs: int = 2_000_000, seed: int = 0) -> float:
    """Median of s(i, j), i < j (all pairs, or ``max_pairs`` random pairs when there are more)."""
    return float(np.median(pair_similarities(x, max_pairs=max_pairs, seed=seed)))


def pair_similarities(x: Any, max_pairs: int = 2_000_000, seed: int = 0,
                      chunk: int = 1024) -> np.ndarray:
    """Sorted s(i, j) over pairs i < j of ``x``: all of them, chunked, when there are at most
    ``max_pairs``; otherwise ``max_pairs`` pairs drawn uniformly with ``seed``."""
    a = _features(x)
    n = a.shape[0]
    if n < 2:
        raise ValueError("pair similarities: need at least 2 points")
    total = n * (n - 1) // 2
    if total <= max_pairs:
        parts = []
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            d = sq_distances(a[s:e], a)
            rows = torch.arange(s, e)[:, None]
            keep = torch.arange(n)[None] > rows
            parts.append((-d[keep]).numpy())
        vals = np.concatenate(parts)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, max_pairs)
        j = rng.integers(0, n - 1, max_pairs)
        j = j + (j >= i)
        vals = -sampled_sq_distances(a, i, j)
    return np.sort(vals)


def sampled_sq_distances(a: torch.Tensor, i: np.ndarray, j: np.ndarray,
                         block: int = 65536) -> np.ndarray:
    """||a_i - a_j||^2 for index pairs (i, j), ``block`` pairs at a time (bounded memory)."""
    out = np.empty(len(i), dtype=np.float64)
    for s in range(0, len(i), block):
        ii, jj = torch.as_tensor(i[s:s + block]), torch.as_tensor(j[s:s + block])
        out[s:s + block] = ((a[ii] - a[jj]) ** 2).sum(1).numpy()
    return out


# --- the AP graph and its messages --------------------------------------------------------------
@dataclass
class APGraph:
    """Edges of AP: idx (N, m) int64 targets (column 0 = the point itself), s (N, m) float64
    similarities (column 0 = the preference)."""

    idx: np.ndarray
    s: np.ndarray

    @property
    def n(self) -> int:
        return self.idx.shape[0]

    @property
    def nbytes(self) -> int:
        return self.idx.nbytes + self.s.nbytes


def _check_pref(pref: Any, n: int) -> np.ndarray:
    p = np.asarray(pref, dtype=np.float64)
    if p.ndim == 0:
        p = np.full(n, float(p))
    if p.shape != (n,) or not np.isfinite(p).all():
        raise ValueError(f"preference: expected a finite scalar or ({n},) vector, "
                         f"got shape {p.shape}")
    return p


def dense_graph(s: Any, preference: Any) -> APGraph:
    """All pairs from a dense (N, N) similarity matrix (its diagonal is replaced by
    ``preference``)."""
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"similarity: expected a square matrix, got shape {s.shape}")
    n = s.shape[0]
    pref = _check_pref(preference, n)
    # column 0 = self, then every other point in index order
    others = np.arange(n)[None].repeat(n, 0)
    mask = others != np.arange(n)[:, None]
    idx = np.concatenate([np.arange(n)[:, None], others[mask].reshape(n, n - 1)], 1)
    vals = np.concatenate([pref[:, None], s[mask].reshape(n, n - 1)], 1)
    return APGraph(idx, vals)


def knn_graph(x: Any, preference: Any, k: int, chunk: int = 1024) -> APGraph:
    """The self edge and the ``k`` most similar other points of each row of ``x`` (N, D),
    found ``chunk`` rows at a time (peak extra memory ~ 8 chunk N bytes)."""
    a = _features(x)
    n = a.shape[0]
    if type(k) is not int or k < 1:
        raise ConfigError(f"AP neighbours k: expected an int >= 1, got {k!r}")
    k = min(k, n - 1)
    pref = _check_pref(preference, n)
    idx = np.empty((n, k + 1), dtype=np.int64)
    vals = np.empty((n, k + 1), dtype=np.float64)
    idx[:, 0] = np.arange(n)
    vals[:, 0] = pref
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        d = sq_distances(a[s:e], a)
        d[torch.arange(e - s), torch.arange(s, e)] = float("inf")
        top = torch.topk(d, k, dim=1, largest=False)  # ties: torch's order
        idx[s:e, 1:] = top.indices.numpy()
        vals[s:e, 1:] = -top.values.numpy()
    return APGraph(idx, vals)


@dataclass
class APResult:
    """labels (N,) cluster index 0..C-1 per point; exemplars (C,) point index of each
    cluster's exemplar; iterations run; converged (exemplar set stable for convergence_iter)."""

    labels: np.ndarray
    exemplars: np.ndarray
    iterations: int
    converged: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_clusters(self) -> int:
        return len(self.exemplars)


def _degeneracy_noise(s: np.ndarray, seed: int | None) -> np.ndarray:
    """Frey's / scikit-learn's tiny noise that breaks ties between equal similarities."""
    if seed is None:
        return s
    rng = np.random.default_rng(seed)
    finite = np.isfinite(s)
    out = s.copy()
    out[finite] += ((np.finfo(np.float64).eps * s[finite] + np.finfo(np.float64).tiny * 100)
                    * rng.standard_normal(int(finite.sum())))
    return out


def ap_messages(graph: APGraph, *, damping: float = 0.5, max_iter: int = 1000,
                convergence_iter: int = 100, noise_seed: int | None = 0
                ) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Run AP's message passing on ``graph``. Returns (exemplar mask (N,), r + a on the edges
    (N, m), iterations, converged)."""
    if not 0.5 <= damping < 1.0:
        raise ConfigError(f"AP damping: expected a value in [0.5, 1), got {damping!r}")
    if max_iter < 1 or convergence_iter < 1:
        raise ConfigError("AP max_iter and convergence_iter must be >= 1")
    idx, n = graph.idx, graph.n
    s = _degeneracy_noise(graph.s, noise_seed)
    m = s.shape[1]
    rows = np.arange(n)
    r = np.zeros_like(s)
    a = np.zeros_like(s)
    flat_idx = idx.ravel()
    history = np.zeros((n, convergence_iter), dtype=bool)
    it, converged = 0, False
    tmp = np.empty_like(s)
    for it in range(1, max_iter + 1):
        np.add(a, s, out=tmp)
        first = tmp.argmax(1)
        top1 = tmp[rows, first]
        tmp[rows, first] = -np.inf
        top2 = tmp.max(1) if m > 1 else np.full(n, -np.inf)
        np.subtract(s, top1[:, None], out=tmp)
        tmp[rows, first] = s[rows, first] - top2
        r *= damping
        r += (1.0 - damping) * tmp
        np.maximum(r, 0.0, out=tmp)
        tmp[:, 0] = r[:, 0]
        col = np.bincount(flat_idx, weights=tmp.ravel(), minlength=n)
        new_a = col[idx] - tmp
        self_a = new_a[:, 0].copy()
        np.minimum(new_a, 0.0, out=new_a)
        new_a[:, 0] = self_a
        a *= damping
        a += (1.0 - damping) * new_a
        e = (r[:, 0] + a[:, 0]) > 0
        history[:, it % convergence_iter] = e
        if it >= convergence_iter:
            k = history.sum(1)
            if e.any() and bool(np.all((k == 0) | (k == convergence_iter))):
                converged = True
                break
    return e, r + a, it, converged


def affinity_propagation(x: Any, preference: Any, *, k: int | None = None,
                         damping: float = 0.5, max_iter: int = 1000, convergence_iter: int = 100,
                         assign: str = "similarity", refine: bool = True, chunk: int = 1024,
                         noise_seed: int | None = 0,
                         retry_damping: tuple[float, ...] = ()) -> APResult:
    """AP on features ``x`` (N, D) with s = -squared L2 and per-point ``preference`` (scalar or
    (N,)). k None: dense (all pairs, O(N^2) memory); k int: the sparse k-NN graph.

    assign: ``similarity`` (Frey's and scikit-learn's rule: each point joins its most similar
    exemplar, computed from the features, chunked) or ``messages`` (Eq. 3.1: argmax over its
    edges of r + a; a point whose best edge is not an exemplar joins its most similar one).
    No exemplar at all (AP did not settle) gives one cluster around the point with the largest
    r(k,k) + a(k,k) (``info['fallback']`` = True). retry_damping: when the messages do not
    converge (they oscillate), run again with each of these larger dampings in turn (Frey and
    Dueck's advice) and keep the first that converges (``info['damping']`` = the one used).
    refine: Frey's and scikit-learn's last step
    (each cluster's exemplar becomes the member with the largest summed similarity to the other
    members, then points are re-assigned); with ``assign='messages'`` it is not applied.
    """
    if assign not in ASSIGN_RULES:
        raise ConfigError(f"AP assign: expected one of {ASSIGN_RULES}, got {assign!r}")
    feats = _features(x)
    n = feats.shape[0]
    if n == 1:
        return APResult(np.zeros(1, np.int64), np.zeros(1, np.int64), 0, True)
    graph = (dense_graph(similarity_matrix(feats), preference) if k is None or k >= n - 1
             else knn_graph(feats, preference, k, chunk))
    used = damping
    for used in (damping, *retry_damping):
        e, ra, it, converged = ap_messages(graph, damping=used, max_iter=max_iter,
                                           convergence_iter=convergence_iter,
                                           noise_seed=noise_seed)
        if converged:
            break
    info: dict[str, Any] = {"edges": int(graph.s.size), "graph_bytes": graph.nbytes,
                            "fallback": False, "damping": used}
    ex = np.flatnonzero(e)
    if ex.size == 0:
        ex = np.array([int(np.argmax(ra[:, 0]))])
        info["fallback"] = True
    labels = nearest_exemplar(feats, ex, chunk)
    labels[ex] = np.arange(ex.size)
    if refine and assign == "similarity":
        ex = _refine_exemplars(feats, labels, ex)
        labels = nearest_exemplar(feats, ex, chunk)
    if assign == "messages":
        best = graph.idx[np.arange(n), ra.argmax(1)]
        pos = np.full(n, -1, dtype=np.int64)
        pos[ex] = np.arange(ex.size)
        via = pos[best]
        labels = np.where(via >= 0, via, labels)
    labels[ex] = np.arange(ex.size)
    return APResult(labels, ex, it, converged, info)


def _refine_exemplars(x: torch.Tensor, labels: np.ndarray, ex: np.ndarray) -> np.ndarray:
    out = ex.copy()
    for c in range(ex.size):
        members = np.flatnonzero(labels == c)
        if members.size > 2:
            f = x[torch.as_tensor(members)]
            out[c] = members[int((-sq_distances(f)).sum(0).argmax())]
    return out


def nearest_exemplar(x: Any, exemplars: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index into ``exemplars`` of each row's most similar exemplar (chunked)."""
    a = _features(x)
    c = a[torch.as_tensor(exemplars)]
    out = np.empty(a.shape[0], dtype=np.int64)
    for s in range(0, a.shape[0], chunk):
        out[s:s + chunk] = sq_distances(a[s:s + chunk], c).argmin(1).numpy()
    return out


# --- SG-AP ----------------------------------------------------------------------------------
SEARCH_SETS = ("joint", "labelled")
COUNT_RULES = ("clusters", "exemplars")


@dataclass
class SGAPConfig:
    """The semantics-guided search for p* (Sec. 3.3.4) and the AP settings it uses.

    search_on: cluster X^l u X^u (``joint``, the default: N = N^l + N^u in SR) or X^l alone;
    count: ``clusters`` (distinct clusters the labelled points fall in) or ``exemplars``
    (exemplars that are labelled points); patience: stop when the count stays the same for this
    many consecutive search steps (the thesis: 5); max_steps: a hard cap; retry_damping: larger
    dampings tried in turn when AP oscillates (ours; () = never); preference: adaptive
    (SR x p) or uniform; max_pairs: the sorted labelled similarities searched (all pairs up to
    this many, else a seeded sample); k: AP's neighbours (None = dense).
    """

    search_on: str = "joint"
    count: str = "clusters"
    patience: int = 5
    max_steps: int = 30
    preference: str = "adaptive"
    max_pairs: int = 2_000_000
    k: int | None = None
    damping: float = FREY_DEFAULTS["damping"]
    max_iter: int = FREY_DEFAULTS["max_iter"]
    convergence_iter: int = FREY_DEFAULTS["convergence_iter"]
    retry_damping: tuple[float, ...] = (0.7, 0.9)
    assign: str = "similarity"
    refine: bool = True
    chunk: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if self.search_on not in SEARCH_SETS:
            raise ConfigError(f"SG-AP search_on: expected one of {SEARCH_SETS}, "
                              f"got {self.search_on!r}")
        if self.count not in COUNT_RULES:
            raise ConfigError(f"SG-AP count: expected one of {COUNT_RULES}, got {self.count!r}")
        if self.patience < 1 or self.max_steps < 1:
            raise ConfigError("SG-AP patience and max_steps must be >= 1")

    def ap_kwargs(self) -> dict[str, Any]:
        return {"k": self.k, "damping": self.damping, "max_iter": self.max_iter,
                "convergence_iter": self.convergence_iter, "assign": self.assign,
                "refine": self.refine, "retry_damping": tuple(self.retry_damping),
                "chunk": self.chunk, "noise_seed": self.seed}


@dataclass
class SGAPResult:
    """p*, the final clustering of X^u, the search trace (one dict per step) and why it
    stopped: ``match`` (count == C^l), ``stable`` (patience), ``exhausted`` (interval empty)
    or ``max_steps``."""

    p_star: float
    result: APResult
    trace: list[dict[str, Any]]
    stop: str


def labelled_count(labels: np.ndarray, exemplars: np.ndarray, n_labelled: int,
                   rule: str) -> int:
    """The search's count on the first ``n_labelled`` points (see SGAPConfig.count)."""
    if rule == "clusters":
        return int(np.unique(labels[:n_labelled]).size)
    return int((exemplars < n_labelled).sum())


def sg_ap(xl: Any, num_labelled_ids: int, xu: Any, cfg: SGAPConfig | None = None) -> SGAPResult:
    """Semantics-guided AP: binary-search p over the sorted labelled pairwise similarities,
    starting at their median, until the labelled set's count equals C^l (``num_labelled_ids``)
    or stays fixed for ``patience`` steps; then cluster X^u alone with p* (SR over N^u)."""
    cfg = cfg or SGAPConfig()
    fl, fu = _features(xl), _features(xu)
    if fl.shape[0] < 2:
        raise ConfigError("SG-AP: the labelled set needs at least 2 images")
    cand = pair_similarities(fl, cfg.max_pairs, cfg.seed, cfg.chunk)
    joint = torch.cat([fl, fu]) if cfg.search_on == "joint" else fl
    sr = sr_coefficients(joint) if cfg.preference == "adaptive" else np.ones(joint.shape[0])
    lo, hi = 0, len(cand) - 1
    mid = (len(cand) - 1) // 2  # the median labelled similarity
    trace: list[dict[str, Any]] = []
    best: tuple[int, int, float] | None = None  # (|count - C^l|, -step, p)
    stable, last, stop = 0, None, "max_steps"
    for step in range(cfg.max_steps):
        p = float(cand[mid])
        res = affinity_propagation(joint, sr * p, **cfg.ap_kwargs())
        count = labelled_count(res.labels, res.exemplars, fl.shape[0], cfg.count)
        trace.append({"step": step, "p": p, "count": count, "clusters": res.num_clusters,
                      "ap_iterations": res.iterations, "converged": res.converged})
        log.info("SG-AP step %d: p %.4g -> %d labelled clusters (C^l %d), %d in all", step, p,
                 count, num_labelled_ids, res.num_clusters)
        key = (abs(count - num_labelled_ids), -step, p)
        if best is None or key < best:
            best = key
        stable = stable + 1 if count == last else 1
        last = count
        if count == num_labelled_ids:
            stop = "match"
            break
        if stable >= cfg.patience:
            stop = "stable"
            break
        if count > num_labelled_ids:
            hi = mid - 1  # over-clustering: a smaller (more negative) p
        else:
            lo = mid + 1
        if lo > hi:
            stop = "exhausted"
            break
        mid = (lo + hi) // 2
    assert best is not None
    p_star = best[2]
    pref = preferences(fu, p_star, cfg.preference)
    final = affinity_propagation(fu, pref, **cfg.ap_kwargs())
    return SGAPResult(p_star, final, trace, stop)


def plain_ap(xu: Any, cfg: SGAPConfig | None = None, preference: str = "uniform") -> APResult:
    """The ablation's standard AP on X^u: p = the median of X^u's similarities (Frey's default),
    uniform (standard AP) or SR-weighted (``adaptive``)."""
    cfg = cfg or SGAPConfig()
    p = median_similarity(xu, cfg.max_pairs, cfg.seed)
    return affinity_propagation(xu, preferences(xu, p, preference), **cfg.ap_kwargs())


# --- DBSCAN (Table 3.4) -------------------------------------------------------------------------
def _sklearn_cluster():
    try:
        from sklearn import cluster
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise ConfigError("DBSCAN needs scikit-learn (make install)") from exc
    return cluster


def medoid_exemplars(x: Any, labels: np.ndarray) -> np.ndarray:
    """For clusters 0..C-1 of ``labels`` (-1 = noise): the member nearest the cluster mean."""
    a = _features(x)
    out = []
    for c in range(int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0):
        members = np.flatnonzero(labels == c)
        centre = a[torch.as_tensor(members)].mean(0, keepdim=True)
        out.append(members[int(sq_distances(a[torch.as_tensor(members)], centre).argmin())])
    return np.asarray(out, dtype=np.int64)


def dbscan_default(x: Any) -> APResult:
    """scikit-learn's DBSCAN with its defaults (eps 0.5, min_samples 5, Euclidean) on the
    features; noise points get label -1. Exemplars: cluster medoids (``medoid_exemplars``)."""
    labels = _sklearn_cluster().DBSCAN().fit_predict(_features(x).numpy())
    return APResult(labels.astype(np.int64), medoid_exemplars(x, labels), 0, True,
                    {"noise": int((labels < 0).sum())})


def dbscan_ssg(x: Any, rho: float = 1.6e-3, min_samples: int = 4, k1: int = 20,
               k2: int = 6) -> APResult:
    """DBSCAN as in SSG [131]: the k-reciprocal Jaccard distance (k1 20, k2 6), eps = the mean
    of the smallest ``rho`` share of its pairwise values (upper triangle), min_samples 4. Runs
    on HSR's streamed graph (``fedfr.reid.unsup.clustering.jaccard_graph``: bounded memory, no
    N x N matrix), so the ablation row scales to Market / Duke."""
    from fedfr.reid.unsup.clustering import dbscan_labels, jaccard_graph

    a = _features(x).float()
    n = a.shape[0]
    graph = jaccard_graph(a, rho=rho, k1=min(k1, n - 1), k2=min(k2, n - 1))
    labels = dbscan_labels(graph, min_samples)
    return APResult(labels.astype(np.int64), medoid_exemplars(x, labels), 0, True,
                    {"noise": int((labels < 0).sum()), "eps": graph.eps})
