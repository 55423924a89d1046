"""On-disk cache of extracted features, so one model is never embedded twice for the same set.

An entry is keyed by three digests: the model's (every parameter and buffer: names, dtypes,
shapes, bytes), the data set's (content fingerprints of a .bin file, or of IJB-C's meta files
and every crop: ``fedfr.digest``) and the transform settings (image size, flip, alignment...).
Entries are ``<key>.npy`` plus a ``<key>.json`` describing what they hold; both are written
atomically (temporary + rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedfr.digest import files_fingerprint

log = logging.getLogger(__name__)


def model_digest(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """16-hex sha256 over a model's state_dict (sorted names, dtype, shape and raw bytes)."""
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    h = hashlib.sha256()
    for name in sorted(sd):
        t = sd[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def files_digest(paths: Iterable[Path], mode: str = "local") -> str:
    """16-hex digest of the named files' names and content fingerprints (in the given order):
    size + mtime + sampled bytes, or every byte under ``--verify`` (``fedfr.digest``); a
    missing file raises DataFormatError naming it."""
    return files_fingerprint(paths, mode)


def settings_digest(settings: Mapping[str, Any]) -> str:
    """16-hex sha256 of a JSON-able settings dict (key order does not matter)."""
    text = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Features (any numpy array) cached under ``folder``; ``folder=None`` disables caching."""

    def __init__(self, folder: Path | str | None) -> None:
        self.folder = Path(folder) if folder else None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model: str, dataset: str, settings: Mapping[str, Any]) -> str:
        """Entry name from the model digest, the data set digest and the settings."""
        return f"{model}-{dataset}-{settings_digest(settings)}"

    def path(self, key: str) -> Path | None:
        return self.folder / f"{key}.npy" if self.folder else None

    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray],
                       describe: Mapping[str, Any] | None = None) -> np.ndarray:
        """The cached array for ``key`` or, on a miss (or an unreadable entry), ``compute()``
        stored under it. ``describe`` goes to the sidecar JSON for humans."""
        path = self.path(key)
        if path is not None and path.exists():
            try:
                arr = np.load(path, allow_pickle=False)
                self.hits += 1
                log.info("features from cache %s %s", path, arr.shape)
                return arr
            except (OSError, ValueError) as e:
                log.warning("cache entry %s unreadable (%s); recomputing", path, e)
        self.misses += 1
        arr = np.asarray(compute())
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
            os.close(fd)
            try:
                np.save(tmp, arr, allow_pickle=False)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            meta = {"key": key, "shape": list(arr.shape), "dtype": str(arr.dtype),
                    **(dict(describe) if describe else {})}
            path.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
        return arr
