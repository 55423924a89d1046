"""Tiny colour-coded tracklets for video re-ID tests: each identity wears two colours (upper /
lower body), each camera adds a strong colour cast, each frame adds noise; PNG frames of 16 x 8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fedfr.reid.data.records import Tracklet, VideoSplit


def _tracklet(root: Path, rng: np.random.Generator, colours: np.ndarray, tint: np.ndarray,
              pid: int, cam: int, n: int, name: str) -> Tracklet:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(n):
        img = np.empty((16, 8, 3), np.float64)
        img[:8] = colours[0]
        img[8:] = colours[1]
        img = img + tint + rng.normal(0, 25, img.shape)
        path = folder / f"{f:03d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return Tracklet(tuple(paths), pid, cam)


def colour_tracklets(root: str | Path, train_ids: int = 4, test_ids: int = 4, per_cam: int = 2,
                     cams: int = 2, frames: int = 5, seed: int = 0) -> VideoSplit:
    """A MARS-like VideoSplit: train pids 1..train_ids, test pids after them, ``per_cam``
    tracklets per (pid, camera); queries = the first tracklet of each (test pid, camera)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    palette = rng.uniform(70, 185, (train_ids + test_ids + 1, 2, 3))
    tints = rng.uniform(-70, 70, (cams, 1, 1, 3))  # a strong camera colour cast
    train, test, query_index = [], [], []
    for pid in range(1, train_ids + test_ids + 1):
        for cam in range(cams):
            for j in range(per_cam):
                t = _tracklet(root, rng, palette[pid], tints[cam], pid, cam, frames + j,
                              f"p{pid}c{cam}t{j}")
                if pid <= train_ids:
                    train.append(t)
                else:
                    if j == 0:
                        query_index.append(len(test))
                    test.append(t)
    query = [test[i] for i in query_index]
    gallery = [t for i, t in enumerate(test) if i not in set(query_index)]
    return VideoSplit("colour", root, train, query, gallery, test=test, query_index=query_index)
