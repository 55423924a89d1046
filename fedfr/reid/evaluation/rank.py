"""CMC, mAP and mINP of a query set against a gallery (the Market-1501 protocol family).

Conventions (docs/reid-evaluation.md has the formulas):

- **Junk**, removed from a query's ranking (neither a hit nor a miss): gallery images of the same
  identity seen by the same camera, and gallery images whose pid is in ``junk_pids``
  (default ``(-1,)``, Market's "junk" label).
- **Distractors** (pid 0 in Market's gallery) stay in the ranking as negatives.
- **Matches**: same pid, other camera, pid not junk. A query without any match is *invalid*:
  counted in ``num_invalid`` and left out of every average (never an error).
- **Tie rule**: a query's gallery is ordered by (distance, gallery index), i.e. a stable sort of
  the distances; equal distances keep gallery order. Every number here is a function of that
  order, so results are deterministic and independent of the sort algorithm.
- **AP**: ``"noninterp"`` (default; torchreid, fast-reid, BoT): the mean of precision@r_i over
  the hit ranks r_i. ``"trapezoid"``: the Market-1501 / MARS MATLAB ``compute_AP`` (as FedReID
  and STE-NVAN): the mean of (precision@(r_i - 1) + precision@r_i) / 2, precision@0 = 1.
- **mINP** (AGW, fast-reid): the mean over valid queries of n / r_n, n matches, r_n the rank of
  the hardest one.

Speed: the ranks of a query's matches are found without sorting its gallery. The matches
(a handful per query) are sorted; one ``searchsorted`` of every gallery distance into them and a
histogram give, for each match, the number of negatives ranked before it. The few negatives
whose distance equals a match's are then put on the right side of it by gallery index.
Everything runs on ``chunk`` queries at a time in torch, on the features' device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedfr.errors import ConfigError

log = logging.getLogger(__name__)

AP_CONVENTIONS = ("noninterp", "trapezoid")
#: The AP convention used unless a caller names another (see docs/reid-evaluation.md).
DEFAULT_AP = "noninterp"
METRICS = ("euclidean", "cosine")
DEFAULT_CHUNK = 256


@dataclass
class RankResult:
    """The ranking metrics of one query / gallery evaluation (fractions in [0, 1]).

    ``cmc[k - 1]`` is rank-k accuracy; ``mAP`` uses ``ap_convention``; ``map_by_convention``
    holds both conventions' mAP (computed in the same pass). Per-query arrays have one entry per
    query in input order: NaN (AP, INP) or 0 (first rank) for invalid queries.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_queries: int
    num_valid: int
    num_invalid: int
    ap_convention: str
    map_by_convention: dict[str, float] = field(default_factory=dict)
    per_query_ap: np.ndarray = field(default_factory=lambda: np.zeros(0))
    per_query_inp: np.ndarray = field(default_factory=lambda: np.zeros(0))
    first_rank: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def rank(self, k: int) -> float:
        """Rank-k accuracy (CMC at k, 1-based)."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank {k} outside 1..{len(self.cmc)} (max_rank)")
        return float(self.cmc[k - 1])

    def summary(self, ranks: Sequence[int] = (1, 5, 10, 20)) -> dict[str, Any]:
        """Flat dict for reports: R<k>, mAP, mINP, counts and the AP convention's name."""
        out: dict[str, Any] = {f"R{k}": self.rank(k) for k in ranks if k <= len(self.cmc)}
        out.update(mAP=self.mAP, mINP=self.mINP, ap=self.ap_convention,
                   queries=self.num_queries, valid=self.num_valid, invalid=self.num_invalid)
        return out


# --- inputs ---------------------------------------------------------------------------------
def _tensor(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device) if device is not None else t


def _labels(x: Any, n: int, name: str, device: torch.device) -> torch.Tensor:
    t = _tensor(x, name).reshape(-1)
    if t.numel() != n:
        raise ValueError(f"{name}: {t.numel()} labels for {n} rows/columns")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name}: integer labels expected, got {t.dtype}")
    return t.to(device=device, dtype=torch.int64)


def _check_options(ap: str, max_rank: int) -> None:
    if ap not in AP_CONVENTIONS:
        raise ConfigError(f"ap={ap!r}: expected one of {', '.join(AP_CONVENTIONS)}")
    if max_rank < 1:
        raise ConfigError(f"max_rank={max_rank}: expected >= 1")


# --- the per-chunk kernel -------------------------------------------------------------------
def _chunk_stats(d: torch.Tensor, qp: torch.Tensor, qc: torch.Tensor, gp: torch.Tensor,
                 gc: torch.Tensor, g_junk: torch.Tensor | None, row0: int = 0
                 ) -> tuple[torch.Tensor, ...]:
    """Per-query statistics of a (c, G) distance block.

    Returns (n matches (c,), first rank (c,), AP non-interpolated, AP trapezoid, INP), ranks
    1-based among the non-junk gallery, float64 metrics, zeros where a query has no match.
    """
    same_pid = qp[:, None] == gp[None, :]
    match = same_pid & (qc[:, None] != gc[None, :])
    if g_junk is not None:
        match &= ~g_junk[None, :]
        neg = ~(same_pid | g_junk[None, :])
    else:
        neg = ~same_pid
    return _mask_stats(d, match, neg, row0)


def _mask_stats(d: torch.Tensor, match: torch.Tensor, neg: torch.Tensor, row0: int = 0
                ) -> tuple[torch.Tensor, ...]:
    """Per-query statistics of a (c, G) distance block given its (c, G) boolean ``match`` and
    ``neg`` (negative) masks; gallery items in neither are junk (left out of the ranking)."""
    if not torch.isfinite(d.sum()) and not torch.isfinite(d).all():
        r = int((~torch.isfinite(d)).any(1).nonzero()[0, 0])
        raise ValueError(f"distance row of query {row0 + r} holds NaN or infinity")
    c = d.shape[0]
    n = match.sum(1)
    m_max = int(n.max()) if c else 0
    zeros = torch.zeros(c, dtype=torch.float64, device=d.device)
    if m_max == 0:
        return n, torch.zeros(c, dtype=torch.int64, device=d.device), zeros, zeros, zeros
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    mval, midx = torch.topk(torch.where(match, d, inf), m_max, dim=1, largest=False)
    # order each query's matches by (distance, gallery index): by index, then stably by distance
    o = torch.argsort(midx, dim=1)
    mval, midx = mval.gather(1, o), midx.gather(1, o)
    o = torch.sort(mval, dim=1, stable=True).indices
    mval, midx = mval.gather(1, o).contiguous(), midx.gather(1, o)
    # p[q, g] = number of q's matches with a distance below d[q, g] (padding is +inf: p <= n)
    p = torch.searchsorted(mval, d, right=False, out_int32=True)
    # negatives before match m (0-based): those with p <= m, as a histogram over p
    bins = torch.where(neg, p, m_max)
    flat = bins + torch.arange(0, c * (m_max + 1), m_max + 1, dtype=torch.int32,
                               device=d.device)[:, None]
    hist = torch.bincount(flat.reshape(-1), minlength=c * (m_max + 1)).reshape(c, m_max + 1)
    before = hist[:, :m_max].cumsum(1)
    # ties: a negative at exactly a match's distance was counted before it; by the tie rule it
    # comes before only the tied matches with a larger gallery index
    tie = neg & (mval.gather(1, p.clamp(max=m_max - 1).long()) == d)
    if bool(tie.any()):
        r, g = tie.nonzero(as_tuple=True)
        wrong = (mval[r] == d[r, g][:, None]) & (midx[r] < g[:, None])
        k, m = wrong.nonzero(as_tuple=True)
        before.index_put_((r[k], m), torch.full_like(m, -1), accumulate=True)
    ranks = before + torch.arange(1, m_max + 1, device=d.device)  # (c, m_max), 1-based
    valid = torch.arange(m_max, device=d.device)[None, :] < n[:, None]
    kk = torch.arange(1, m_max + 1, dtype=torch.float64, device=d.device)[None, :]
    rf = ranks.to(torch.float64)
    prec = kk / rf
    prev = torch.where(ranks > 1, (kk - 1) / (rf - 1).clamp(min=1), torch.ones_like(rf))
    nf = n.to(torch.float64).clamp(min=1)
    ap_non = torch.where(valid, prec, 0).sum(1) / nf
    ap_trap = torch.where(valid, (prev + prec) / 2, 0).sum(1) / nf
    last = ranks.gather(1, (n - 1).clamp(min=0)[:, None])[:, 0].to(torch.float64)
    inp = torch.where(n > 0, n.to(torch.float64) / last, zeros)
    first = torch.where(n > 0, ranks[:, 0], 0)
    return n, first, ap_non, ap_trap, inp


class _Accumulator:
    """Collects per-query statistics chunk by chunk and turns them into a RankResult."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, stats: tuple[torch.Tensor, ...]) -> None:
        self.parts.append(tuple(s.cpu().numpy() for s in stats))

    def result(self, max_rank: int, ap: str) -> RankResult:
        cols = [np.concatenate(c) for c in zip(*self.parts, strict=True)] if self.parts else \
            [np.zeros(0, np.int64), np.zeros(0, np.int64)] + [np.zeros(0)] * 3
        n, first, ap_non, ap_trap, inp = cols
        valid = n > 0
        nq, nv = int(n.shape[0]), int(valid.sum())
        if nv == 0:
            log.warning("re-ID evaluation: none of the %d queries has a valid match", nq)
            cmc = np.full(max_rank, np.nan)
            maps = {"noninterp": float("nan"), "trapezoid": float("nan")}
            minp = float("nan")
        else:
            hits = np.bincount(np.minimum(first[valid], max_rank + 1), minlength=max_rank + 2)
            cmc = np.cumsum(hits[1:max_rank + 1]) / nv
            maps = {"noninterp": float(ap_non[valid].mean()),
                    "trapezoid": float(ap_trap[valid].mean())}
            minp = float(inp[valid].mean())
        per_ap = np.where(valid, ap_non if ap == "noninterp" else ap_trap, np.nan)
        return RankResult(cmc=cmc, mAP=maps[ap], mINP=minp, num_queries=nq, num_valid=nv,
                          num_invalid=nq - nv, ap_convention=ap, map_by_convention=maps,
                          per_query_ap=per_ap, per_query_inp=np.where(valid, inp, np.nan),
                          first_rank=first.astype(np.int64))


def _junk_mask(gp: torch.Tensor, junk_pids: Sequence[int] | None) -> torch.Tensor | None:
    if not junk_pids:
        return None
    jp = torch.as_tensor(list(junk_pids), dtype=torch.int64, device=gp.device)
    mask = torch.isin(gp, jp)
    return mask if bool(mask.any()) else None


def _distmat(distmat: Any) -> torch.Tensor:
    """A (Q, G) floating distance tensor (integers -> float64, half precision -> float32)."""
    d = _tensor(distmat, "distmat")
    if d.ndim != 2:
        raise ValueError(f"distmat: a (queries, gallery) matrix expected, got shape "
                         f"{tuple(d.shape)}")
    if not d.is_floating_point():
        return d.to(torch.float64)
    if d.dtype in (torch.float16, torch.bfloat16):
        return d.float()
    return d


# --- public API -----------------------------------------------------------------------------
def evaluate_rank(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, *,
                  max_rank: int = 50, ap: str = DEFAULT_AP,
                  junk_pids: Sequence[int] | None = (-1,), chunk: int = DEFAULT_CHUNK
                  ) -> RankResult:
    """CMC / mAP / mINP from a (Q, G) distance matrix (numpy or torch; smaller = closer).

    Labels are integer sequences of length Q (query) and G (gallery). ``ap`` names the AP
    convention (``"noninterp"`` or ``"trapezoid"``); ``junk_pids`` are gallery pids removed from
    every ranking; ``chunk`` queries are processed at a time (bounds the temporary memory).
    """
    _check_options(ap, max_rank)
    d = _distmat(distmat)
    nq, ng = d.shape
    dev = d.device
    qp, gp = _labels(q_pids, nq, "q_pids", dev), _labels(g_pids, ng, "g_pids", dev)
    qc, gc = _labels(q_camids, nq, "q_camids", dev), _labels(g_camids, ng, "g_camids", dev)
    junk = _junk_mask(gp, junk_pids)
    acc = _Accumulator()
    for s in range(0, nq, max(1, chunk)):
        e = min(nq, s + chunk)
        acc.add(_chunk_stats(d[s:e].contiguous(), qp[s:e], qc[s:e], gp, gc, junk, s))
    return acc.result(max_rank, ap)


def _features(x: Any, name: str) -> torch.Tensor:
    t = _tensor(x, name)
    if t.ndim != 2:
        raise ValueError(f"{name}: a (n, dim) feature matrix expected, got {tuple(t.shape)}")
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)


class DistanceBlocks:
    """Query-chunk blocks of the query x gallery distance matrix, from features.

    ``metric="euclidean"`` is the *squared* Euclidean distance |q|^2 + |g|^2 - 2 q.g (the same
    ranking as the Euclidean one; torchreid's convention), ``"cosine"`` is 1 - cos(q, g).
    ``normalize`` L2-normalises both feature sets first (cosine always does).
    """

    def __init__(self, qf: Any, gf: Any, metric: str = "euclidean",
                 normalize: bool = False) -> None:
        if metric not in METRICS:
            raise ConfigError(f"metric={metric!r}: expected one of {', '.join(METRICS)}")
        q, g = _features(qf, "qf"), _features(gf, "gf")
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"qf has {q.shape[1]} dims, gf has {g.shape[1]}")
        g = g.to(q.device, q.dtype)
        if normalize or metric == "cosine":
            q, g = normalize_rows(q), normalize_rows(g)
        self.q, self.gt, self.metric = q, g.t(), metric
        self.gn = (g * g).sum(1)[None, :] if metric == "euclidean" else None
        self.qn = (q * q).sum(1)[:, None] if metric == "euclidean" else None

    def block(self, s: int, e: int) -> torch.Tensor:
        """Distances of queries s..e-1 to every gallery item: a (e - s, G) tensor."""
        if self.metric == "euclidean":
            return torch.addmm(self.qn[s:e] + self.gn, self.q[s:e], self.gt, alpha=-2.0)
        one = torch.ones(1, 1, dtype=self.q.dtype, device=self.q.device)
        return torch.addmm(one, self.q[s:e], self.gt, alpha=-1.0)

    def full(self) -> torch.Tensor:
        return self.block(0, self.q.shape[0])


def distance_matrix(qf: Any, gf: Any, metric: str = "euclidean",
                    normalize: bool = False) -> torch.Tensor:
    """The whole (Q, G) distance matrix (see ``DistanceBlocks`` for the metrics)."""
    return DistanceBlocks(qf, gf, metric, normalize).full()


def features_to_rank(qf: Any, gf: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                     *, metric: str = "euclidean", normalize: bool = False,
                     chunk: int = DEFAULT_CHUNK, max_rank: int = 50, ap: str = DEFAULT_AP,
                     junk_pids: Sequence[int] | None = (-1,)) -> RankResult:
    """CMC / mAP / mINP straight from (Q, D) query and (G, D) gallery features.

    Distances are computed ``chunk`` queries at a time (one matrix product each) and ranked
    right away, so the full (Q, G) matrix never exists: peak extra memory ~ 40 bytes x chunk x G.
    Runs on the features' device (CPU or GPU).
    """
    _check_options(ap, max_rank)
    blocks = DistanceBlocks(qf, gf, metric, normalize)
    nq, ng = blocks.q.shape[0], blocks.gt.shape[1]
    dev = blocks.q.device
    qp, gp = _labels(q_pids, nq, "q_pids", dev), _labels(g_pids, ng, "g_pids", dev)
    qc, gc = _labels(q_camids, nq, "q_camids", dev), _labels(g_camids, ng, "g_camids", dev)
    junk = _junk_mask(gp, junk_pids)
    acc = _Accumulator()
    for s in range(0, nq, max(1, chunk)):
        e = min(nq, s + chunk)
        acc.add(_chunk_stats(blocks.block(s, e), qp[s:e], qc[s:e], gp, gc, junk, s))
    return acc.result(max_rank, ap)


def evaluate_masks(distmat: Any, match: Any, junk: Any, *, max_rank: int = 50,
                   ap: str = DEFAULT_AP, chunk: int = DEFAULT_CHUNK) -> RankResult:
    """CMC / mAP / mINP from a (Q, G) distance matrix and per-pair boolean masks (Q, G).

    For protocols whose matches or junk are not "same pid, other camera" (MARS's cleaned labels
    with ambiguous identities, per-query junk rules). ``match``: true matches; ``junk``: pairs
    removed from the query's ranking (a pair in both is junk). Every other pair is a negative.
    Same tie rule, AP conventions and invalid-query handling as :func:`evaluate_rank`.
    """
    _check_options(ap, max_rank)
    d = _distmat(distmat)
    m, j = _tensor(match, "match", d.device), _tensor(junk, "junk", d.device)
    for name, t in (("match", m), ("junk", j)):
        if t.dtype != torch.bool or tuple(t.shape) != tuple(d.shape):
            raise ValueError(f"{name}: a boolean {tuple(d.shape)} mask expected, got "
                             f"{t.dtype} {tuple(t.shape)}")
    acc = _Accumulator()
    for s in range(0, d.shape[0], max(1, chunk)):
        e = min(d.shape[0], s + chunk)
        mm, jj = m[s:e], j[s:e]
        acc.add(_mask_stats(d[s:e].contiguous(), mm & ~jj, ~(mm | jj), s))
    return acc.result(max_rank, ap)
