"""HOTA (Luiten et al., IJCV 2021) through TrackEval's own implementation, optional.

The metric is computed by ``trackeval.metrics.HOTA`` (MIT; the PyPI package ``trackeval`` >=
1.3.0, the maintained fork of TrackEval that runs on numpy 2). This module only prepares its
input as TrackEval's MOTChallenge preprocessing does: per frame the same filtering as
:mod:`fedfr.tracking.evaluation` (MOT17 class / consider rules, ``filter_frame``), ids mapped to
0..n-1, similarity = IoU of every (gt, tracker) box pair (HOTA averages over the IoU
thresholds 0.05, 0.10, ..., 0.95). Multi-camera HOTA concatenates the cameras with frame
offsets, as ``evaluate_multicamera`` does for IDF1.

Not installed by default (not yet in the ``tracking`` extra); without it these functions
raise a one-line ConfigError naming the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fedfr.errors import ConfigError
from fedfr.tracking.evaluation import filter_frame, filter_mode, iou_tlwh, load_rows
from fedfr.tracking.motchallenge import rows_by_frame

FIELDS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")
"""Reported as the mean over the 19 IoU thresholds (TrackEval's summary convention)."""

_Source = str | Path | np.ndarray


def _frames(gt: _Source, hyp: _Source, filtering: str, min_visibility: float,
            frames: range | None) -> list[tuple[np.ndarray, np.ndarray]]:
    g_rows, h_rows = load_rows(gt, True), load_rows(hyp, False)
    mode = filter_mode(g_rows, filtering)
    g_by, h_by = rows_by_frame(g_rows), rows_by_frame(h_rows)
    ids = sorted(set(g_by) | set(h_by)) if frames is None else list(frames)
    empty_g, empty_h = np.zeros((0, 9)), np.zeros((0, max(h_rows.shape[1], 6)))
    return [filter_frame(g_by.get(f, empty_g), h_by.get(f, empty_h), mode, min_visibility)
            for f in ids]


def require_trackeval():
    """``trackeval.metrics`` or a one-line ConfigError naming the package."""
    try:
        from trackeval import metrics
    except ImportError as exc:
        raise ConfigError("HOTA needs the package 'trackeval' (>= 1.3.0, MIT), not in fedfr's "
                          "extras yet: pip install 'trackeval>=1.3.0'") from exc
    return metrics


def _score(frames: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    metrics = require_trackeval()
    g_ids = np.unique(np.concatenate([g[:, 1] for g, _ in frames] + [np.zeros(0)]))
    h_ids = np.unique(np.concatenate([h[:, 1] for _, h in frames] + [np.zeros(0)]))
    data = {"num_gt_ids": len(g_ids), "num_tracker_ids": len(h_ids),
            "num_gt_dets": sum(len(g) for g, _ in frames),
            "num_tracker_dets": sum(len(h) for _, h in frames),
            "gt_ids": [np.searchsorted(g_ids, g[:, 1]).astype(int) for g, _ in frames],
            "tracker_ids": [np.searchsorted(h_ids, h[:, 1]).astype(int) for _, h in frames],
            "similarity_scores": [iou_tlwh(g[:, 2:6], h[:, 2:6]) for g, h in frames]}
    res = metrics.HOTA().eval_sequence(data)
    return {k.lower(): float(np.mean(res[k])) for k in FIELDS}


def evaluate_hota(gt: _Source, hyp: _Source, filtering: str = "auto",
                  min_visibility: float = 0.0, frames: range | None = None) -> dict[str, float]:
    """HOTA of one camera: ``gt`` a gt.txt path or (N, 9) rows, ``hyp`` a result file or rows
    -> {hota, deta, assa, detre, detpr, assre, asspr, loca} in [0, 1]."""
    return _score(_frames(gt, hyp, filtering, min_visibility, frames))


def evaluate_hota_multicamera(gt: Mapping[str, _Source], hyp: Mapping[str, _Source],
                              filtering: str = "auto", min_visibility: float = 0.0,
                              frames: Mapping[str, range] | None = None) -> dict[str, float]:
    """Multi-camera HOTA with global ids: the cameras' frames one after another (sorted
    camera order), so an identity split across cameras costs association accuracy."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for c in sorted(gt):
        out += _frames(gt[c], hyp[c], filtering, min_visibility, (frames or {}).get(c))
    return _score(out)


def hota_table(results: Mapping[str, Mapping[str, Path]], ground_truth: Mapping[str, Path],
               spans: Mapping[str, range], global_ground_truth: bool,
               min_visibility: float = 0.0) -> list[dict]:
    """HOTA rows of a ``fedfr track`` run (``TrackingResult.results`` / ``.spans``): per method
    one row per camera with ground truth and, with global ids, a ``multi-camera`` row."""
    rows = []
    for method, paths in results.items():
        cams = [c for c in paths if c in ground_truth]
        for c in cams:
            rows.append({"method": method, "camera": c, **evaluate_hota(
                ground_truth[c], paths[c], min_visibility=min_visibility,
                frames=spans.get(c))})
        if global_ground_truth and len(cams) > 1:
            rows.append({"method": method, "camera": "multi-camera",
                         **evaluate_hota_multicamera(
                             {c: ground_truth[c] for c in cams}, {c: paths[c] for c in cams},
                             min_visibility=min_visibility, frames=spans)})
    return rows


def write_hota_table(rows: list[dict], out: str | Path) -> Path:
    """``<out>/hota.md``: method, camera and the HOTA fields (4 decimals)."""
    keys = ["method", "camera", *(f.lower() for f in FIELDS)]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] if isinstance(r[k], str) else f"{r[k]:.4f}"
                                for k in keys) + " |" for r in rows]
    path = Path(out) / "hota.md"
    path.write_text("\n".join(lines) + "\n")
    return path
