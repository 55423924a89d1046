"""DBSCAN pseudo-labels on the k-reciprocal Jaccard distance, in bounded memory (HSR step 2).

The thesis says only "DBSCAN, same as SSG [131]". We follow SSG's public convention (seed-reid.md
E.2, all options):

- distance: the k-reciprocal Jaccard distance of the target features (Zhong et al.; k1 = 20,
  k2 = 6; ``fedfr.reid.evaluation.rerank``'s sparse k-reciprocal sets, base distance the squared
  Euclidean one, or ``metric="cosine"``);
- eps: the mean of the smallest ``rho`` = 1.6e-3 share of the N (N - 1) / 2 pairwise distances
  (upper triangle), computed at the first iteration and kept (``eps_every_iteration`` in
  hsr.HSRConfig recomputes it), or a fixed value;
- ``min_samples`` = 4 (the point itself counted, scikit-learn's rule), outliers (label -1)
  dropped from training.

Bounded memory: the Jaccard rows are produced ``chunk`` rows at a time; only the running
``rho`` share of the smallest upper-triangle values (for eps) and the pairs within eps (the
DBSCAN graph) are kept, never the N x N matrix: O(chunk N + rho N^2 / 2 + edges). Pairs that
share no k-reciprocal neighbour are at distance exactly 1 and are never stored. DBSCAN itself is
scikit-learn's on the sparse precomputed graph (same labels as on the dense matrix; tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse

from fedfr.errors import ConfigError
from fedfr.reid.evaluation.rerank import K1, K2, _check, _items, _KReciprocal

RHO = 1.6e-3
MIN_SAMPLES = 4


@dataclass
class JaccardGraph:
    """Pairs (i, j), i < j, with Jaccard distance <= ``eps``, and the eps used.

    rows, cols: (E,) int64; dist: (E,) float; n: number of items; eps; pairs_kept_max: the
    largest number of (i, j, d) triples held at once while streaming (memory diagnostic).
    """

    rows: np.ndarray
    cols: np.ndarray
    dist: np.ndarray
    n: int
    eps: float
    pairs_kept_max: int

    def csr(self) -> sparse.csr_matrix:
        """Symmetric (N, N) CSR distance graph with explicit zeros on the diagonal (the
        precomputed-sparse input of scikit-learn's DBSCAN: absent pairs are not neighbours)."""
        n = self.n
        diag = np.arange(n)
        r = np.concatenate([self.rows, self.cols, diag])
        c = np.concatenate([self.cols, self.rows, diag])
        d = np.concatenate([self.dist, self.dist, np.zeros(n)])
        return sparse.csr_matrix((d, (r, c)), shape=(n, n))


def eps_from_smallest(values: np.ndarray, n: int, rho: float = RHO) -> float:
    """SSG's eps: the mean of the smallest ``m = max(1, round(rho * n (n - 1) / 2))`` of the
    upper-triangle distances, given (at least) the smallest ones in ``values``; pairs not given
    are at distance 1 (they pad the mean when fewer than m are given)."""
    if not 0 < rho <= 1:
        raise ConfigError(f"rho={rho}: expected a share in (0, 1]")
    m = max(1, int(round(rho * n * (n - 1) / 2)))
    v = np.sort(np.asarray(values, dtype=np.float64))[:m]
    return float((v.sum() + (m - v.size) * 1.0) / m)


def eps_dense(dist: np.ndarray, rho: float = RHO) -> float:
    """The same eps from a full (N, N) distance matrix (reference)."""
    n = dist.shape[0]
    return eps_from_smallest(dist[np.triu_indices(n, 1)], n, rho)


def jaccard_graph(features: Any, *, eps: float | None = None, rho: float = RHO, k1: int = K1,
                  k2: int = K2, metric: str = "euclidean", chunk: int = 256) -> JaccardGraph:
    """The eps-neighbourhood graph of the k-reciprocal Jaccard distance of (N, D) features.

    eps: given, or (None) SSG's heuristic with ``rho`` computed in the same streaming pass.
    """
    _check(k1, k2, 0.0)
    if eps is not None and not 0.0 < eps < 1.0:
        raise ConfigError(f"eps={eps}: expected a Jaccard distance in (0, 1) (pairs sharing no "
                          f"k-reciprocal neighbour are at 1 and are not stored)")
    x = _items(features, "features", False, metric)
    n = x.shape[0]
    if n < 2:
        raise ConfigError(f"jaccard_graph: need at least 2 items, got {n}")
    kr = _KReciprocal(x, metric, k1, k2, chunk)
    m = max(1, int(round(rho * n * (n - 1) / 2)))
    bound = float(eps) if eps is not None else 1.0  # keep pairs with d <= bound
    keep_r: list[torch.Tensor] = []
    keep_c: list[torch.Tensor] = []
    keep_d: list[torch.Tensor] = []
    held = peak = 0
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        blk = kr.jaccard(s, e, 0, n).clamp_(min=0.0)  # float rounding can dip below 0
        upper = (torch.arange(n, device=blk.device)[None, :]
                 > torch.arange(s, e, device=blk.device)[:, None])
        r, c = ((blk <= bound) & (blk < 1.0) & upper).nonzero(as_tuple=True)
        keep_r.append(r + s)
        keep_c.append(c)
        keep_d.append(blk[r, c])
        held += r.numel()
        if eps is None and held > m:  # keep only the m smallest so far; they bound eps
            d = torch.cat(keep_d)
            top = torch.topk(d, m, largest=False).indices
            rr, cc = torch.cat(keep_r)[top], torch.cat(keep_c)[top]
            dd = d[top]
            bound = float(dd.max())
            keep_r, keep_c, keep_d, held = [rr], [cc], [dd], m
        peak = max(peak, held)
    rows = torch.cat(keep_r).cpu().numpy()
    cols = torch.cat(keep_c).cpu().numpy()
    dist = torch.cat(keep_d).double().cpu().numpy()
    if eps is None:
        eps = eps_from_smallest(dist, n, rho)
    sel = dist <= eps
    return JaccardGraph(rows[sel], cols[sel], dist[sel], n, float(eps), peak)


def dbscan_labels(graph: JaccardGraph, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """scikit-learn's DBSCAN on the graph: (N,) labels 0..C-1 (in order of first appearance) and
    -1 for outliers. An eps of 0 (the smallest pairs all at distance 0, on tiny sets) is run as
    1e-12: scikit-learn needs eps > 0, and the graph holds exactly the pairs at distance 0."""
    from sklearn.cluster import DBSCAN

    if type(min_samples) is not int or min_samples < 1:
        raise ConfigError(f"min_samples={min_samples!r}: expected an int >= 1")
    labels = DBSCAN(eps=max(graph.eps, 1e-12), min_samples=min_samples,
                    metric="precomputed").fit_predict(graph.csr())
    return relabel(labels)


def dbscan_dense(dist: np.ndarray, eps: float, min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """Reference: DBSCAN on a full (N, N) distance matrix, relabelled like ``dbscan_labels``."""
    from sklearn.cluster import DBSCAN

    return relabel(DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed")
                   .fit_predict(dist))


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..C-1 in order of first appearance; negatives become -1."""
    labels = np.asarray(labels)
    out = np.full(labels.shape, -1, dtype=np.int64)
    mapping: dict[int, int] = {}
    for i, y in enumerate(labels.tolist()):
        if y >= 0:
            out[i] = mapping.setdefault(y, len(mapping))
    return out


def cluster_stats(labels: np.ndarray) -> dict[str, float]:
    """Counts for logs: clusters, clustered images, outliers, mean / max cluster size."""
    kept = labels[labels >= 0]
    sizes = np.bincount(kept) if kept.size else np.zeros(0, dtype=np.int64)
    return {"clusters": int(sizes.size), "clustered": int(kept.size),
            "outliers": int((labels < 0).sum()),
            "mean_size": float(sizes.mean()) if sizes.size else math.nan,
            "max_size": int(sizes.max()) if sizes.size else 0}
