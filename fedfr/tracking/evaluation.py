"""MOT evaluation through py-motmetrics (MIT): per-camera CLEAR MOT and identity metrics with
MOT17's class / consider filtering, and multi-camera IDF1 by concatenating cameras with frame
offsets (the AI City / DukeMTMC recipe).

Matching: a ground-truth box and a tracker box can pair when IoU >= 0.5 (motmetrics distance
``1 - IoU <= 0.5``). IoU is computed here (continuous coordinates, as motmetrics'
``iou_matrix``) because motmetrics 1.4.0's own ``iou_matrix`` calls ``np.asfarray``, removed in
numpy 2. ``motp`` is motmetrics' distance convention (mean ``1 - IoU`` of matches); the
MOTChallenge MOTP is ``1 - motp``.

MOT17 filtering (``filtering="mot17"``, as the MOTChallenge devkit / TrackEval preprocessing):
per frame, tracker boxes are matched one-to-one (Hungarian, IoU >= 0.5) to *all* ground-truth
boxes; tracker boxes matched to a distractor class (2 person on vehicle, 7 static person,
8 distractor, 12 reflection) are removed; then only ground truth with consider flag != 0 and
class 1 (pedestrian) is scored. ``min_visibility`` > 0 additionally treats pedestrians below that
visibility like distractors (the devkit's default is 0: no visibility filter).
``filtering="plain"`` (MOT15-style files without classes) scores ground-truth rows with flag
!= 0 and keeps every tracker box; ``"auto"`` picks mot17 when the file has classes.

HOTA: not here (motmetrics 1.4.0, the newest release, has none); :mod:`fedfr.tracking.hota`
computes it with the optional ``trackeval`` package.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from fedfr.errors import ConfigError
from fedfr.tracking.bytetrack import iou_matrix
from fedfr.tracking.motchallenge import (
    DISTRACTOR_CLASSES,
    PEDESTRIAN,
    read_ground_truth,
    read_rows,
    rows_by_frame,
)
from fedfr.tracking.optional import optional_import

IOU_THRESHOLD = 0.5
METRICS = ("idf1", "idp", "idr", "recall", "precision", "num_unique_objects", "mostly_tracked",
           "partially_tracked", "mostly_lost", "num_false_positives", "num_misses",
           "num_switches", "num_fragmentations", "mota", "motp")


def _mm():
    return optional_import("motmetrics", "MOT evaluation", "tracking")


def iou_tlwh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) ``left, top, width, height`` boxes -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return iou_matrix(np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], 1),
                      np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1))


def iou_distance(gt: np.ndarray, hyp: np.ndarray, max_distance: float = IOU_THRESHOLD
                 ) -> np.ndarray:
    """motmetrics distances: ``1 - IoU``, NaN (cannot pair) where above ``max_distance``."""
    d = 1.0 - iou_tlwh(gt, hyp)
    d[d > max_distance] = np.nan
    return d


def load_rows(x: str | Path | np.ndarray, gt: bool) -> np.ndarray:
    """Ground-truth rows padded to 9 columns (``gt``) or result rows, from a file or array."""
    if isinstance(x, np.ndarray):
        rows = x
    else:
        rows = read_ground_truth(x) if gt else read_rows(x, 6)
    if gt and rows.shape[1] < 9:
        full = np.full((len(rows), 9), -1.0)
        full[:, : rows.shape[1]] = rows
        if rows.shape[1] < 7:
            full[:, 6] = 1.0
        full[:, 8] = 1.0
        rows = full
    return rows


def filter_frame(gt: np.ndarray, hyp: np.ndarray, filtering: str,
                 min_visibility: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One frame's (gt (N, 9), hyp (M, >=6)) rows after the filtering rules (module doc)."""
    if filtering == "plain":
        return gt[gt[:, 6] != 0], hyp
    if filtering != "mot17":
        raise ConfigError(f"filtering {filtering!r}: expected mot17, plain or auto")
    ignore = np.isin(gt[:, 7], DISTRACTOR_CLASSES)
    low_vis = (gt[:, 7] == PEDESTRIAN) & (gt[:, 8] < min_visibility)
    ignore |= low_vis
    if len(gt) and len(hyp) and ignore.any():
        sim = iou_tlwh(gt[:, 2:6], hyp[:, 2:6])
        sim[sim < IOU_THRESHOLD - np.finfo(float).eps] = 0.0
        rows, cols = linear_sum_assignment(-sim)
        matched = sim[rows, cols] > np.finfo(float).eps
        drop = cols[matched & ignore[rows]]
        hyp = np.delete(hyp, drop, axis=0)
    keep = (gt[:, 6] != 0) & (gt[:, 7] == PEDESTRIAN) & ~low_vis
    return gt[keep], hyp


def filter_mode(gt: np.ndarray, filtering: str) -> str:
    """``filtering`` with ``auto`` resolved from the ground truth (mot17 when it has classes)."""
    if filtering == "auto":
        return "mot17" if len(gt) and (gt[:, 7] > 0).any() else "plain"
    return filtering


def accumulate(gt: str | Path | np.ndarray, hyp: str | Path | np.ndarray,
               filtering: str = "auto", min_visibility: float = 0.0,
               frames: range | None = None):
    """A ``motmetrics.MOTAccumulator`` over the frames of ``gt`` and ``hyp`` (their union, or
    ``frames``). ``gt``: a gt.txt path or (N, 9) rows; ``hyp``: a result file or (M, >=6)
    rows."""
    mm = _mm()
    gt_rows, hyp_rows = load_rows(gt, True), load_rows(hyp, False)
    mode = filter_mode(gt_rows, filtering)
    g_by, h_by = rows_by_frame(gt_rows), rows_by_frame(hyp_rows)
    frame_ids = sorted(set(g_by) | set(h_by)) if frames is None else list(frames)
    acc = mm.MOTAccumulator(auto_id=False)
    empty_g, empty_h = np.zeros((0, 9)), np.zeros((0, hyp_rows.shape[1] if len(hyp_rows) else 6))
    for f in frame_ids:
        g, h = filter_frame(g_by.get(f, empty_g), h_by.get(f, empty_h), mode, min_visibility)
        acc.update(g[:, 1].astype(np.int64), h[:, 1].astype(np.int64),
                   iou_distance(g[:, 2:6], h[:, 2:6]), frameid=int(f))
    return acc


def summarize(accumulators: Mapping[str, object], overall: bool = True):
    """motmetrics' MOTChallenge metric set (``METRICS``) per name (+ ``OVERALL``), a pandas
    DataFrame indexed by name."""
    mm = _mm()
    mh = mm.metrics.create()
    return mh.compute_many(list(accumulators.values()), names=list(accumulators),
                           metrics=list(METRICS), generate_overall=overall and
                           len(accumulators) > 1)


def evaluate_mot(pairs: Mapping[str, tuple[str | Path | np.ndarray, str | Path | np.ndarray]],
                 filtering: str = "auto", min_visibility: float = 0.0,
                 frames: Mapping[str, range] | None = None):
    """Per-sequence (camera) metrics: ``pairs`` = {name: (gt, result)} -> DataFrame (one row
    per name, plus OVERALL for several). ``frames`` restricts a name to the frames processed."""
    return summarize({name: accumulate(g, h, filtering, min_visibility,
                                       None if frames is None else frames.get(name))
                      for name, (g, h) in pairs.items()})


def evaluate_multicamera(gt: Mapping[str, str | Path | np.ndarray],
                         hyp: Mapping[str, str | Path | np.ndarray], filtering: str = "auto",
                         min_visibility: float = 0.0, min_cameras: int = 1) -> dict[str, float]:
    """Multi-camera identity metrics with global ids: every camera's (filtered) frames are
    shifted by the running sum of the previous cameras' last frame (over gt and result), in
    sorted camera order, and one accumulator is scored, so an identity split across cameras
    costs IDTP. ``min_cameras`` = 2 keeps only ground-truth identities seen by >= 2 cameras (an
    AI City variant). Returns idf1, idp, idr, idtp, idfp, idfn, mota, num_switches, ..."""
    mm = _mm()
    missing = sorted(set(gt) ^ set(hyp))
    if missing:
        raise ConfigError(f"multi-camera evaluation: cameras {missing} lack gt or results")
    loaded = {c: (load_rows(gt[c], True), load_rows(hyp[c], False)) for c in sorted(gt)}
    if min_cameras > 1:
        seen: dict[int, set[str]] = {}
        for c, (g, _) in loaded.items():
            for i in np.unique(g[:, 1]).astype(int):
                seen.setdefault(int(i), set()).add(c)
        multi = [i for i, cams in seen.items() if len(cams) >= min_cameras]
        loaded = {c: (g[np.isin(g[:, 1], multi)], h) for c, (g, h) in loaded.items()}
    acc = mm.MOTAccumulator(auto_id=False)
    offset = 0
    for _c, (g_rows, h_rows) in loaded.items():
        mode = filter_mode(g_rows, filtering)
        g_by, h_by = rows_by_frame(g_rows), rows_by_frame(h_rows)
        last = 0
        for f in sorted(set(g_by) | set(h_by)):
            g, h = filter_frame(g_by.get(f, np.zeros((0, 9))), h_by.get(f, np.zeros((0, 10))),
                                mode, min_visibility)
            acc.update(g[:, 1].astype(np.int64), h[:, 1].astype(np.int64),
                       iou_distance(g[:, 2:6], h[:, 2:6]), frameid=int(f) + offset)
            last = max(last, int(f))
        offset += last
    mh = mm.metrics.create()
    names = ["idf1", "idp", "idr", "idtp", "idfp", "idfn", "mota", "num_switches",
             "recall", "precision"]
    df = mh.compute(acc, metrics=names, name="multicamera")
    return {k: float(df[k].iloc[0]) for k in names}
