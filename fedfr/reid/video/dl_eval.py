"""Re-ID before / after re-Detect and Link on a MARS-layout pair of folders.

Tracklet feature = the mean of its frames' IDE features (``fedfr.reid.video.ide`` checkpoint;
temporal average pooling, the thesis's no-attention baseline in its simplest form), scored with
``fedfr.reid.evaluation.mars`` under every applicable protocol (each named in the output).
``python -m fedfr.reid.video.dl_eval --before ORIG --after DL_OUT --reid ide.pt [--reid-after
ide_dl.pt]``: the first model (trained on the original training set, as the thesis's IDE) scores
both folders; an optional second one (trained on the DL output) scores the DL folder too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedfr.reid.data.records import Tracklet


def tracklet_features(model: Any, tracklets: Sequence[Tracklet], height: int, width: int,
                      batch: int = 256) -> np.ndarray:
    """(N, D) float32: the mean of each tracklet's frame features (f_bn, as extracted)."""
    from fedfr.reid.data.transforms import ReidTransformConfig, build_transform
    from fedfr.reid.training import extract_features
    from fedfr.reid.video.ide import frames_as_images

    images = frames_as_images(tracklets)
    tf = build_transform(ReidTransformConfig(height=height, width=width))
    feats, _, _ = extract_features(model, images, tf, batch_size=batch)
    out, s = [], 0
    for t in tracklets:
        out.append(feats[s:s + len(t)].mean(0))
        s += len(t)
    return torch.stack(out).numpy() if out else np.zeros((0, model.feature_dim), np.float32)


def evaluate_folder(root: str | Path, ckpt: str | Path, clean: bool = True) -> dict[str, Any]:
    """Protocol name -> summary (R1, mAP, ...) for the folder's test set with the checkpoint's
    IDE (Euclidean on L2-normalised tracklet features, CF-AAN's metric)."""
    from fedfr.reid.data.video.mars import read_mars
    from fedfr.reid.evaluation.mars import evaluate_mars_split
    from fedfr.reid.video.ide import load_reid_net

    model, h, w = load_reid_net(ckpt)
    split = read_mars(Path(root), clean=clean and _has_clean(Path(root)))
    feats = tracklet_features(model, split.test, h, w)
    res = evaluate_mars_split(feats, split, metric="euclidean", normalize=True)
    return {name: r.summary() for name, r in res.items()}


def _has_clean(root: Path) -> bool:
    return any((d / "info" / "clean_tracks_test_info.mat").is_file()
               for d in (root / "mars", root))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedfr.reid.video.dl_eval", description=__doc__)
    ap.add_argument("--before", required=True, type=Path)
    ap.add_argument("--after", required=True, type=Path)
    ap.add_argument("--reid", required=True, type=Path, help="IDE trained on --before's train")
    ap.add_argument("--reid-after", type=Path, default=None, help="IDE trained on --after's")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    a = ap.parse_args(argv)
    runs = {"before (IDE orig)": evaluate_folder(a.before, a.reid),
            "after (IDE orig)": evaluate_folder(a.after, a.reid)}
    if a.reid_after is not None:
        runs["after (IDE on DL)"] = evaluate_folder(a.after, a.reid_after)
    for run, res in runs.items():
        for proto, s in res.items():
            print(f"{run:20s} {proto:18s} R1 {100 * s['R1']:5.1f}  mAP {100 * s['mAP']:5.1f}")
    if a.out is not None:
        a.out.write_text(json.dumps(runs, indent=1, default=float))
    return 0


if __name__ == "__main__":
    from fedfr.errors import run_entry_point

    raise SystemExit(run_entry_point(main, "python -m fedfr.reid.video.dl_eval"))
