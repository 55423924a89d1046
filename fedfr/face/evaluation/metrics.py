"""Face-recognition metrics on similarity scores: TAR@FAR (1:1) and rank-k / TPIR@FPIR (1:N).

Score convention everywhere: higher = more similar, and a pair (or a probe's top match) is
accepted when its score is STRICTLY greater than the threshold. Functions take numpy arrays (torch
CPU tensors are converted) and report ``nan`` where a level is undefined for the data size,
never raising for that.

Exact-threshold rule (used for both FAR and FPIR): with n negative scores and a level ``far``,
k = floor(far * n) and the threshold is the (k+1)-th largest negative score. At most k negative
scores exceed it (exactly k when there are no ties), so the measured FAR never exceeds ``far``,
and it is the lowest such threshold, so TAR is the largest achievable at FAR <= ``far``.
k < 1 (level below 1 / n) or n = 0 gives ``nan``; k >= n gives ``-inf`` (accept everything).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

# Relative slack on far * n before flooring, so that e.g. 0.29 * 100 = 28.999999999999996 -> 29.
_LEVEL_EPS = 1e-9


def _as_1d(scores: np.ndarray | torch.Tensor | Sequence[float], name: str) -> np.ndarray:
    """Scores -> 1-D float numpy array (float32/float64 kept); raises if not 1-D or not finite."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    arr = np.asarray(scores)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected numeric scores, got dtype {arr.dtype}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of scores, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: scores must be finite (found nan or inf)")
    return arr


def _check_level(level: float, name: str) -> float:
    level = float(level)
    if not (0.0 < level <= 1.0):
        raise ValueError(f"{name}: a FAR/FPIR level must lie in (0, 1], got {level}")
    return level


def num_allowed(level: float, num_negatives: int) -> int:
    """k = floor(level * num_negatives): how many negatives may score above the threshold."""
    return int(math.floor(level * num_negatives * (1.0 + _LEVEL_EPS)))


def _threshold_from_sorted_desc(top_desc: np.ndarray, k: int, total: int) -> float:
    """(k+1)-th largest of ``total`` scores whose largest ones are ``top_desc`` (descending)."""
    if total == 0 or k < 1:
        return math.nan
    if k >= total:
        return -math.inf
    return float(top_desc[k])


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """Exact-threshold rule (module docstring): (k+1)-th largest impostor, k = floor(far * n).

    impostor_scores: (n,) similarities of non-matching pairs. Returns nan if k < 1 or n = 0,
    -inf if k >= n.
    """
    imp = _as_1d(impostor_scores, "impostor_scores")
    far = _check_level(far, "far")
    n = imp.shape[0]
    k = num_allowed(far, n)
    if n == 0 or k < 1:
        return math.nan
    if k >= n:
        return -math.inf
    # (k+1)-th largest = element at ascending position n-1-k.
    return float(np.partition(imp, n - 1 - k)[n - 1 - k])


def _share_above(genuine: np.ndarray, threshold: float) -> float:
    if math.isnan(threshold) or genuine.shape[0] == 0:
        return math.nan
    return float(np.count_nonzero(genuine > threshold)) / genuine.shape[0]


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, fars: Sequence[float]
               ) -> dict[float, float]:
    """TAR at each FAR level by the exact-threshold rule: share of genuine scores > threshold.

    genuine: (n_gen,) and impostor: (n_imp,) scores. Returns {far: tar}; nan where the threshold is
    undefined (far * n_imp < 1) or there are no genuine scores.
    """
    gen = _as_1d(genuine, "genuine")
    imp = _as_1d(impostor, "impostor")
    if len(fars) == 0:
        return {}
    levels = [_check_level(f, "fars") for f in fars]
    n = imp.shape[0]
    ks = [num_allowed(f, n) for f in levels]
    k_max = max(ks)
    # One partial sort serves every level: the k_max+1 largest impostors, descending.
    m = min(k_max + 1, n)
    if m > 0:
        top = np.partition(imp, n - m)[n - m:]
        top = np.sort(top)[::-1]
    else:
        top = imp
    return {f: _share_above(gen, _threshold_from_sorted_desc(top, k, n))
            for f, k in zip(levels, ks, strict=True)}


def tar_at_far_nearest_roc(genuine: np.ndarray, impostor: np.ndarray, fars: Sequence[float]
                           ) -> dict[float, float]:
    """insightface's rule, for comparison: sklearn ``roc_curve`` (accept score >= t, intermediate
    points dropped as sklearn's default), then TPR at the ROC point whose FPR is nearest to ``far``
    (argmin |fpr - far|, first on ties). This point may have FPR > far. nan if either set is empty.
    """
    from sklearn.metrics import roc_curve

    gen = _as_1d(genuine, "genuine")
    imp = _as_1d(impostor, "impostor")
    levels = [_check_level(f, "fars") for f in fars]
    if gen.shape[0] == 0 or imp.shape[0] == 0:
        return {f: math.nan for f in levels}
    y = np.concatenate([np.ones(gen.shape[0], np.int8), np.zeros(imp.shape[0], np.int8)])
    s = np.concatenate([gen.astype(np.float64), imp.astype(np.float64)])
    fpr, tpr, _ = roc_curve(y, s)
    return {f: float(tpr[np.argmin(np.abs(fpr - f))]) for f in levels}


class TopKImpostorScores:
    """Streaming impostor scores: keeps the ``capacity`` largest scores seen plus the total count.

    With capacity = ceil(max_far * expected_total) + 1, ``threshold(far)`` equals
    ``threshold_at_far(all_scores, far)`` for every far <= max_far (as long as the final count does
    not exceed ``expected_total``; beyond it, any far with floor(far * count) < capacity still
    works). ``expected_total=None`` keeps every score (exact for any far, unbounded memory): an
    exact top-k of a stream of unknown length is not possible with bounded memory. A far that needs
    more scores than were kept raises ValueError instead of returning a wrong value.
    """

    def __init__(self, max_far: float, expected_total: int | None = None) -> None:
        self.max_far = _check_level(max_far, "max_far")
        if expected_total is None:
            self.capacity: int | None = None
        else:
            if int(expected_total) < 0:
                raise ValueError(f"expected_total must be >= 0, got {expected_total}")
            self.capacity = int(math.ceil(self.max_far * int(expected_total))) + 1
        self._kept = np.empty(0, dtype=np.float32)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self._floor = -math.inf  # every score <= floor is known not to be in the top `capacity`
        self._count = 0
        self._dropped = False

    @property
    def count(self) -> int:
        """Total number of scores passed to ``update`` so far."""
        return self._count

    @property
    def kept(self) -> int:
        """Number of scores currently held."""
        self._compact()
        return int(self._kept.shape[0])

    @property
    def floor(self) -> float:
        """A score <= floor can no longer enter the kept top scores (-inf until the buffer
        first fills). Callers may drop such scores before ``update`` (see ``update_filtered``)."""
        return self._floor

    def update(self, scores: np.ndarray | torch.Tensor) -> None:
        """Add a batch of impostor scores (any shape; flattened; stored as float32)."""
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().numpy()
        batch = np.asarray(scores, dtype=np.float32).reshape(-1)
        if batch.size == 0:
            return
        # max/min propagate nan, so two reductions check finiteness without a mask pass
        if not (np.isfinite(batch.max()) and np.isfinite(batch.min())):
            raise ValueError("TopKImpostorScores.update: scores must be finite")
        cap = self.capacity
        if self._floor > -math.inf:
            batch_kept = batch[batch > self._floor]
        elif cap is not None and batch.size > 64 * cap:
            # Nothing kept yet. The cap-th largest of a strided sample is a lower bound of the
            # batch's cap-th largest (a subset's k-th largest is never larger), so every score
            # below it is out of the top `cap`; ~batch.size / 64 survive.
            sample = batch[::batch.size // (64 * cap)]
            bound = np.partition(sample, sample.size - cap)[sample.size - cap]
            batch_kept = batch[batch >= bound]
        elif cap is not None and batch.size > 2 * cap:
            # nothing kept yet: only the batch's own top `cap` can matter
            batch_kept = np.partition(batch, batch.size - cap)[batch.size - cap:]
        else:
            batch_kept = batch
        self.update_filtered(batch_kept, batch.size)

    def update_filtered(self, survivors: np.ndarray, total: int) -> None:
        """Add ``total`` scores of which only ``survivors`` (the ones > ``floor``, float32 1-D)
        are passed; the others are counted. For streams that filter blocks themselves."""
        self._count += int(total)
        if survivors.size < total:
            self._dropped = True
        if survivors.size == 0:
            return
        self._pending.append(np.array(survivors, dtype=np.float32, copy=True).reshape(-1))
        self._pending_size += survivors.size
        cap = self.capacity
        # Compact lazily (amortised O(1) per kept score): only when the candidates double.
        if cap is not None and self._kept.shape[0] + self._pending_size > 2 * cap + 4096:
            self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        merged = np.concatenate([self._kept, *self._pending])
        self._pending, self._pending_size = [], 0
        cap = self.capacity
        if cap is not None and merged.shape[0] >= cap:
            if merged.shape[0] > cap:
                merged = np.partition(merged, merged.shape[0] - cap)[merged.shape[0] - cap:]
                self._dropped = True
            self._floor = float(merged.min())
        self._kept = merged

    def threshold(self, far: float) -> float:
        """Exact-threshold rule over all scores seen (see module docstring); nan if k < 1."""
        far = _check_level(far, "far")
        self._compact()
        k = num_allowed(far, self._count)
        if self._count == 0 or k < 1:
            return math.nan
        if k >= self._count:
            return -math.inf
        if self._dropped and k >= self._kept.shape[0]:
            raise ValueError(
                f"TopKImpostorScores: far={far} needs the {k + 1} largest of {self._count} "
                f"scores but only {self._kept.shape[0]} were kept (capacity for max_far="
                f"{self.max_far}); raise max_far or expected_total")
        n = self._kept.shape[0]
        return float(np.partition(self._kept, n - 1 - k)[n - 1 - k])


def _as_feats(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """(N, d) features -> float32 numpy array; raises if not 2-D or not finite."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected (N, d) features, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected numeric features, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: features must be finite (found nan or inf)")
    return arr


def _as_labels(y: np.ndarray | torch.Tensor | Sequence[int], n: int, name: str) -> np.ndarray:
    """(N,) integer labels -> int64 numpy array; raises on wrong length or non-integer values."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected ({n},) labels, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def top_matches(probe_feats: np.ndarray, gallery_feats: np.ndarray, k: int = 1,
                chunk_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery matches of each probe, by dot product, chunked over probes.

    probe_feats (P, d), gallery_feats (G, d) float32. Returns scores (P, k') float32 and gallery
    indices (P, k') int64, best first, with k' = min(k, G). Holds at most chunk_size x G scores.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    p, g = probe_feats.shape[0], gallery_feats.shape[0]
    kk = min(int(k), g)
    out_s = np.empty((p, kk), dtype=np.float32)
    out_i = np.empty((p, kk), dtype=np.int64)
    if kk == 0:
        return out_s, out_i
    gt = np.ascontiguousarray(gallery_feats.T)
    for a in range(0, p, chunk_size):
        s = probe_feats[a:a + chunk_size] @ gt
        if kk == 1:
            idx = np.argmax(s, axis=1)[:, None]
        else:
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
            idx = np.take_along_axis(part, order, axis=1)
        out_i[a:a + chunk_size] = idx
        out_s[a:a + chunk_size] = np.take_along_axis(s, idx, axis=1)
    return out_s, out_i


def identification_from_matches(top_labels: np.ndarray, top_scores: np.ndarray,
                                probe_labels: np.ndarray, mated: np.ndarray,
                                fpirs: Sequence[float], ranks: Sequence[int] = (1,)) -> dict:
    """Open-set 1:N metrics from each probe's ranked matches (see ``identification_metrics``).

    top_labels / top_scores (P, k) ranked best first; probe_labels (P,); mated (P,) bool.
    """
    levels = [_check_level(f, "fpirs") for f in fpirs]
    n_mated = int(np.count_nonzero(mated))
    n_non = int(mated.shape[0] - n_mated)
    out: dict = {}
    hits = top_labels[mated] == probe_labels[mated][:, None]  # (n_mated, k)
    for r in ranks:
        if int(r) < 1:
            raise ValueError(f"ranks must be >= 1, got {r}")
        out[f"rank{int(r)}"] = (float(hits[:, :int(r)].any(axis=1).mean()) if n_mated
                                else math.nan)
    non_top = top_scores[~mated, 0] if top_scores.shape[1] else np.empty(0, np.float32)
    if levels:
        correct_top1 = hits[:, 0] if hits.shape[1] else np.zeros(n_mated, bool)
        mated_top = top_scores[mated, 0] if top_scores.shape[1] else np.empty(0, np.float32)
        ks = [num_allowed(f, n_non) for f in levels]
        m = min(max(ks) + 1, n_non)
        top_non = np.sort(np.partition(non_top, n_non - m)[n_non - m:])[::-1] if m else non_top
        for f, k in zip(levels, ks, strict=True):
            thr = _threshold_from_sorted_desc(top_non, k, n_non)
            if math.isnan(thr) or n_mated == 0:
                val = math.nan
            else:
                val = float(np.count_nonzero(correct_top1 & (mated_top > thr))) / n_mated
            out[level_key("tpir", f)] = val
    out["num_mated"] = float(n_mated)
    out["num_nonmated"] = float(n_non)
    return out


def identification_metrics(probe_feats: np.ndarray, probe_labels: np.ndarray,
                           gallery_feats: np.ndarray, gallery_labels: np.ndarray,
                           fpirs: Sequence[float], ranks: Sequence[int] = (1,),
                           chunk_size: int = 4096) -> dict:
    """Open-set 1:N identification (NIST style) with dot-product scores.

    probe_feats (P, d), probe_labels (P,), gallery_feats (G, d), gallery_labels (G,) unique (one
    gallery entry per identity). A probe is mated iff its label is in ``gallery_labels``.
    rank-r = share of mated probes whose identity is among their r best-scoring gallery entries.
    FPIR threshold = exact-threshold rule over the non-mated probes' top scores;
    TPIR(fpir) = share of mated probes whose top-1 label is correct AND top score > threshold.
    Returns {"rank1": .., "tpir@1e-02": .., "num_mated": .., "num_nonmated": ..} (floats; nan
    where undefined: no mated probes, or fpir * #non-mated < 1).
    """
    pf = _as_feats(probe_feats, "probe_feats")
    gf = _as_feats(gallery_feats, "gallery_feats")
    if pf.shape[1] != gf.shape[1]:
        raise ValueError(f"probe_feats have d={pf.shape[1]} but gallery_feats d={gf.shape[1]}")
    pl = _as_labels(probe_labels, pf.shape[0], "probe_labels")
    gl = _as_labels(gallery_labels, gf.shape[0], "gallery_labels")
    if np.unique(gl).shape[0] != gl.shape[0]:
        raise ValueError("gallery_labels: expected one gallery entry per identity (labels unique)")
    if gf.shape[0] == 0:
        raise ValueError("gallery_feats: the gallery is empty")
    ranks = [int(r) for r in ranks]
    scores, idx = top_matches(pf, gf, max(ranks, default=1), chunk_size)
    mated = np.isin(pl, gl)
    return identification_from_matches(gl[idx], scores, pl, mated, fpirs, ranks)


def auto_levels(num_negatives: int,
                candidates: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
                count: int = 2, min_count: int = 10) -> list[float]:
    """The ``count`` smallest candidate levels with level * num_negatives >= min_count.

    So that each reported FAR/FPIR threshold rests on at least ``min_count`` negatives exceeding
    it. Returned ascending; fewer than ``count`` (possibly none) if the data are too small.
    """
    ok = sorted(float(c) for c in candidates
                if float(c) * num_negatives * (1.0 + _LEVEL_EPS) >= min_count)
    return ok[:count]


def level_key(prefix: str, level: float) -> str:
    """Metric name for a level: ("tar", 1e-4) -> "tar@1e-04"; ("tpir", 2.5e-3) -> "tpir@2.5e-03".

    Uses the fewest mantissa digits that round-trip the float exactly.
    """
    level = float(level)
    for digits in range(17):
        text = f"{level:.{digits}e}"
        if float(text) == level:
            return f"{prefix}@{text}"
    return f"{prefix}@{level!r}"
