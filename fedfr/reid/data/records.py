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


@dataclass(frozen=True)
class FrameTruth:
    """Per-frame ground truth of a tracklet's defects (synthetic data; one entry per frame).

    ``true_pid``: who is really in the frame (an identity switch changes it mid-tracklet);
    ``box``: the person's placement in the crop, ``(dx, dy, scale)`` with dx, dy the centre's
    offset in units of the crop height and scale = person height / crop height; ``misaligned``:
    the box is off the person by design (a defect); ``intruder_pid``: a second person in the box
    (0 = none); ``truncated``: part of the person is outside the crop; ``occluded``: an occluder
    covers part of the person.
    """

    true_pid: tuple[int, ...]
    box: tuple[tuple[float, float, float], ...]
    misaligned: tuple[bool, ...]
    intruder_pid: tuple[int, ...]
    truncated: tuple[bool, ...]
    occluded: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.true_pid)

    @property
    def switch_frames(self) -> tuple[int, ...]:
        """Frame indices where the true identity differs from the previous frame's."""
        t = self.true_pid
        return tuple(i for i in range(1, len(t)) if t[i] != t[i - 1])


@dataclass(frozen=True)
class Tracklet:
    """One tracklet: its frame files in temporal order, identity and camera (0-based).

    ``ambi``: a second, ambiguous identity (MARS's cleaned test labels, thesis Sec. 2.4.3), None
    when there is none; ``orig_pid``: the pid before label cleaning (None when the labels are not
    the cleaned ones); ``truth``: per-frame defect ground truth (synthetic data), None otherwise.
    """

    paths: tuple[Path, ...]
    pid: int
    camid: int
    ambi: int | None = None
    orig_pid: int | None = None
    truth: FrameTruth | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class VideoSplit:
    """A video dataset's train / query / gallery tracklets (one split of it).

    ``test`` and ``query_index`` are set where a protocol needs the whole test set (MARS: every
    test tracklet in ``tracks_test_info.mat`` order, junk and distractors included, and the
    0-based rows of the queries in it; fedfr.reid.evaluation.mars builds each protocol's gallery
    from them); empty otherwise.
    """

    name: str
    root: Path
    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    meta: dict[str, Any] = field(default_factory=dict)
    test: list[Tracklet] = field(default_factory=list)
    query_index: list[int] = field(default_factory=list)

    @property
    def num_train_pids(self) -> int:
        return len({t.pid for t in self.train})

    def train_labels(self) -> tuple[list[int], dict[int, int]]:
        """Training labels 0..N-1 in order of sorted pid, and the pid -> label map."""
        mapping = {pid: i for i, pid in enumerate(sorted({t.pid for t in self.train}))}
        return [mapping[t.pid] for t in self.train], mapping

    def summary(self) -> dict[str, int]:
        """Counts of tracklets, frames, identities and cameras per part."""
        out: dict[str, int] = {}
        for part in ("train", "query", "gallery"):
            recs = getattr(self, part)
            out[f"{part}-tracklets"] = len(recs)
            out[f"{part}-frames"] = sum(len(t) for t in recs)
            out[f"{part}-ids"] = len({t.pid for t in recs})
            out[f"{part}-cams"] = len({t.camid for t in recs})
        return out
