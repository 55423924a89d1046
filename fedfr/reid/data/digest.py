"""Content digests of re-ID splits, for cache keys and manifests.

Files are fingerprinted by ``fedfr.digest`` (the one rule for every cache, docs/evaluation.md
"Cache keys"). A split's digest covers its name, ``meta['split_id']`` and, for every record of
every part in order, the path relative to the split's root, the pid, the camid and the file's
fingerprint, so a file replaced under the same name changes the digest.

``mode``: ``portable`` (default; size + sampled hash, no mtime: a copy of the data on another
node keeps the digest its manifest records; re-ID crops are small enough to be hashed whole),
``local`` (adds the mtime) or ``verify`` (every byte; ``full=True``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fedfr.digest import file_fingerprint
from fedfr.reid.data.records import ReidSplit


def split_digest(split: ReidSplit, full: bool = False, mode: str = "portable") -> str:
    """sha256 hex digest of ``split``'s records and file contents (see the module docstring)."""
    mode = "verify" if full else mode
    h = hashlib.sha256()
    h.update(f"{split.name}|{split.meta.get('split_id', '')}|{mode}\n".encode())
    root = Path(split.root)
    cache: dict[Path, bytes] = {}
    for part in ("train", "query", "gallery"):
        h.update(f"[{part}]\n".encode())
        for rec in getattr(split, part):
            path = Path(rec.path)
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                rel = path.as_posix()
            if path not in cache:
                cache[path] = file_fingerprint(path, mode, f"{split.name} image")
            h.update(f"{rel}|{rec.pid}|{rec.camid}|".encode() + cache[path] + b"\n")
    return h.hexdigest()
