"""The one record type every re-ID reader returns, and a split of them.

Conventions follow the standard benchmarks (Market-1501's and torchreid's): ``pid`` is the
dataset's own identity number (0 = distractor where a dataset has them; junk images, pid -1, are
dropped by the readers), ``camid`` is 0-based. Training identities are relabelled to 0..N-1 only
when a model's classifier needs it (``ReidSplit.train_labels``), never in the records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReidImage:
    """One image: its file, identity and camera."""

    path: Path
    pid: int
    camid: int


@dataclass
class ReidSplit:
    """A dataset's train / query / gallery lists (one split of it, for multi-split sets)."""

    name: str
    root: Path
    train: list[ReidImage]
    query: list[ReidImage]
    gallery: list[ReidImage]
    meta: dict[str, Any] = field(default_factory=dict)  # split_id, protocol, notes

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def train_labels(self) -> tuple[list[int], dict[int, int]]:
        """Training labels 0..N-1 in order of first sorted pid, and the pid -> label map."""
        mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in self.train}))}
        return [mapping[r.pid] for r in self.train], mapping

    def summary(self) -> dict[str, int]:
        """Counts of images, identities and cameras per part (for reports and logs)."""
        out: dict[str, int] = {}
        for part in ("train", "query", "gallery"):
            recs = getattr(self, part)
            out[f"{part}-images"] = len(recs)
            out[f"{part}-ids"] = len({r.pid for r in recs})
            out[f"{part}-cams"] = len({r.camid for r in recs})
        return out
