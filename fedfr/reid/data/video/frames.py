"""Frame listing shared by the video readers: frames in numeric order (never glob or
lexicographic order: ``F10`` after ``F9``), and the dataset folder lookup."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from fedfr.errors import DataFormatError

LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_number(path: Path, regex: re.Pattern[str] | None = None) -> int:
    """The frame number in ``path``'s name: ``regex``'s first group, else the stem's last run of
    digits; a DataFormatError names the file when there is none."""
    m = (regex.search(path.name) if regex is not None else LAST_NUMBER.search(path.stem))
    if m is None:
        expected = f"a name matching {regex.pattern}" if regex is not None else \
            "a frame number in the name"
        raise DataFormatError(f"{path}: cannot read the frame number (expected {expected})")
    return int(m.group(1))


def sort_frames(paths: Iterable[Path], regex: re.Pattern[str] | None = None) -> list[Path]:
    """``paths`` ordered by frame number (ties, which a real release never has, by name)."""
    return sorted(paths, key=lambda p: (frame_number(p, regex), p.name))


def list_frames(folder: Path, suffixes: Sequence[str],
                regex: re.Pattern[str] | None = None) -> list[Path]:
    """The frame files directly in ``folder`` with one of ``suffixes``, in numeric frame order;
    an empty folder is a DataFormatError."""
    suf = {s.lower() for s in suffixes}
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suf]
    if not files:
        raise DataFormatError(f"{folder}: no frames (expected {'/'.join(sorted(suf))} files)")
    return sort_frames(files, regex)


def find_dataset_dir(candidates: Sequence[Path], marker: str, what: str) -> Path:
    """The first candidate folder holding ``marker`` (a relative path); the error lists where it
    looked."""
    for c in candidates:
        if (c / marker).exists():
            return c
    tried = ", ".join(str(c / marker) for c in candidates)
    raise DataFormatError(f"{what}: not found (expected {marker}; looked at {tried})")
