"""MARS evaluation protocols (seed-reid.md 0.5 and C.5), each named in its result.

All protocols take the features of *every* MARS test tracklet in ``tracks_test_info.mat`` order
(``VideoSplit.test``: junk pid -1 and distractors pid 0 included) and the 0-based query rows
(``VideoSplit.query_index``), and build their own query and gallery from them:

=====================  ==================================  =================  ==========
protocol               gallery                             junk (per query)   AP
=====================  ==================================  =================  ==========
``mars-official``      every test tracklet, the queries    pid -1; same id    trapezoid
                       included (MARS MATLAB kit,          and same camera
                       STE-NVAN ``cmc.py``); 0 kept
``mars-bot``           test - query - pid -1 (torchreid,   same id and same   noninterp
                       BoT, 9,330 on MARS); 0 kept         camera
``mars-cfaan``         test - query, pid 0 and -1 dropped  same id and same   noninterp
                       from query and gallery (CF-AAN)     camera
``mars-clean``         as ``mars-bot``, cleaned labels     same camera and    noninterp
                       (thesis Sec. 2.4.3 as written:      (distractor or a
                       distractors stay)                   label match)
``mars-clean-cfaan``   as ``mars-cfaan`` (pid 0 / -1 by    as ``mars-clean``  noninterp
                       the *original* label dropped, as
                       CF-AAN's loader does), cleaned
=====================  ==================================  =================  ==========

Cleaned labels (``clean_tracks_test_info.mat`` columns new_pid, new_ambi): a tracklet may carry a
second, ambiguous identity; a query and a gallery tracklet match when any of pid / ambi of the
one equals any of pid / ambi of the other (CF-AAN ``eval_reid.py``). A missing ambi (None, <= 0)
is the tracklet's own pid, so the four equalities reduce to the plain one.

Queries without any match are left out of every average (fedfr's rule; MARS's own queries all
have one in the official gallery). Ties are broken by gallery order (``rank.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fedfr.errors import ConfigError
from fedfr.reid.data.records import VideoSplit
from fedfr.reid.evaluation.rank import DEFAULT_CHUNK, RankResult, distance_matrix, evaluate_masks


@dataclass(frozen=True)
class MarsProtocol:
    """One MARS evaluation rule set (see the module docstring's table)."""

    name: str
    gallery: str  # "all" (queries included) | "minus-query"
    drop: tuple[int, ...]  # original pids removed from query and gallery
    ap: str  # "trapezoid" | "noninterp"
    cleaned: bool  # needs the cleaned labels (pid, ambi)
    source: str


PROTOCOLS: dict[str, MarsProtocol] = {p.name: p for p in (
    MarsProtocol("mars-official", "all", (), "trapezoid", False,
                 "MARS MATLAB evaluation kit / STE-NVAN util/cmc.py"),
    MarsProtocol("mars-bot", "minus-query", (-1,), "noninterp", False,
                 "torchreid / BoT: gallery = test - query - junk"),
    MarsProtocol("mars-cfaan", "minus-query", (-1, 0), "noninterp", False,
                 "CF-AAN data/datasets/MARS.py + eval_reid.py"),
    MarsProtocol("mars-clean", "minus-query", (-1,), "noninterp", True,
                 "thesis Sec. 2.4.3 / 2.6.4 as written (distractors kept)"),
    MarsProtocol("mars-clean-cfaan", "minus-query", (-1, 0), "noninterp", True,
                 "CF-AAN eval_reid.py new_eval with MARS.py's load-time drop"),
)}


@dataclass
class MarsResult:
    """A protocol's name and counts beside its ranking metrics."""

    protocol: str
    rank: RankResult
    num_query: int
    num_gallery: int
    metric: str
    source: str

    def summary(self, ranks: Sequence[int] = (1, 5, 10, 20)) -> dict[str, Any]:
        """Flat dict for reports; the protocol's name comes first."""
        out: dict[str, Any] = {"protocol": self.protocol}
        out.update(self.rank.summary(ranks))
        out.update(gallery=self.num_gallery, metric=self.metric)
        return out


def get_protocol(name: str) -> MarsProtocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown MARS protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def _ints(x: Any, n: int | None, name: str) -> np.ndarray:
    a = np.asarray(x).reshape(-1)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name}: integer labels expected, got {a.dtype}")
    if n is not None and a.size != n:
        raise ValueError(f"{name}: {a.size} entries for {n} test tracklets")
    return a.astype(np.int64)


def protocol_rows(protocol: str, orig_pids: Any, query_index: Any) -> tuple[np.ndarray, np.ndarray]:
    """0-based rows of the test list that form the query and the gallery of ``protocol``.

    ``orig_pids``: (N,) the test tracklets' original labels (-1 junk, 0 distractor).
    """
    p = get_protocol(protocol)
    pid = _ints(orig_pids, None, "orig_pids")
    q = _ints(query_index, None, "query_index")
    if q.size and (q.min() < 0 or q.max() >= pid.size):
        raise ValueError(f"query_index: rows outside 0..{pid.size - 1}")
    keep = ~np.isin(pid, np.asarray(p.drop, np.int64))
    q_rows = q[keep[q]]
    g_mask = keep.copy()
    if p.gallery == "minus-query":
        g_mask[q] = False
    return q_rows, np.flatnonzero(g_mask)


def protocol_masks(protocol: str, q_rows: np.ndarray, g_rows: np.ndarray, pids: Any,
                   camids: Any, ambis: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(match, junk) boolean (Q, G) masks of ``protocol`` for the given rows.

    ``pids`` are the labels used for matching (the cleaned ones for ``mars-clean*``), ``ambis``
    the cleaned ambiguous identities (<= 0 or None: none).
    """
    p = get_protocol(protocol)
    pid = _ints(pids, None, "pids")
    cam = _ints(camids, pid.size, "camids")
    qp, gp = pid[q_rows][:, None], pid[g_rows][None, :]
    same_cam = cam[q_rows][:, None] == cam[g_rows][None, :]
    if p.cleaned:
        if ambis is None:
            raise ConfigError(f"{protocol}: needs the cleaned labels (read MARS with clean=True: "
                              f"clean_tracks_test_info.mat with new_pid and new_ambi)")
        amb = np.array([-1 if a is None else int(a) for a in np.asarray(ambis, object)
                        .reshape(-1)], np.int64)
        if amb.size != pid.size:
            raise ValueError(f"ambis: {amb.size} entries for {pid.size} test tracklets")
        amb = np.where(amb > 0, amb, pid)
        qa, ga = amb[q_rows][:, None], amb[g_rows][None, :]
        eq = (gp == qp) | (ga == qp) | (gp == qa) | (ga == qa)
        junk = same_cam & ((gp == 0) | eq)
        return eq & ~same_cam, junk
    same = gp == qp
    junk = same & same_cam
    if p.name == "mars-official":
        junk |= gp == -1
    return same & ~junk, junk


def evaluate_mars(features: Any, pids: Any, camids: Any, query_index: Any,
                  protocol: str = "mars-official", *, ambis: Any = None, orig_pids: Any = None,
                  metric: str = "euclidean", normalize: bool = False, max_rank: int = 50,
                  chunk: int = DEFAULT_CHUNK) -> MarsResult:
    """Evaluate ``protocol`` on the features (N, D) of every MARS test tracklet.

    ``pids`` / ``camids`` (N,): labels in test-list order (the cleaned pids for ``mars-clean*``);
    ``orig_pids`` (N,): the original labels that decide what is dropped (default ``pids``);
    ``query_index``: 0-based query rows; ``metric`` / ``normalize`` as ``distance_matrix``
    (CF-AAN: Euclidean on L2-normalised features; STE-NVAN: cosine).
    """
    p = get_protocol(protocol)
    feats = features if isinstance(features, torch.Tensor) else torch.as_tensor(
        np.asarray(features))
    n = feats.shape[0]
    pid = _ints(pids, n, "pids")
    orig = pid if orig_pids is None else _ints(orig_pids, n, "orig_pids")
    q_rows, g_rows = protocol_rows(protocol, orig, query_index)
    match, junk = protocol_masks(protocol, q_rows, g_rows, pid, camids, ambis)
    dist = distance_matrix(feats[torch.as_tensor(q_rows)], feats[torch.as_tensor(g_rows)],
                           metric, normalize)
    rank = evaluate_masks(dist, torch.as_tensor(match), torch.as_tensor(junk),
                          max_rank=min(max_rank, max(1, len(g_rows))), ap=p.ap, chunk=chunk)
    name = f"{metric}{'-l2' if normalize and metric == 'euclidean' else ''}"
    return MarsResult(p.name, rank, len(q_rows), len(g_rows), name, p.source)


def split_labels(split: VideoSplit) -> dict[str, Any]:
    """The label arrays ``evaluate_mars`` takes, from a MARS ``VideoSplit``'s test list."""
    if not split.test or not split.query_index:
        raise ConfigError(f"{split.name}: no whole test list (expected a MARS-layout split with "
                          f"test and query_index)")
    cleaned = any(t.orig_pid is not None for t in split.test)
    return {
        "pids": np.array([t.pid for t in split.test], np.int64),
        "camids": np.array([t.camid for t in split.test], np.int64),
        "query_index": np.asarray(split.query_index, np.int64),
        "orig_pids": np.array([t.pid if t.orig_pid is None else t.orig_pid
                               for t in split.test], np.int64),
        "ambis": [t.ambi for t in split.test] if cleaned else None,
    }


def evaluate_mars_split(features: Any, split: VideoSplit, protocols: Sequence[str] | None = None,
                        **kw: Any) -> dict[str, MarsResult]:
    """Every protocol in ``protocols`` (default: the three uncleaned ones, plus the two cleaned
    ones when the split carries cleaned labels) on features of ``split.test``, by name."""
    labels = split_labels(split)
    if protocols is None:
        protocols = [n for n, p in PROTOCOLS.items()
                     if not p.cleaned or labels["ambis"] is not None]
    out = {}
    for name in protocols:
        if get_protocol(name).cleaned:
            out[name] = evaluate_mars(features, labels["pids"], labels["camids"],
                                      labels["query_index"], name, ambis=labels["ambis"],
                                      orig_pids=labels["orig_pids"], **kw)
        else:  # uncleaned protocols use the original labels
            out[name] = evaluate_mars(features, labels["orig_pids"], labels["camids"],
                                      labels["query_index"], name, **kw)
    return out
