"""PBH, part-based homogeneity (thesis Sec. 4.3.3, Fig. 4.3): split imperfect clusters.

1. Per-sample silhouette s(x) = (b - a) / max(a, b) over the clustered images (a: mean distance
   to the own cluster without x, b: the smallest mean distance to another cluster; s = 0 for a
   singleton cluster, scikit-learn's convention), in row chunks (memory O(chunk N)). The thesis
   leaves the distance open: we use the Euclidean distance of the clustering features
   (``metric="cosine"`` is the other option). mSil(i) = the mean over cluster i.
2. Imperfect clusters: mSil(i) < lambda = mean(mSil) - n_std * std(mSil) over all clusters
   (n_std = 3, the thesis's rule; population std) and at least ``min_size`` = 2 images.
3. For each imperfect cluster: k-means with K = 2 on its upper-part features and, separately, on
   its lower-part features (scikit-learn, ``n_init`` = 10, seeded) give y_u, y_l in {0, 1}; the
   look-up table maps each (y_u, y_l) present to a label: the first pair in (0,0), (0,1), (1,0),
   (1,1) order keeps the cluster's label, the others get fresh labels after the current largest.
   A cluster thus splits into at most 4 groups; images share a label only if both parts agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fedfr.errors import ConfigError

SIL_METRICS = ("euclidean", "cosine")


def silhouette_samples_chunked(x: Tensor, labels: Tensor, *, metric: str = "euclidean",
                               chunk: int = 1024) -> Tensor:
    """Per-sample silhouettes (N,) of features x (N, D) with labels (N,) in 0..C-1 (no
    outliers); zeros if there are fewer than 2 clusters."""
    if metric not in SIL_METRICS:
        raise ConfigError(f"silhouette metric: expected one of {SIL_METRICS}, got {metric!r}")
    x = x.double()
    labels = labels.long()
    n = x.shape[0]
    c = int(labels.max()) + 1 if n else 0
    out = torch.zeros(n, dtype=torch.float64)
    if c < 2:
        return out
    counts = torch.bincount(labels, minlength=c).double()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        if metric == "euclidean":
            d = torch.cdist(x[s:e], x)
        else:
            d = (1.0 - x[s:e] @ x.T).clamp(min=0)
        sums = torch.zeros(e - s, c, dtype=torch.float64).index_add_(1, labels, d)
        own = labels[s:e]
        r = torch.arange(e - s)
        n_own = counts[own]
        a = sums[r, own] / (n_own - 1).clamp(min=1)
        means = sums / counts
        means[r, own] = float("inf")
        b = means.min(1).values
        sil = (b - a) / torch.maximum(a, b).clamp(min=1e-300)
        out[s:e] = torch.where(n_own > 1, sil, torch.zeros_like(sil))
    return out


def cluster_mean_silhouette(sil: Tensor, labels: Tensor) -> Tensor:
    """mSil (C,): the mean silhouette of each cluster."""
    c = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=c).double()
    return torch.zeros(c, dtype=torch.float64).index_add_(0, labels, sil.double()) / counts


def imperfect_clusters(msil: Tensor, sizes: Tensor, *, n_std: float = 3.0, min_size: int = 2
                       ) -> tuple[list[int], float]:
    """(ids of clusters with mSil < lambda and size >= min_size, lambda = mean - n_std std)."""
    m = msil.double()
    lam = float(m.mean() - n_std * m.std(unbiased=False)) if m.numel() else float("nan")
    bad = ((m < lam) & (sizes >= min_size)).nonzero().flatten().tolist()
    return bad, lam


def two_means(x: np.ndarray, seed: int, n_init: int = 10) -> np.ndarray:
    """K = 2 k-means labels (n,) in {0, 1} (all 0 when the points do not have 2 distinct
    values)."""
    from sklearn.cluster import KMeans

    if len(np.unique(x, axis=0)) < 2:
        return np.zeros(len(x), dtype=np.int64)
    return KMeans(n_clusters=2, n_init=n_init, random_state=seed).fit_predict(x).astype(np.int64)


@dataclass
class PBHResult:
    """labels: (N,) refined labels (-1 kept for outliers); table: one row per new group
    (cluster, y_u, y_l, label, size); msil (C,), lam, imperfect: the selected cluster ids."""

    labels: np.ndarray
    table: list[dict[str, int]] = field(default_factory=list)
    msil: np.ndarray | None = None
    lam: float = float("nan")
    imperfect: list[int] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        split = {row["cluster"] for row in self.table if row["label"] != row["cluster"]}
        return {"pbh_lambda": self.lam, "pbh_imperfect": len(self.imperfect),
                "pbh_split": len(split),
                "pbh_new_labels": sum(row["label"] != row["cluster"] for row in self.table),
                **{f"msil_{name}": float(fn(self.msil)) if self.msil is not None and
                   len(self.msil) else float("nan")
                   for name, fn in (("mean", np.mean), ("std", np.std), ("min", np.min))}}


def split_table(y_u: np.ndarray, y_l: np.ndarray, cluster: int, next_label: int
                ) -> tuple[np.ndarray, list[dict[str, int]], int]:
    """The look-up table of one cluster: (new labels (n,), table rows, next free label)."""
    code = 2 * y_u + y_l
    out = np.empty(len(code), dtype=np.int64)
    rows = []
    first = True
    for k in range(4):
        members = code == k
        if not members.any():
            continue
        label = cluster if first else next_label
        if not first:
            next_label += 1
        first = False
        out[members] = label
        rows.append({"cluster": cluster, "y_u": k // 2, "y_l": k % 2, "label": int(label),
                     "size": int(members.sum())})
    return out, rows, next_label


def pbh_refine(labels: np.ndarray, global_: Tensor, upper: Tensor, lower: Tensor, *,
               n_std: float = 3.0, metric: str = "euclidean", min_size: int = 2,
               seed: int = 0, n_init: int = 10, chunk: int = 1024) -> PBHResult:
    """Refined pseudo-labels: labels (N,) with -1 outliers; global_ (N, d) the clustering
    features (silhouette); upper, lower (N, C) the part features."""
    labels = np.asarray(labels, dtype=np.int64)
    keep = np.flatnonzero(labels >= 0)
    out = labels.copy()
    if keep.size == 0 or labels.max() < 1:
        return PBHResult(out)
    y = torch.from_numpy(labels[keep])
    sil = silhouette_samples_chunked(global_[keep], y, metric=metric, chunk=chunk)
    msil = cluster_mean_silhouette(sil, y)
    sizes = torch.bincount(y, minlength=msil.numel())
    bad, lam = imperfect_clusters(msil, sizes, n_std=n_std, min_size=min_size)
    next_label = int(labels.max()) + 1
    table: list[dict[str, int]] = []
    up, lo = upper.numpy(), lower.numpy()
    for j in bad:
        idx = np.flatnonzero(labels == j)
        yu = two_means(up[idx], seed + j, n_init)
        yl = two_means(lo[idx], seed + j, n_init)
        new, rows, next_label = split_table(yu, yl, j, next_label)
        out[idx] = new
        table += rows
    return PBHResult(out, table, msil.numpy(), lam, bad)
