"""Public-set features computed once per round and shared by every client on a machine.

All clients of a round embed the same public set D_g with the same global model Theta_g^t before
mining hard negatives, so on one machine the (N_g, d) features are computed once and reused:

- in a process (a Ray actor serving many clients, the in-process runner): a small in-memory
  cache holding the last ``MEMORY_ENTRIES`` results;
- across processes (several actors, several SuperNodes on one host): a file per key under
  ``<cache-dir>/public-features/``; the first process to need a key computes it while holding
  an exclusive ``flock`` on ``<key>.lock``, the others wait on the lock and load the file.

The key is (server round, the model's tensors, data key): ``data_key`` must name the
public images (the split digest, image size and data root in ``clients/app.py``), so a hit can
only return features of the same images under bit-identical weights. The features are exactly
what ``compute_public_features`` returns (the file holds the same bytes), so hard-negative sets
are identical to the uncached path (``tests/test_feature_cache.py``). Only public data is
cached: features of private images are never written.

``FEDFR_FEATURE_CACHE`` selects the mode: ``shared`` (default: memory + files), ``process``
(memory only), ``off`` (recompute for every client, the uncached path).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fedfr.checkpoint import atomic_save, safe_load
from fedfr.errors import ConfigError, DataFormatError
from fedfr.face.evaluation.features import embed
from fedfr.face.models.template import loaded_model

log = logging.getLogger(__name__)

MODES = ("shared", "process", "off")
MEMORY_ENTRIES = 2

#: round + data digest -> (a copy of the model's tensors, its features)
_memory: OrderedDict[str, tuple[dict[str, Tensor], Tensor]] = OrderedDict()
_lock = threading.Lock()
#: counters for tests and benchmarks: computed / memory hits / file hits in this process
stats = {"computed": 0, "memory": 0, "file": 0}


def cache_mode() -> str:
    """The mode named by ``FEDFR_FEATURE_CACHE`` (default ``shared``)."""
    mode = os.environ.get("FEDFR_FEATURE_CACHE", "shared").strip().lower() or "shared"
    if mode not in MODES:
        raise ConfigError(f"FEDFR_FEATURE_CACHE={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def model_digest(state: dict[str, Tensor]) -> str:
    """24-hex sha256 of a state_dict's names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def compute_public_features(cfg, backbone: dict[str, Tensor], public_images: Tensor) -> Tensor:
    """Features of D_g under ``backbone``: (N_g, d) float32, L2-normalised (the uncached path).

    Same computation as a client's own: the config's model in eval mode, ``embed`` with
    ``eval-batch-size``, no flip.
    """
    model = loaded_model(cfg, backbone)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return embed(model, public_images, batch_size=cfg.eval_batch_size)


def _remember(key: str, entry: tuple[dict[str, Tensor], Tensor]) -> None:
    _memory[key] = entry
    _memory.move_to_end(key)
    while len(_memory) > MEMORY_ENTRIES:
        _memory.popitem(last=False)


def _prune(folder: Path, server_round: int) -> None:
    """Remove files of rounds before ``server_round - 1`` (best effort)."""
    for p in folder.glob("r*-*"):
        m = re.match(r"^r(\d+)-", p.name)
        if m and int(m.group(1)) < server_round - 1:
            p.unlink(missing_ok=True)


def _from_file(path: Path, compute: Callable[[], Tensor], server_round: int) -> Tensor:
    lock_path = path.with_suffix(".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                try:
                    feats = safe_load(path)
                    if isinstance(feats, Tensor):
                        stats["file"] += 1
                        return feats
                except (DataFormatError, FileNotFoundError):
                    pass  # corrupt or pruned meanwhile: recompute
            feats = compute()
            stats["computed"] += 1
            atomic_save(feats, path)
            _prune(path.parent, server_round)
            return feats
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: Tensor):
    """The tensor's bytes as a flat integer numpy array (no copy when contiguous on CPU)."""
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(_INT_OF_SIZE.get(t.element_size(), torch.uint8)).numpy()


def _same_bits(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    """True when both state_dicts hold the same names, dtypes, shapes and bytes."""
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        if not np.array_equal(_bits(x), _bits(y)):
            return False
    return True


def cached_features(server_round: int, backbone: dict[str, Tensor], data_key: str,
                    compute: Callable[[], Tensor], folder: Path | None,
                    mode: str | None = None) -> Tensor:
    """``compute()`` once per (round, model, data key) per machine; see the module doc.

    A memory hit needs the same round and data key and a bit-for-bit equal model (compared
    directly, which is cheaper than hashing); a file is named by the round, the model's
    digest and the data key's digest. ``folder`` holds the shared files (mode ``shared``);
    None keeps the cache in memory only.
    """
    mode = mode or cache_mode()
    if mode == "off":
        stats["computed"] += 1
        return compute()
    data_digest = hashlib.sha256(data_key.encode()).hexdigest()[:16]
    mem_key = f"r{int(server_round):05d}-{data_digest}"
    with _lock:
        entry = _memory.get(mem_key)
        if entry is not None and _same_bits(entry[0], backbone):
            stats["memory"] += 1
            _memory.move_to_end(mem_key)
            return entry[1]
        if mode == "shared" and folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            name = f"r{int(server_round):05d}-{model_digest(backbone)}-{data_digest}.pt"
            feats = _from_file(folder / name, compute, server_round)
        else:
            feats = compute()
            stats["computed"] += 1
        _remember(mem_key, ({k: v.detach().clone() for k, v in backbone.items()}, feats))
        return feats


def shared_public_features(cfg, backbone: dict[str, Tensor], public_images: Tensor,
                           server_round: int, data_key: str = "",
                           mode: str | None = None) -> Tensor:
    """Public features for this round, computed at most once per machine (see module doc).

    ``data_key`` names the public images (default: the config's digest, which fixes the
    synthetic data and the split; add the data root when nodes read their own copies).
    """
    key = f"{cfg.digest()}-{cfg.image_size}-{cfg.eval_batch_size}-{data_key}"
    return cached_features(server_round, backbone, key,
                           lambda: compute_public_features(cfg, backbone, public_images),
                           cfg.cache_path / "public-features", mode)


def clear_memory() -> None:
    """Forget the in-process entries (tests, benchmarks)."""
    with _lock:
        _memory.clear()
        for k in stats:
            stats[k] = 0
