"""Readers of the MOTChallenge text layout: ``seqinfo.ini``, ``det/det.txt``, ``gt/gt.txt`` and
tracker result files.

Rows are comma separated, frames and ids 1-based, boxes ``left, top, width, height`` in pixels.
``det.txt`` rows: ``frame, -1, left, top, width, height, score[, x, y, z]``; MOT17 ``gt.txt``
rows: ``frame, id, left, top, width, height, consider flag, class, visibility``; MOT15 / result
rows: ``frame, id, left, top, width, height, conf, x, y, z``.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedfr.errors import DataFormatError

# MOT17 ground-truth classes (the MOT16 paper's label list)
PEDESTRIAN = 1
PERSON_ON_VEHICLE = 2
STATIC_PERSON = 7
DISTRACTOR = 8
REFLECTION = 12
DISTRACTOR_CLASSES = (PERSON_ON_VEHICLE, STATIC_PERSON, DISTRACTOR, REFLECTION)


@dataclass(frozen=True)
class SeqInfo:
    """One sequence's ``seqinfo.ini`` ([Sequence] section)."""

    root: Path
    name: str
    im_dir: str
    frame_rate: float
    seq_length: int
    width: int
    height: int
    im_ext: str

    @property
    def image_dir(self) -> Path:
        return self.root / self.im_dir


def read_seqinfo(seq_dir: str | Path) -> SeqInfo:
    """Parse ``<seq_dir>/seqinfo.ini``; a missing file or key raises DataFormatError naming it."""
    root = Path(seq_dir)
    path = root / "seqinfo.ini"
    if not path.is_file():
        raise DataFormatError(f"{path}: no seqinfo.ini (expected a MOTChallenge sequence folder)")
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
        sec = parser["Sequence"]
        return SeqInfo(
            root=root,
            name=sec.get("name", root.name),
            im_dir=sec.get("imDir", "img1"),
            frame_rate=float(sec["frameRate"]),
            seq_length=int(sec["seqLength"]),
            width=int(sec["imWidth"]),
            height=int(sec["imHeight"]),
            im_ext=sec.get("imExt", ".jpg"),
        )
    except (KeyError, ValueError, configparser.Error) as exc:
        raise DataFormatError(
            f"{path}: bad [Sequence] section ({exc!s}); expected frameRate, seqLength, "
            "imWidth, imHeight"
        ) from exc


def read_rows(path: str | Path, min_cols: int) -> np.ndarray:
    """A MOTChallenge text file as a float64 array (N, K) with K >= ``min_cols``.

    Empty files give (0, min_cols). A short or non-numeric row raises DataFormatError naming the
    file and line.
    """
    path = Path(path)
    rows: list[list[float]] = []
    width = None
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            parts = text.replace(" ", "").split(",") if "," in text else text.split()
            try:
                values = [float(p) for p in parts]
            except ValueError as exc:
                raise DataFormatError(
                    f"{path}:{lineno}: non-numeric field in {text!r}"
                ) from exc
            if len(values) < min_cols:
                raise DataFormatError(
                    f"{path}:{lineno}: {len(values)} fields, expected at least {min_cols}"
                )
            width = len(values) if width is None else min(width, len(values))
            rows.append(values)
    if not rows:
        return np.zeros((0, min_cols))
    return np.array([r[:width] for r in rows], dtype=np.float64)


def rows_by_frame(rows: np.ndarray) -> dict[int, np.ndarray]:
    """Split rows (column 0 = frame) into {frame: rows of that frame}, frames ascending."""
    if len(rows) == 0:
        return {}
    order = np.argsort(rows[:, 0], kind="stable")
    rows = rows[order]
    frames, starts = np.unique(rows[:, 0].astype(np.int64), return_index=True)
    ends = list(starts[1:]) + [len(rows)]
    return {int(f): rows[s:e] for f, s, e in zip(frames, starts, ends, strict=True)}


def read_ground_truth(path: str | Path) -> np.ndarray:
    """Ground truth as (N, 9): frame, id, left, top, width, height, flag, class, visibility.

    MOT15-style files (10 columns, class/visibility -1) give class -1 and visibility 1.
    """
    rows = read_rows(path, 6)
    out = np.full((len(rows), 9), -1.0)
    out[:, :6] = rows[:, :6]
    out[:, 6] = rows[:, 6] if rows.shape[1] > 6 else 1.0
    if rows.shape[1] == 9:  # MOT16/17/20 gt
        out[:, 7:9] = rows[:, 7:9]
    else:
        out[:, 8] = 1.0
    return out
