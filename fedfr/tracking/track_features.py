"""Per-track re-ID features from clips (dissertation §8.4, Fig. 8.10).

Each confirmed track collects its crops (resized to 256 x 128); every ``clip_len`` (T = 4)
collected crops form a clip, consecutive and non-overlapping, and the clip's feature updates the
track's **cumulative running average** ``f_k = f_{k-1} + (c_k - f_{k-1}) / k`` from the start of
the track (seed C.4's reading of the thesis; ``momentum`` switches to an exponential average
``f_k = (1 - m) f_{k-1} + m c_k``). The feature served to the gallery is the L2-normalised
average. Clips of all tracks of all cameras that became ready since the last ``flush`` go
through the embedder in one batched ``embed_clips`` call.

``sink(frame, tracks)`` plugs into the tracking worker's sinks (``frame.camera``,
``frame.image`` RGB uint8, ``tracks`` with ``track_id`` and ``tlwh``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from fedfr.errors import ConfigError
from fedfr.tracking.embedders import crop_boxes, l2_normalise

TrackKey = tuple[str, int]


@dataclass
class TrackFeature:
    """One track's state: pending crops (< clip_len), the running mean (D,) and clip count."""

    pending: list[np.ndarray] = field(default_factory=list)
    mean: np.ndarray | None = None
    clips: int = 0


class TrackFeatureBank:
    """Running-average clip features of every (camera, track id).

    ``embedder``: anything with ``embed_clips(uint8 (N, T, H, W, 3)) -> (N, D)``;
    ``clip_len``: T; ``crop_size``: (H, W) of the stored crops; ``flush_every``: clips queued
    before ``add`` flushes by itself (1 = immediately; the pipeline usually calls ``flush`` once
    per tick for all cameras)."""

    def __init__(self, embedder, clip_len: int = 4, crop_size: tuple[int, int] = (256, 128),
                 momentum: float | None = None, flush_every: int = 1_000_000):
        if clip_len < 1:
            raise ConfigError(f"clip_len {clip_len}: expected >= 1")
        if momentum is not None and not 0 < momentum <= 1:
            raise ConfigError(f"momentum {momentum}: expected in (0, 1]")
        self.embedder, self.clip_len, self.crop_size = embedder, clip_len, tuple(crop_size)
        self.momentum, self.flush_every = momentum, flush_every
        self.tracks: dict[TrackKey, TrackFeature] = {}
        self._ready: list[tuple[TrackKey, np.ndarray]] = []
        self.embedded_clips = 0
        self.calls = 0
        self._lock = threading.Lock()

    def add(self, camera: str, track_id: int, crop: np.ndarray) -> None:
        """Add one crop (uint8 (H, W, 3) at ``crop_size``) of a track."""
        key = (camera, int(track_id))
        with self._lock:
            st = self.tracks.setdefault(key, TrackFeature())
            st.pending.append(np.asarray(crop, np.uint8))
            if len(st.pending) == self.clip_len:
                self._ready.append((key, np.stack(st.pending)))
                st.pending = []
            flush = len(self._ready) >= self.flush_every
        if flush:
            self.flush()

    def add_frame(self, camera: str, image: np.ndarray, track_ids: Iterable[int],
                  tlwh: np.ndarray) -> None:
        """Crop the boxes ``tlwh`` (N, 4, 0-based pixels) of ``image`` and add them."""
        ids = [int(t) for t in track_ids]
        if not ids:
            return
        crops = crop_boxes(image, tlwh, self.crop_size)
        for t, c in zip(ids, crops, strict=True):
            self.add(camera, t, c)

    def sink(self, frame, tracks) -> None:
        """A tracking-worker sink: crops of the frame's confirmed tracks."""
        if frame.image is None or not tracks:
            return
        self.add_frame(frame.camera, frame.image, [t.track_id for t in tracks],
                       np.stack([np.asarray(t.tlwh, np.float64) for t in tracks]))

    def flush(self) -> int:
        """Embed every ready clip in one call and update the running averages; returns the
        number of clips embedded."""
        with self._lock:
            ready, self._ready = self._ready, []
        if not ready:
            return 0
        feats = np.asarray(self.embedder.embed_clips(np.stack([c for _, c in ready])),
                           np.float64)
        with self._lock:
            for (key, _), f in zip(ready, feats, strict=True):
                st = self.tracks.setdefault(key, TrackFeature())
                st.clips += 1
                if st.mean is None:
                    st.mean = f.copy()
                elif self.momentum is None:
                    st.mean += (f - st.mean) / st.clips
                else:
                    st.mean = (1 - self.momentum) * st.mean + self.momentum * f
            self.embedded_clips += len(ready)
            self.calls += 1
        return len(ready)

    def feature(self, camera: str, track_id: int) -> np.ndarray | None:
        """The track's L2-normalised running-average feature (D,), None before its first clip."""
        st = self.tracks.get((camera, int(track_id)))
        if st is None or st.mean is None:
            return None
        return l2_normalise(st.mean).astype(np.float32)

    def drop(self, camera: str, track_id: int) -> None:
        """Forget a track (after it went to the gallery)."""
        with self._lock:
            self.tracks.pop((camera, int(track_id)), None)
