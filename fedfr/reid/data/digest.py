"""Content digests of re-ID splits, for cache keys and manifests.

The rule (the same one fedfr's face caches follow): a file's fingerprint is its size, its
``st_mtime_ns`` and a sha256 of a sample of its bytes (the first, middle and last 64 KiB; the
whole file when it is at most 192 KiB, which covers every re-ID crop). ``full=True`` hashes every
byte instead and leaves the mtime out, so that a copied folder with the same bytes keeps its
digest; it reads everything and is the check to run when a cache is in doubt.

A split's digest covers its name, ``meta['split_id']`` and, for every record of every part in
order, the path relative to the split's root, the pid, the camid and the fingerprint. A file
replaced under the same name therefore changes the digest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fedfr.errors import DataFormatError
from fedfr.reid.data.records import ReidSplit

SAMPLE = 64 * 1024


def file_fingerprint(path: str | os.PathLike, full: bool = False) -> str:
    """``size:mtime_ns:sha256-prefix`` (sampled), or ``size:sha256`` of every byte with ``full``."""
    p = Path(path)
    try:
        st = p.stat()
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            if full or st.st_size <= 3 * SAMPLE:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            else:
                for off in (0, st.st_size // 2 - SAMPLE // 2, st.st_size - SAMPLE):
                    fh.seek(off)
                    h.update(fh.read(SAMPLE))
    except OSError as exc:
        raise DataFormatError(f"{p}: cannot read for its content digest ({exc})") from exc
    if full:
        return f"{st.st_size}:{h.hexdigest()}"
    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()[:32]}"


def split_digest(split: ReidSplit, full: bool = False) -> str:
    """sha256 hex digest of ``split``'s records and file contents (see the module docstring)."""
    h = hashlib.sha256()
    h.update(f"{split.name}|{split.meta.get('split_id', '')}|{'full' if full else 'fast'}\n"
             .encode())
    root = Path(split.root)
    cache: dict[Path, str] = {}
    for part in ("train", "query", "gallery"):
        h.update(f"[{part}]\n".encode())
        for rec in getattr(split, part):
            path = Path(rec.path)
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                rel = path.as_posix()
            if path not in cache:
                cache[path] = file_fingerprint(path, full=full)
            h.update(f"{rel}|{rec.pid}|{rec.camid}|{cache[path]}\n".encode())
    return h.hexdigest()
