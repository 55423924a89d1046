"""Tiny pedestrian-like images on disk for the re-ID model / training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fedfr.reid.data.records import ReidImage


def write_identity_images(root: Path, num_ids: int = 8, per_id: int = 4, height: int = 64,
                          width: int = 32, seed: int = 0) -> list[ReidImage]:
    """num_ids identities x per_id PNG images: each identity has its own upper / lower colours
    (a learnable cue) plus per-image noise and a random vertical shift; cameras alternate 0/1.
    Files are written as Market-style names ``{pid:04d}_c{cam+1}s1_{i:06d}_00.png``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for pid in range(1, num_ids + 1):
        upper, lower = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        for i in range(per_id):
            img = np.empty((height, width, 3), dtype=np.float64)
            cut = height // 2 + int(rng.integers(-4, 5))
            img[:cut], img[cut:] = upper, lower
            img += rng.normal(0, 20, img.shape)
            cam = i % 2
            path = root / f"{pid:04d}_c{cam + 1}s1_{i:06d}_00.png"
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
            records.append(ReidImage(path, pid, cam))
    return records
