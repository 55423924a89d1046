"""Streaming score computation for protocols too large to hold every score in memory.

The personalised 1:1 protocol at the paper's size (40 clients x 100 identities x 40 test images)
has about 624 M impostor pairs per client. Scores are produced block by block (at most
chunk_size x chunk_size float32 in one buffer, reused), and for each FAR level only what the
exact-threshold rule needs is kept: the ceil(max_far * n_imp) + 1 largest impostor scores
(``TopKImpostorScores``), after a cheap filter drops every score at or below the current
k-th largest. Genuine scores (sum over identities of C(n_id, 2)) are few and kept.

Two drivers:

- ``stream_cross_topk(a, b)``: one client, every (row of a, row of b) pair (the per-client path
  a client runs on its own; used by ``personalized_protocol``).
- ``personalized_all_clients``: every client at once in one process (central evaluation and the
  scale benchmark). Each unordered pair of clients (c, c') is scored ONCE: the block
  T_c T_c'^T holds client c's impostors against c' and client c''s impostors against c, so it
  feeds both clients' streams; that halves the matrix products of running each client alone.

All features are L2-normalised float32 (N, d); a score is a dot product (cosine).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np

from fedfr.face.evaluation.metrics import (
    TopKImpostorScores,
    identification_from_matches,
    level_key,
)

log = logging.getLogger(__name__)


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def genuine_scores(feats: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scores of every same-label pair i < j, identities in sorted label order, each identity's
    pairs in row-major (i, j) order. feats (N, d), labels (N,) -> float32 (sum C(n_id, 2),)."""
    parts = []
    for c in np.unique(labels):
        fc = feats[labels == c]
        s = fc @ fc.T
        parts.append(s[np.triu_indices(fc.shape[0], k=1)])
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else \
        np.empty(0, np.float32)


def _feed(top: TopKImpostorScores, block: np.ndarray) -> None:
    """Filter a score block by the stream's floor, then hand over the survivors."""
    if top.floor > -math.inf:
        top.update_filtered(block[block > top.floor], block.size)
    else:
        top.update(block)


def stream_cross_topk(a: np.ndarray, b: np.ndarray, max_far: float,
                      chunk_size: int = 4096) -> TopKImpostorScores:
    """Top impostor scores of every (a_i, b_j) pair, a (n, d) x b (o, d), in blocks of
    chunk_size x chunk_size (rows of a outer, rows of b inner). Memory: one block plus
    ~2 x (ceil(max_far * n * o) + 1) kept scores."""
    n, o = a.shape[0], b.shape[0]
    top = TopKImpostorScores(max_far, expected_total=n * o)
    buf = np.empty((min(chunk_size, n), min(chunk_size, o)), dtype=np.float32)
    for i in range(0, n, chunk_size):
        ai = a[i:i + chunk_size]
        for j in range(0, o, chunk_size):
            bj = b[j:j + chunk_size]
            block = buf[:ai.shape[0], :bj.shape[0]]
            np.matmul(ai, bj.T, out=block)
            _feed(top, block)
    return top


def tar_from_stream(genuine: np.ndarray, top: TopKImpostorScores | None,
                    fars: Sequence[float]) -> dict[str, float]:
    """{"tar@<far>": share of genuine scores > the stream's threshold at far} (nan if undefined)."""
    out: dict[str, float] = {}
    for f in fars:
        thr = top.threshold(f) if top is not None else math.nan
        out[level_key("tar", f)] = (math.nan if math.isnan(thr) or genuine.shape[0] == 0
                                    else float(np.count_nonzero(genuine > thr)) / genuine.shape[0])
    return out


def _client_1n(own_top_s: np.ndarray, own_top_i: np.ndarray, own_labels: np.ndarray,
               other_top_s: np.ndarray, gallery_labels: np.ndarray,
               fpirs: Sequence[float]) -> dict[str, float]:
    """One client's 1:N metrics from each probe's top-1 match in the client's gallery."""
    n, o = own_top_s.shape[0], other_top_s.shape[0]
    non_label = int(gallery_labels.min()) - 1
    probe_labels = np.concatenate([own_labels, np.full(o, non_label, dtype=np.int64)])
    mated = np.concatenate([np.ones(n, bool), np.zeros(o, bool)])
    top_labels = np.concatenate([gallery_labels[own_top_i], np.full(o, non_label - 1)])
    ident = identification_from_matches(
        top_labels[:, None], np.concatenate([own_top_s, other_top_s])[:, None],
        probe_labels, mated, list(fpirs), ranks=(1,))
    return {k: float(v) for k, v in ident.items()}


def personalized_all_clients(test_feats: Sequence[np.ndarray], test_labels: Sequence[np.ndarray],
                             train_feats: Sequence[np.ndarray],
                             train_labels: Sequence[np.ndarray],
                             fars: Sequence[float] = (1e-6, 1e-5),
                             fpirs: Sequence[float] = (1e-5, 1e-4),
                             chunk_size: int = 4096) -> list[dict[str, float]]:
    """The personalised protocol of every client, computed together (see module docstring).

    test_feats[c] (n_c, d) L2-normalised with test_labels[c] (n_c,); train_feats[c] (m_c, d)
    with train_labels[c]. Identities must not be shared between clients. Per client c the
    result equals ``personalized_protocol(test_c, .., train_c, .., concat(other tests))``:
    1:1 genuine = same-identity pairs of c's test images, impostors = c's test images x every
    other client's test images; 1:N gallery = mean training feature per identity of c, probes =
    c's test images (mated) and every other client's test images (non-mated).
    Peak memory: all test features, one chunk_size^2 score block, per client the kept impostor
    scores (<= 2 x ceil(max(fars) x n_imp) + 4096) and per (client, probe) the top-1 score and
    gallery index (8 bytes x clients x probes: 51 MB at 40 clients x 160 k probes).
    Returns one flat dict per client (keys as ``personalized_protocol``).
    """
    k = len(test_feats)
    if not (len(test_labels) == len(train_feats) == len(train_labels) == k):
        raise ValueError("personalized_all_clients: test/train features and labels must be given "
                         f"for the same clients ({len(test_feats)}, {len(test_labels)}, "
                         f"{len(train_feats)}, {len(train_labels)})")
    if k < 2:
        raise ValueError("personalized_all_clients: needs at least 2 clients (impostors are the "
                         "other clients' test images)")
    sizes = [int(t.shape[0]) for t in test_feats]
    total = sum(sizes)
    far_levels = [float(f) for f in fars]
    tops = ([TopKImpostorScores(max(far_levels), expected_total=sizes[c] * (total - sizes[c]))
             for c in range(k)] if far_levels else [])

    # 1:1 impostors: each unordered client pair once, blocks feed both clients' streams.
    buf = np.empty((min(chunk_size, max(sizes)), min(chunk_size, max(sizes))), np.float32)
    if far_levels:
        t0, done, pairs_all = time.perf_counter(), 0, (total * total - sum(n * n for n in sizes))
        last = t0
        for c in range(k):
            if c and pairs_all >= 10**9 and time.perf_counter() - last >= 30:  # progress
                last = time.perf_counter()
                log.info("personalised 1:1: %.0f%% of %d M cross-client pairs scored, %.0f s",
                         100 * done / (pairs_all // 2), pairs_all // 2 // 10**6, last - t0)
            done += sizes[c] * (total - sum(sizes[:c + 1]))
            for c2 in range(c + 1, k):
                for i in range(0, sizes[c], chunk_size):
                    ai = test_feats[c][i:i + chunk_size]
                    for j in range(0, sizes[c2], chunk_size):
                        bj = test_feats[c2][j:j + chunk_size]
                        block = buf[:ai.shape[0], :bj.shape[0]]
                        np.matmul(ai, bj.T, out=block)
                        floor = min(tops[c].floor, tops[c2].floor)
                        if floor > -math.inf:
                            surv = block[block > floor]
                            for t in (tops[c], tops[c2]):
                                t.update_filtered(surv[surv > t.floor] if t.floor > floor
                                                  else surv, block.size)
                        else:
                            tops[c].update(block)
                            tops[c2].update(block)

    # 1:N: every probe against every client's gallery in one product per probe chunk; the
    # top-1 within each client's columns is kept per (probe, client).
    gal_labels = [np.unique(y) for y in train_labels]
    galleries = [np.stack([_l2n(tr[y == g].mean(axis=0)) for g in gl]).astype(np.float32)
                 for tr, y, gl in zip(train_feats, train_labels, gal_labels, strict=True)]
    gal_all = np.concatenate(galleries)
    col_start = np.cumsum([0] + [g.shape[0] for g in galleries])
    top_s = np.empty((k, total), np.float32)
    top_i = np.empty((k, total), np.int32)
    gt = np.ascontiguousarray(gal_all.T)
    row = 0
    for probes in test_feats:  # each client's test images, in chunks (no concatenated copy)
        for a in range(0, probes.shape[0], chunk_size):
            s = probes[a:a + chunk_size] @ gt
            r0, r1 = row + a, row + a + s.shape[0]
            for c in range(k):
                sc = s[:, col_start[c]:col_start[c + 1]]
                idx = np.argmax(sc, axis=1)
                top_i[c, r0:r1] = idx
                top_s[c, r0:r1] = np.take_along_axis(sc, idx[:, None], axis=1)[:, 0]
        row += probes.shape[0]

    row_start = np.cumsum([0] + sizes)
    results = []
    for c in range(k):
        lo, hi = row_start[c], row_start[c + 1]
        y = np.asarray(test_labels[c], dtype=np.int64)
        missing = np.setdiff1d(np.unique(y), gal_labels[c])
        if missing.size:
            raise ValueError(f"client {c}: identity {int(missing[0])} has test images but no "
                             "training images")
        gen = genuine_scores(test_feats[c], y)
        out = tar_from_stream(gen, tops[c] if tops else None, far_levels)
        other = np.concatenate([top_s[c, :lo], top_s[c, hi:]])
        ident = _client_1n(top_s[c, lo:hi], top_i[c, lo:hi], y, other, gal_labels[c], fpirs)
        out.update({key: v for key, v in ident.items() if key.startswith(("rank", "tpir"))})
        out["num_genuine"] = float(gen.shape[0])
        out["num_impostor"] = float(sizes[c] * (total - sizes[c]))
        out["num_gallery"] = float(gal_labels[c].shape[0])
        out["num_mated"] = ident["num_mated"]
        out["num_nonmated"] = ident["num_nonmated"]
        results.append(out)
    return results


def pair_scores(feats: np.ndarray, left: np.ndarray, right: np.ndarray,
                rows_per_block: int = 512, dense_ratio: float = 32.0,
                gather_chunk: int = 16384) -> np.ndarray:
    """Dot products of listed pairs: out[p] = feats[left[p]] . feats[right[p]].

    feats (T, d) float32; left, right (P,) int indices. Pairs are grouped by their left index;
    for rows_per_block distinct left rows at a time, the block feats[rows] @ feats[cols].T over
    the right indices those pairs use is computed as one matrix product and the pairs are read
    from it. A product entry costs ~2d flops against ~8d bytes of memory traffic for scoring a
    pair on its own, so the block is used unless it holds more than ``dense_ratio`` entries per
    pair (very sparse pair lists); then pairs are scored one by one in gather_chunk batches.
    Returns float32 (P,) in the input order. Memory: one block (rows_per_block x #cols), plus
    about 4 x P indices.
    """
    left, right = np.asarray(left), np.asarray(right)
    if left.dtype.kind not in "iu" or right.dtype.kind not in "iu":
        raise ValueError(f"pair_scores: integer indices expected, got {left.dtype} and "
                         f"{right.dtype}")
    if left.shape != right.shape or left.ndim != 1:
        raise ValueError(f"pair_scores: left {left.shape} and right {right.shape} must be equal "
                         "1-D index arrays")
    t = feats.shape[0]
    for name, idx in (("left", left), ("right", right)):
        if idx.size and (idx.min() < 0 or idx.max() >= t):
            raise ValueError(f"pair_scores: {name} index out of range [0, {t})")
    out = np.empty(left.shape[0], np.float32)
    if left.size == 0:
        return out
    if left.size < 2 or bool(np.all(left[1:] >= left[:-1])):
        order = None  # already grouped by left (as IJB-C's pair file): no sort, no copies
        sl, sr = left, right
    else:
        order = np.argsort(left, kind="stable")
        sl, sr = left[order], right[order]
    starts = np.flatnonzero(np.concatenate([[True], sl[1:] != sl[:-1]]))
    ends = np.append(starts[1:], sl.shape[0])
    used = np.zeros(t, dtype=bool)
    used[sr] = True
    all_cols = np.flatnonzero(used)  # every right index, gathered once (contiguous copy)
    used[all_cols] = False
    all_right = np.ascontiguousarray(feats[all_cols])
    # int32 positions inside a block (rows_per_block x #cols must stay below 2**31)
    idx_t = np.int32 if rows_per_block * max(all_cols.shape[0], 1) < 2**31 else np.int64
    all_map = np.zeros(t, dtype=idx_t)
    all_map[all_cols] = np.arange(all_cols.shape[0], dtype=idx_t)
    col_map = np.zeros(t, dtype=idx_t)
    res = np.empty(sl.shape[0], np.float32)  # scores in sorted order
    for g in range(0, starts.shape[0], rows_per_block):
        g1 = min(g + rows_per_block, starts.shape[0])
        p0, p1 = int(starts[g]), int(ends[g1 - 1])
        ri = sr[p0:p1]
        n_rows, n_pairs = g1 - g, p1 - p0
        if n_rows * all_cols.shape[0] <= dense_ratio * n_pairs:
            # dense enough against every right index: the shared copy, no per-block scan
            cols, col_map_use = all_cols, all_map
        else:
            used[ri] = True
            cols = np.flatnonzero(used)
            used[cols] = False
            col_map_use = col_map
        if n_rows * cols.shape[0] <= dense_ratio * n_pairs:
            rows = sl[starts[g:g1]]
            if cols is all_cols:
                block = feats[rows] @ all_right.T
            else:
                block = feats[rows] @ feats[cols].T
                col_map[cols] = np.arange(cols.shape[0], dtype=idx_t)
            flat = np.repeat(np.arange(n_rows, dtype=idx_t) * idx_t(cols.shape[0]),
                             ends[g:g1] - starts[g:g1])
            flat += col_map_use[ri]
            np.take(block.reshape(-1), flat, out=res[p0:p1], mode="clip")  # valid: no check
        else:
            for q in range(p0, p1, gather_chunk):
                q1 = min(q + gather_chunk, p1)
                res[q:q1] = np.einsum("ij,ij->i", feats[sl[q:q1]], feats[sr[q:q1]])
    if order is None:
        return res
    out[order] = res
    return out
