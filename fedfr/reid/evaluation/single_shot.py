"""Single-gallery-shot protocols: the small sets' random splits, and CUHK03's classic CMC.

- VIPeR, GRID, PRID (single-shot), QMUL-iLIDS: ``num_splits`` seeded random splits (10 by
  default); in each, half of the identities (or ``num_test_ids``) are test identities, each with
  one query image and one gallery image from another camera; pid-0 images (GRID's distractors)
  join every gallery. Each split is ranked on its own; ``summarise_splits`` gives the mean and
  sample standard deviation (ddof = 1) over splits of every CMC rank, mAP and mINP.
- CUHK03 classic ("cuhk03" metric of torchreid): per query, after junk removal, one gallery image
  is drawn per identity, ``repeats`` times (seeded); CMC is averaged over the draws, AP / mINP
  come from the full ranking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from fedfr.errors import ConfigError
from fedfr.reid.evaluation.rank import (
    DEFAULT_AP,
    RankResult,
    _tensor,
    evaluate_rank,
    features_to_rank,
)


@dataclass(frozen=True)
class SingleShotSplit:
    """Indices (into the dataset's image list) of one random split."""

    train: np.ndarray
    query: np.ndarray
    gallery: np.ndarray


def random_single_shot_splits(pids: Sequence[int], camids: Sequence[int], *,
                              num_splits: int = 10, num_test_ids: int | None = None,
                              seed: int = 0, query_cam: int | None = None,
                              gallery_cam: int | None = None) -> list[SingleShotSplit]:
    """Seeded random single-shot splits of a dataset's images (pid 0 = distractor).

    Test identities: ``num_test_ids`` (default half) of the identities seen in >= 2 cameras
    (``query_cam`` / ``gallery_cam`` given: seen in both). Per test identity, one query image
    (from ``query_cam``, else a random camera) and one gallery image from another camera
    (``gallery_cam``, else random). The remaining identities' images are the training part.
    """
    p, c = np.asarray(pids, dtype=np.int64), np.asarray(camids, dtype=np.int64)
    if p.shape != c.shape:
        raise ValueError(f"{p.shape[0]} pids for {c.shape[0]} camids")
    ids = [int(i) for i in np.unique(p) if i > 0]
    by_id = {i: np.flatnonzero(p == i) for i in ids}

    def eligible(i: int) -> bool:
        cams = set(c[by_id[i]].tolist())
        if query_cam is not None or gallery_cam is not None:
            return (query_cam is None or query_cam in cams) and \
                (gallery_cam is None or gallery_cam in cams) and len(cams) >= 2
        return len(cams) >= 2

    usable = [i for i in ids if eligible(i)]
    n_test = len(ids) // 2 if num_test_ids is None else num_test_ids
    if not 1 <= n_test <= len(usable):
        raise ConfigError(f"num_test_ids={n_test}: {len(usable)} identities are seen by two "
                          f"cameras (as the protocol needs)")
    distractors = np.flatnonzero(p == 0)
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(num_splits):
        test = sorted(rng.choice(usable, size=n_test, replace=False).tolist())
        query, gallery = [], []
        for i in test:
            imgs = by_id[i]
            q_pool = imgs if query_cam is None else imgs[c[imgs] == query_cam]
            if query_cam is None:  # a query camera with another camera to match in
                q_pool = q_pool[[bool((c[imgs] != c[j]).any()) for j in q_pool]]
            q = int(rng.choice(q_pool))
            g_pool = imgs[c[imgs] != c[q]]
            if gallery_cam is not None:
                g_pool = g_pool[c[g_pool] == gallery_cam]
            query.append(q)
            gallery.append(int(rng.choice(g_pool)))
        test_set = set(test)
        train = np.asarray([k for k in range(len(p)) if p[k] > 0 and int(p[k]) not in test_set],
                           dtype=np.int64)
        splits.append(SingleShotSplit(train, np.asarray(query, dtype=np.int64),
                                      np.concatenate([np.asarray(gallery, dtype=np.int64),
                                                      distractors])))
    return splits


def evaluate_splits(per_split: Iterable[tuple[Any, Any, Any, Any, Any, Any]],
                    **rank_kwargs: Any) -> list[RankResult]:
    """Rank each split's (qf, gf, q_pids, g_pids, q_camids, g_camids) with features_to_rank."""
    return [features_to_rank(*split, **rank_kwargs) for split in per_split]


def evaluate_single_shot(features: Any, pids: Sequence[int], camids: Sequence[int],
                         splits: Sequence[SingleShotSplit], **rank_kwargs: Any
                         ) -> tuple[list[RankResult], dict[str, Any]]:
    """Every split ranked on one dataset's (N, D) features; (per-split results, summary)."""
    x = _tensor(features, "features")
    p, c = np.asarray(pids), np.asarray(camids)
    if x.shape[0] != p.shape[0] or p.shape != c.shape:
        raise ValueError(f"{x.shape[0]} features, {p.shape[0]} pids, {c.shape[0]} camids")
    results = evaluate_splits(((x[torch.as_tensor(s.query)], x[torch.as_tensor(s.gallery)],
                                p[s.query], p[s.gallery], c[s.query], c[s.gallery])
                               for s in splits), **rank_kwargs)
    return results, summarise_splits(results)


def summarise_splits(results: Sequence[RankResult], ranks: Sequence[int] = (1, 5, 10, 20)
                     ) -> dict[str, Any]:
    """Mean and sample std (ddof = 1; 0 for one split) over splits: R<k>, R<k>_std, mAP,
    mAP_std, mINP, mINP_std, plus the split count, the AP convention and the query counts."""
    if not results:
        raise ValueError("summarise_splits: no split results")
    conventions = {r.ap_convention for r in results}
    if len(conventions) > 1:
        raise ValueError(f"summarise_splits: splits use different AP conventions {conventions}")
    out: dict[str, Any] = {"splits": len(results), "ap": results[0].ap_convention}
    max_rank = min(len(r.cmc) for r in results)

    def put(name: str, values: list[float]) -> None:
        v = np.asarray(values, dtype=np.float64)
        out[name] = float(v.mean())
        out[f"{name}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0

    for k in ranks:
        if k <= max_rank:
            put(f"R{k}", [r.rank(k) for r in results])
    put("mAP", [r.mAP for r in results])
    put("mINP", [r.mINP for r in results])
    out["queries"] = int(sum(r.num_queries for r in results))
    out["invalid"] = int(sum(r.num_invalid for r in results))
    return out


def cuhk03_single_gallery_shot(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any,
                               g_camids: Any, *, max_rank: int = 50, repeats: int = 10,
                               seed: int = 0, ap: str = DEFAULT_AP,
                               junk_pids: Sequence[int] | None = (-1,)) -> RankResult:
    """CUHK03's classic CMC: one random gallery image per identity, averaged over ``repeats``.

    Per valid query, the junk-free gallery is ordered by the tie rule; each draw keeps one image
    of every identity (uniformly among its images), and the rank of the kept true match among
    the kept images gives that draw's CMC. mAP / mINP / counts are those of ``evaluate_rank`` on
    the full gallery (torchreid's ``eval_cuhk03`` does the same).
    """
    full = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, ap=ap,
                         junk_pids=junk_pids)
    if repeats < 1:
        raise ConfigError(f"repeats={repeats}: expected >= 1")
    d = _tensor(distmat, "distmat").double().cpu().numpy()
    qp, gp = np.asarray(q_pids).reshape(-1), np.asarray(g_pids).reshape(-1)
    qc, gc = np.asarray(q_camids).reshape(-1), np.asarray(g_camids).reshape(-1)
    junk_g = np.isin(gp, list(junk_pids or ()))
    rng = np.random.default_rng(seed)
    cmcs = []
    for i in range(d.shape[0]):
        keep = ~junk_g & ~((gp == qp[i]) & (gc == qc[i]))
        idx = np.flatnonzero(keep)
        if not (gp[idx] == qp[i]).any():
            continue
        order = idx[np.argsort(d[i, idx], kind="stable")]  # rank order (distance, index)
        pid_in_order = gp[order]
        # group the ranked positions by identity; draw one position per identity per repeat
        by_pid = np.argsort(pid_in_order, kind="stable")
        uniq, start, size = np.unique(pid_in_order[by_pid], return_index=True,
                                      return_counts=True)
        draw = start[None, :] + np.floor(rng.random((repeats, uniq.size)) * size).astype(int)
        pos = by_pid[draw]  # (repeats, identities): ranked positions kept
        own = int(np.searchsorted(uniq, qp[i]))
        rank = (pos < pos[:, own:own + 1]).sum(axis=1) + 1  # among kept images, 1-based
        cmcs.append((rank[:, None] <= np.arange(1, max_rank + 1)[None, :]).mean(axis=0))
    if not cmcs:
        return full
    return replace(full, cmc=np.mean(cmcs, axis=0))
