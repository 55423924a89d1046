"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) and its Jaccard distance.

Two implementations of one algorithm (docs/reid-evaluation.md has the steps):

- ``re_ranking_dense`` / ``jaccard_distance_dense``: the reference, on full (N, N) numpy
  matrices, N = queries + gallery; O(N^2) memory, for small cases and tests.
- ``re_ranking`` / ``kreciprocal_jaccard``: from features, in row chunks. Only each item's
  ``max(k1 + 1, k2)`` nearest neighbours, the sparse k-reciprocal weights V and the (Q, G) output
  are kept, so Market's size (N = 19,281) fits in a few hundred MB instead of tens of GB.

Base distance (both): d = the squared Euclidean distance of the features (``metric="euclidean"``;
what the authors' code gets by squaring the Euclidean distances it is given) or the squared
cosine distance (1 - cos)^2; each item's row is divided by its maximum. Neighbour lists follow
the evaluation's tie rule: ascending distance, equal distances in index order (a stable sort).
Defaults k1 = 20, k2 = 6, lambda = 0.3 (the paper's Market setting).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fedfr.errors import ConfigError
from fedfr.reid.evaluation.rank import (
    DEFAULT_AP,
    DistanceBlocks,
    RankResult,
    _Accumulator,
    _check_options,
    _chunk_stats,
    _features,
    _junk_mask,
    _labels,
)

K1, K2, LAMBDA = 20, 6, 0.3


def _check(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1 or k2 < 1:
        raise ConfigError(f"k1={k1}, k2={k2}: both must be >= 1")
    if not 0.0 <= lambda_value <= 1.0:
        raise ConfigError(f"lambda_value={lambda_value}: expected a weight in [0, 1]")


# --- dense reference ------------------------------------------------------------------------
def _dense_v(dist: np.ndarray, k1: int, k2: int) -> tuple[np.ndarray, np.ndarray]:
    """(row-normalised distances B, k-reciprocal weights V after query expansion), both (N, N).

    ``dist`` is the full symmetric base-distance matrix.
    """
    n = dist.shape[0]
    colmax = np.maximum(dist.max(axis=0), np.finfo(np.float64).tiny)
    b = (dist / colmax).T  # row i divided by the largest distance of item i
    rank = np.argsort(b, axis=1, kind="stable")
    half = int(round(k1 / 2))
    v = np.zeros((n, n))

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, :k + 1]
        back = rank[forward, :k + 1]
        return forward[(back == i).any(axis=1)]

    for i in range(n):
        r = reciprocal(i, k1)
        expansion = list(r)
        rset = set(r.tolist())
        for c in r:
            rc = reciprocal(int(c), half)
            if 3 * len(rset.intersection(rc.tolist())) > 2 * len(rc):
                expansion.extend(rc.tolist())
        idx = np.unique(np.asarray(expansion, dtype=np.int64))
        w = np.exp(-b[i, idx])
        v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    return b, v


def _dense_jaccard(v: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Jaccard distance 1 - sum min / sum max of V's rows ``rows`` against every row."""
    out = np.empty((len(rows), v.shape[0]))
    for a, i in enumerate(rows):
        shared = np.minimum(v[i][None, :], v).sum(axis=1)
        out[a] = 1.0 - shared / (2.0 - shared)
    return out


def re_ranking_dense(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, *, k1: int = K1,
                     k2: int = K2, lambda_value: float = LAMBDA, square: bool = True
                     ) -> np.ndarray:
    """Reference re-ranking of (Q, G) distances given also the (Q, Q) and (G, G) ones.

    ``square=True`` squares the given distances first (pass Euclidean distances, as the authors'
    code expects); ``square=False`` takes them as the base distance (already squared).
    Returns the (Q, G) re-ranked distances (1 - lambda) d_Jaccard + lambda d.
    """
    _check(k1, k2, lambda_value)
    nq = q_g.shape[0]
    full = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
    if square:
        full = full ** 2
    b, v = _dense_v(full, k1, k2)
    jac = _dense_jaccard(v, np.arange(nq))
    return ((1 - lambda_value) * jac + lambda_value * b[:nq])[:, nq:]


def jaccard_distance_dense(dist: np.ndarray, *, k1: int = K1, k2: int = K2,
                           square: bool = True) -> np.ndarray:
    """Reference k-reciprocal Jaccard distance among one set, from its (N, N) distances."""
    _check(k1, k2, 0.0)
    full = np.asarray(dist, dtype=np.float64)
    _, v = _dense_v(full ** 2 if square else full, k1, k2)
    return _dense_jaccard(v, np.arange(full.shape[0]))


# --- sparse implementation ------------------------------------------------------------------
def _stable_topk(b: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k smallest entries of each row of b (>= 0), ties in column order."""
    if b.dtype == torch.float32:
        bits = b.view(torch.int32)
        bits.clamp_(min=0)  # -0.0 -> +0.0; non-negative floats order like their bit patterns
        key = (bits.to(torch.int64) << 32) | torch.arange(b.shape[1], device=b.device)
        return torch.topk(key, k, dim=1, largest=False, sorted=True).values & 0xFFFFFFFF
    return torch.sort(b, dim=1, stable=True).indices[:, :k]


class _KReciprocal:
    """Neighbour lists, row maxima and the sparse weights V of N items (rows of X)."""

    def __init__(self, x: torch.Tensor, metric: str, k1: int, k2: int, chunk: int,
                 keep_rows: int = 0) -> None:
        self.blocks = DistanceBlocks(x, x, metric)
        self.metric, self.k1, self.k2 = metric, k1, k2
        n = x.shape[0]
        self.n = n
        dev = x.device
        kk = min(n, max(k1 + 1, k2))
        self.nn = torch.empty((n, kk), dtype=torch.int64, device=dev)
        self.rowmax = torch.empty(n, dtype=x.dtype, device=dev)
        #: normalised base distances of the first ``keep_rows`` items to every later item
        self.kept = torch.empty((keep_rows, n - keep_rows), dtype=x.dtype, device=dev)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            b = self._base(self.blocks.block(s, e))
            m = b.max(dim=1).values.clamp(min=torch.finfo(b.dtype).tiny)
            self.rowmax[s:e] = m
            b /= m[:, None]
            if s < keep_rows:
                self.kept[s:min(e, keep_rows)] = b[:keep_rows - s, keep_rows:]
            self.nn[s:e] = _stable_topk(b, kk)
        self._weights()

    def _base(self, d: torch.Tensor) -> torch.Tensor:
        d = d.clamp(min=0)
        return d * d if self.metric == "cosine" else d

    def _pair_base(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Normalised base distance of the pairs (i, j), i ascending: one small matrix-vector
        product per row i (batched over rows, each row's columns padded to the longest)."""
        bl, n = self.blocks, self.n
        x = bl.q
        ptr = _ptr(i, n)
        lens = ptr[1:] - ptr[:-1]
        dot = torch.empty(i.shape[0], dtype=x.dtype, device=x.device)
        step = max(1, (1 << 24) // (x.shape[1] * max(1, int(lens.max()))))
        for s in range(0, n, step):
            e = min(n, s + step)
            a, b = int(ptr[s]), int(ptr[e])
            if a == b:
                continue
            rows, width = i[a:b], int(lens[s:e].max())
            slot = torch.arange(a, b, device=x.device) - ptr[rows]
            cols = torch.arange(s, e, device=x.device)[:, None].repeat(1, width)  # pad: self
            cols[rows - s, slot] = j[a:b]
            prod = torch.bmm(x[cols], x[s:e, :, None])[:, :, 0]  # (rows, width)
            dot[a:b] = prod[rows - s, slot]
        if self.metric == "euclidean":
            d = bl.qn[i, 0] + bl.qn[j, 0] - 2 * dot
        else:
            d = 1 - dot
        return self._base(d) / self.rowmax[i]

    def _reciprocal(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward lists (N, k+1), mask of the k-reciprocal ones)."""
        f = self.nn[:, :k + 1]
        me = torch.arange(self.n, device=f.device)[:, None, None]
        mask = torch.empty(f.shape, dtype=torch.bool, device=f.device)
        step = max(1, (1 << 22) // (f.shape[1] ** 2))
        for s in range(0, self.n, step):
            mask[s:s + step] = (f[f[s:s + step]] == me[s:s + step]).any(2)
        return f, mask

    def _weights(self) -> None:
        n, dev = self.n, self.nn.device
        f, rmask = self._reciprocal(self.k1)
        h, hmask = self._reciprocal(int(round(self.k1 / 2)))
        rows_l, cols_l = [], []
        step = max(1, (1 << 22) // (f.shape[1] ** 2 * h.shape[1]))
        for s in range(0, n, step):
            e = min(n, s + step)
            fr, rm = f[s:e], rmask[s:e]  # (c, T)
            cand, cmask = h[fr], hmask[fr]  # (c, T, U): each candidate's half-k set
            in_r = ((cand[..., None] == fr[:, None, None, :]) & rm[:, None, None, :]).any(-1)
            inter = (in_r & cmask).sum(-1)
            accept = rm & (3 * inter > 2 * cmask.sum(-1))  # |R_half(c) & R(i)| > 2/3 |R_half|
            r = torch.arange(s, e, device=dev)
            rows_l += [r[:, None].expand_as(fr)[rm], r[:, None, None].expand_as(cand)[
                accept[..., None] & cmask]]
            cols_l += [fr[rm], cand[accept[..., None] & cmask]]
        key = torch.unique(torch.cat(rows_l) * n + torch.cat(cols_l))  # sorted by row, column
        rows, cols = key // n, key % n
        w = torch.exp(-self._pair_base(rows, cols))
        total = torch.zeros(n, dtype=w.dtype, device=dev).index_add_(0, rows, w)
        vals = w / total[rows]
        if self.k2 > 1:  # query expansion: mean of the rows of the k2 nearest neighbours
            rows, cols, vals = self._expand(rows, cols, vals)
        self.rows, self.cols, self.vals = rows, cols, vals
        # column-major copy for the Jaccard sums
        order = torch.argsort(cols * n + rows)
        self.c_rows, self.c_vals = rows[order], vals[order]
        self.c_ptr = _ptr(cols[order], n)
        self.r_ptr = _ptr(rows, n)

    def _expand(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.n
        ptr = _ptr(rows, n)
        src = self.nn[:, :self.k2].reshape(-1)  # row i gathers rows src[i*k2:(i+1)*k2]
        dst = torch.arange(n, device=src.device).repeat_interleave(self.k2)
        cnt = ptr[src + 1] - ptr[src]
        idx = _segments(ptr[src], cnt)
        key = dst.repeat_interleave(cnt) * n + cols[idx]
        uniq, inv = torch.unique(key, return_inverse=True)
        summed = torch.zeros(uniq.shape[0], dtype=vals.dtype, device=vals.device)
        summed.index_add_(0, inv, vals[idx])
        return uniq // n, uniq % n, summed / self.k2

    def jaccard(self, r0: int, r1: int, c0: int, c1: int, pair_budget: int = 1 << 23
                ) -> torch.Tensor:
        """Dense Jaccard distances of rows r0..r1-1 to columns c0..c1-1: (r1-r0, c1-c0)."""
        dev = self.rows.device
        out = torch.zeros((r1 - r0, c1 - c0), dtype=self.vals.dtype, device=dev)
        colnnz = self.c_ptr[1:] - self.c_ptr[:-1]
        per_entry = colnnz[self.cols]
        per_row = torch.zeros(self.n + 1, dtype=torch.int64, device=dev)
        per_row[1:] = torch.cumsum(torch.zeros(self.n, dtype=torch.int64, device=dev)
                                   .index_add_(0, self.rows, per_entry), 0)
        s = r0
        while s < r1:  # rows in groups of at most pair_budget expanded pairs (at least 1 row)
            limit = per_row[s] + pair_budget
            e = int(torch.searchsorted(per_row, limit, right=True)) - 1
            e = min(r1, max(e, s + 1))
            a, b = int(self.r_ptr[s]), int(self.r_ptr[e])
            er, ec, ev = self.rows[a:b], self.cols[a:b], self.vals[a:b]
            cnt = colnnz[ec]
            idx = _segments(self.c_ptr[ec], cnt)
            j, vj = self.c_rows[idx], self.c_vals[idx]
            i = er.repeat_interleave(cnt)
            contrib = torch.minimum(ev.repeat_interleave(cnt), vj)
            keep = (j >= c0) & (j < c1)
            flat = (i[keep] - r0) * (c1 - c0) + (j[keep] - c0)
            out.view(-1).index_add_(0, flat, contrib[keep])
            s = e
        return 1.0 - out / (2.0 - out)


def _ptr(sorted_rows: torch.Tensor, n: int) -> torch.Tensor:
    """CSR pointer (n + 1,) of an ascending row-index array."""
    counts = torch.bincount(sorted_rows, minlength=n)
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=sorted_rows.device)
    ptr[1:] = torch.cumsum(counts, 0)
    return ptr


def _segments(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenation of the ranges starts[i] .. starts[i] + counts[i] - 1."""
    total = int(counts.sum())
    offsets = torch.cumsum(counts, 0) - counts
    base = (starts - offsets).repeat_interleave(counts, output_size=total)
    return base + torch.arange(total, device=starts.device)


def _items(features: Any, name: str, normalize: bool, metric: str) -> torch.Tensor:
    x = _features(features, name)
    if metric not in ("euclidean", "cosine"):
        raise ConfigError(f"metric={metric!r}: expected euclidean or cosine")
    if normalize and metric == "euclidean":
        x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return x


def re_ranking(qf: Any, gf: Any, *, k1: int = K1, k2: int = K2, lambda_value: float = LAMBDA,
               metric: str = "euclidean", normalize: bool = False, chunk: int = 256
               ) -> torch.Tensor:
    """k-reciprocal re-ranked (Q, G) distances from (Q, D) query and (G, D) gallery features.

    Equal (up to float rounding) to ``re_ranking_dense`` on the Euclidean distances
    (``metric="euclidean"``) or the cosine distances (``"cosine"``) of the same features. Rank
    the result with ``evaluate_rank``. Memory: O(N k1^2) for the neighbour lists, O(Q G) for the
    output, O(chunk N) for the distance blocks; never N^2.
    """
    _check(k1, k2, lambda_value)
    q = _items(qf, "qf", normalize, metric)
    g = _items(gf, "gf", normalize, metric).to(q.device, q.dtype)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"qf has {q.shape[1]} dims, gf has {g.shape[1]}")
    nq, n = q.shape[0], q.shape[0] + g.shape[0]
    kr = _KReciprocal(torch.cat([q, g]), metric, k1, k2, chunk, keep_rows=nq)
    out = kr.kept  # (Q, G): lambda-weighted base distance, then the Jaccard part added
    out *= lambda_value
    for s in range(0, nq, chunk):
        e = min(nq, s + chunk)
        out[s:e] += (1 - lambda_value) * kr.jaccard(s, e, nq, n)
    return out


def reranked_rank(qf: Any, gf: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                  *, k1: int = K1, k2: int = K2, lambda_value: float = LAMBDA,
                  metric: str = "euclidean", normalize: bool = False, chunk: int = 256,
                  max_rank: int = 50, ap: str = DEFAULT_AP,
                  junk_pids: Sequence[int] | None = (-1,)) -> RankResult:
    """CMC / mAP / mINP of the re-ranked distances, ranked query chunk by query chunk.

    The same numbers as ``evaluate_rank(re_ranking(qf, gf, ...), ...)`` (up to float rounding of
    the base distance, which here comes from the (chunk, G) product) without ever holding the
    (Q, G) re-ranked matrix: for MSMT17-size test sets (11,659 x 82,161: 3.8 GB as float32).
    """
    _check(k1, k2, lambda_value)
    _check_options(ap, max_rank)
    q = _items(qf, "qf", normalize, metric)
    g = _items(gf, "gf", normalize, metric).to(q.device, q.dtype)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"qf has {q.shape[1]} dims, gf has {g.shape[1]}")
    nq, n = q.shape[0], q.shape[0] + g.shape[0]
    dev = q.device
    qp, gp = _labels(q_pids, nq, "q_pids", dev), _labels(g_pids, n - nq, "g_pids", dev)
    qc = _labels(q_camids, nq, "q_camids", dev)
    gc = _labels(g_camids, n - nq, "g_camids", dev)
    junk = _junk_mask(gp, junk_pids)
    kr = _KReciprocal(torch.cat([q, g]), metric, k1, k2, chunk)
    qg = DistanceBlocks(q, g, metric)
    acc = _Accumulator()
    for s in range(0, nq, chunk):
        e = min(nq, s + chunk)
        d = kr._base(qg.block(s, e)) / kr.rowmax[s:e, None]
        d *= lambda_value
        d += (1 - lambda_value) * kr.jaccard(s, e, nq, n)
        acc.add(_chunk_stats(d, qp[s:e], qc[s:e], gp, gc, junk, s))
    return acc.result(max_rank, ap)


def kreciprocal_jaccard(features: Any, *, k1: int = K1, k2: int = K2,
                        metric: str = "euclidean", normalize: bool = False, chunk: int = 256,
                        sparse: bool = False) -> torch.Tensor:
    """k-reciprocal Jaccard distance among one set of (N, D) features (for clustering).

    ``sparse=False``: the dense (N, N) matrix. ``sparse=True``: a coalesced sparse COO tensor
    holding only the pairs whose distance is below 1 (those sharing k-reciprocal neighbours;
    every other pair is at distance 1), e.g. for DBSCAN with a precomputed sparse metric.
    """
    _check(k1, k2, 0.0)
    x = _items(features, "features", normalize, metric)
    n = x.shape[0]
    kr = _KReciprocal(x, metric, k1, k2, chunk)
    if not sparse:
        return torch.cat([kr.jaccard(s, min(n, s + chunk), 0, n) for s in range(0, n, chunk)])
    idx, vals = [], []
    for s in range(0, n, chunk):
        blk = kr.jaccard(s, min(n, s + chunk), 0, n)
        r, c = (blk < 1).nonzero(as_tuple=True)
        idx.append(torch.stack([r + s, c]))
        vals.append(blk[r, c])
    return torch.sparse_coo_tensor(torch.cat(idx, 1), torch.cat(vals), (n, n)).coalesce()
