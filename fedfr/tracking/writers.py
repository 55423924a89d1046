"""Result files: MOTChallenge (one file per camera) and AI City (one file for all cameras).

MOTChallenge rows: ``frame,id,left,top,width,height,score,-1,-1,-1`` (frames and ids 1-based,
as ByteTrack writes them). AI City (2023+ people track) rows, space separated:
``camera_id obj_id frame_id xmin ymin width height xworld yworld`` (integers for the first
seven; world coordinates -1 when unknown). Both writers append as frames arrive (online) and
flush on ``close``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import numpy as np

from fedfr.tracking.bytetrack import TrackOutput


class _LineWriter:
    """A text file opened for writing (parents created), closed by ``close`` or ``with``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self.rows = 0

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MotWriter(_LineWriter):
    """Append one camera's tracks frame by frame to a MOTChallenge result file."""

    def write(self, frame: int, tracks: Iterable[TrackOutput],
              ids: dict[int, int] | None = None) -> None:
        """``ids`` optionally maps local track ids to the ids to write (global identities)."""
        for t in tracks:
            tid = t.track_id if ids is None else ids.get(t.track_id, t.track_id)
            x, y, w, h = (float(v) for v in t.tlwh)
            self._fh.write(f"{frame},{tid},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{t.score:.4f},"
                           "-1,-1,-1\n")
            self.rows += 1


class AicWriter(_LineWriter):
    """Append tracks of all cameras to one AI City Challenge submission file.

    ``camera_ids`` maps camera names to the integer ids the file uses; ``pixel_offset`` is
    subtracted from coordinates (1 turns MOTChallenge's 1-based pixels into AI City's 0-based).
    """

    def __init__(self, path: str | Path, camera_ids: dict[str, int], pixel_offset: float = 0.0):
        super().__init__(path)
        self.camera_ids = dict(camera_ids)
        self.pixel_offset = pixel_offset

    def write(self, camera: str, frame: int, tracks: Iterable[TrackOutput],
              ids: dict[int, int] | None = None,
              world: dict[int, tuple[float, float]] | None = None) -> None:
        cam = self.camera_ids[camera]
        for t in tracks:
            tid = t.track_id if ids is None else ids.get(t.track_id, t.track_id)
            x, y, w, h = np.rint(np.asarray(t.tlwh, float)
                                 - [self.pixel_offset, self.pixel_offset, 0, 0]).astype(int)
            wx, wy = (world or {}).get(t.track_id, (-1.0, -1.0))
            self._fh.write(f"{cam} {tid} {frame} {x} {y} {w} {h} {wx:.6f} {wy:.6f}\n")
            self.rows += 1


def read_aic(path: str | Path) -> np.ndarray:
    """An AI City file as (N, 9) float64: camera, id, frame, left, top, width, height, wx, wy."""
    from fedfr.tracking.motchallenge import read_rows

    return read_rows(path, 7)
