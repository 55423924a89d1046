"""Content digests of files, so that every cache is keyed by the bytes it was computed from.

The rule (docs/evaluation.md, "Cache keys"):

- ``local`` fingerprint of a file (evaluation sets, feature caches on this machine): size,
  modification time in ns and a sampled hash (the whole file up to ``SAMPLE_WHOLE`` bytes, else
  ``SAMPLE_BLOCKS`` evenly spaced blocks of ``BLOCK`` bytes, first and last included). A file
  replaced under the same name changes its mtime (and nearly always its size or sampled bytes).
- ``portable`` fingerprint (data sources, whose digest is shared by copies on other nodes, so
  the mtime is left out): size and the same sampled hash.
- ``verify``: size and the hash of every byte (``fedfr evaluate --verify``,
  ``FEDFR_VERIFY_DIGESTS=1``); slow on large sets, exact.

A file that does not exist raises ``DataFormatError`` naming it (checked before any hashing).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from fedfr.errors import DataFormatError

BLOCK = 1 << 16  # 64 KiB
SAMPLE_WHOLE = 1 << 20  # files up to 1 MiB (every face crop) are hashed whole
SAMPLE_BLOCKS = 8
MODES = ("local", "portable", "verify")


def verify_default() -> bool:
    """True when ``FEDFR_VERIFY_DIGESTS`` asks every digest to read whole files."""
    return os.environ.get("FEDFR_VERIFY_DIGESTS", "").strip().lower() in ("1", "true", "yes")


def require_file(path: Path | str, what: str = "file") -> Path:
    """``path`` as a Path; DataFormatError naming it if it is not an existing file."""
    p = Path(path)
    if not p.is_file():
        state = "is not a file" if p.exists() else "does not exist"
        raise DataFormatError(f"{p}: {what} {state}")
    return p


def _hash_blocks(f, size: int, h, whole: bool) -> None:
    if whole or size <= SAMPLE_WHOLE:
        while block := f.read(1 << 22):
            h.update(block)
        return
    last = size - BLOCK
    for k in range(SAMPLE_BLOCKS):
        f.seek(last * k // (SAMPLE_BLOCKS - 1))
        h.update(f.read(BLOCK))


def file_fingerprint(path: Path | str, mode: str = "local", what: str = "file") -> bytes:
    """32-byte sha256 fingerprint of one file under ``mode`` (see the module doc);
    ``FEDFR_VERIFY_DIGESTS=1`` turns every mode into ``verify``."""
    if mode not in MODES:
        raise ValueError(f"file_fingerprint: mode {mode!r}, expected one of {MODES}")
    if verify_default():
        mode = "verify"
    p = require_file(path, what)
    try:
        st = p.stat()
        h = hashlib.sha256(f"{st.st_size}|".encode())
        if mode == "local":
            h.update(f"{st.st_mtime_ns}|".encode())
        with open(p, "rb") as f:
            _hash_blocks(f, st.st_size, h, whole=mode == "verify")
    except OSError as exc:
        raise DataFormatError(f"{p}: cannot read {what} ({exc.strerror or exc})") from exc
    return h.digest()


def files_fingerprint(paths: Iterable[Path | str], mode: str = "local", root: Path | None = None,
                      what: str = "file") -> str:
    """16-hex digest of several files: each one's name (relative to ``root``, else its base
    name) and ``file_fingerprint``, in the given order."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        name = p.relative_to(root).as_posix() if root is not None else p.name
        h.update(name.encode() + b"\0")
        h.update(file_fingerprint(p, mode, what))
    return h.hexdigest()[:16]
