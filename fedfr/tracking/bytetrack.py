"""BYTE, ByteTrack's single-camera tracker (Zhang et al., ECCV 2022), written for fedfr from
the published algorithm, with its published thresholds and track life cycle, a per-camera ID
allocator, and the thesis's appearance pre-association (§8.3.2) as an option.

Per frame (``ByteTracker.update``):

0. (option, thesis Fig. 8.8) high boxes first meet the track pool on cosine feature distance
   with a strict threshold ``appearance_thresh``;
1. high boxes (score > ``track_thresh``) meet tracked + lost tracks (all Kalman-predicted) on
   IoU distance fused with the score (``1 - IoU * score``), threshold ``match_thresh``; a matched
   lost track is re-found with its old ID;
2. low boxes (``low_thresh`` < score < ``track_thresh``) meet the still-unmatched *tracked*
   tracks on plain IoU distance, threshold ``second_match_thresh``; unmatched tracked tracks
   become lost; unmatched low boxes are dropped;
3. unconfirmed tracks (born on the previous frame) meet the remaining high boxes (fused IoU,
   ``unconfirmed_match_thresh``); unmatched ones are removed;
4. a remaining high box with score >= ``new_track_thresh`` starts a track (activated at once only
   on the first frame, otherwise confirmed by its next match);
5. tracks lost for more than ``int(frame_rate / 30 * track_buffer)`` frames are removed, and of a
   tracked/lost pair with IoU distance < ``duplicate_thresh`` the younger is dropped (with the
   appearance gate: unless their features say they are two people).

Assignment is the linear assignment with a cost limit (a pair can match only if its cost is
below the limit; unmatched rows/columns cost limit/2), solved exactly with scipy's
``linear_sum_assignment`` on the extended matrix.
"""

from __future__ import annotations

import enum
import itertools
import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from fedfr.errors import ConfigError
from fedfr.tracking.detection import Detections
from fedfr.tracking.kalman import KalmanFilterXYAH, tlwh_to_xyah, xyah_to_tlwh


@dataclass
class ByteTrackConfig:
    """BYTE's parameters (defaults: ByteTrack's tools/demo_track.py and byte_tracker.py).

    ``new_track_thresh`` None means ``track_thresh + 0.1``. ``fuse_score`` False is ByteTrack's
    ``--mot20`` mode. ``min_box_area`` / ``aspect_ratio_thresh`` filter only the *output* (as the
    demo does: kept if w*h > area and w/h <= ratio; 0 / None disable). ``appearance_thresh``:
    cosine-distance gate of the thesis's pre-association (None = off, IoU-only BYTE);
    ``appearance_on_lost`` lets it re-find lost tracks too; ``appearance_max_iou_distance``
    optionally requires spatial overlap as well (BoT-SORT's proximity gate, 0.5 there);
    ``feature_momentum``: per-track feature = momentum * old + (1 - momentum) * new,
    L2-normalised (BoT-SORT's 0.9). ``duplicates_by_appearance`` (only with the gate on): a
    tracked/lost pair that overlaps but whose features differ by more than
    ``appearance_thresh`` is two people (one hidden behind the other), not a duplicate, so the
    hidden one's lost track is kept for re-finding (a fedfr choice; BYTE drops it).
    """

    track_thresh: float = 0.5
    low_thresh: float = 0.1
    new_track_thresh: float | None = None
    match_thresh: float = 0.8
    second_match_thresh: float = 0.5
    unconfirmed_match_thresh: float = 0.7
    track_buffer: int = 30
    frame_rate: float = 30.0
    fuse_score: bool = True
    duplicate_thresh: float = 0.15
    min_box_area: float = 10.0
    aspect_ratio_thresh: float | None = 1.6
    appearance_thresh: float | None = None
    appearance_on_lost: bool = True
    appearance_max_iou_distance: float | None = None
    feature_momentum: float = 0.9
    duplicates_by_appearance: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_thresh <= self.track_thresh <= 1.0:
            raise ConfigError(
                f"tracker: need 0 <= low_thresh ({self.low_thresh}) <= track_thresh "
                f"({self.track_thresh}) <= 1"
            )
        if self.frame_rate <= 0 or self.track_buffer < 0:
            raise ConfigError("tracker: frame_rate must be > 0 and track_buffer >= 0")

    @property
    def det_thresh(self) -> float:
        return self.track_thresh + 0.1 if self.new_track_thresh is None else self.new_track_thresh

    @property
    def max_time_lost(self) -> int:
        """Frames a lost track is kept: ByteTrack's ``int(frame_rate / 30 * track_buffer)``."""
        return int(self.frame_rate / 30.0 * self.track_buffer)


class IdAllocator:
    """Track IDs 1, 2, 3, ... for one camera (thread-safe). ByteTrack's class-level counter is
    shared by all trackers of a process; fedfr gives each camera its own."""

    def __init__(self, start: int = 1):
        self._count = itertools.count(start)
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            return next(self._count)


class TrackState(enum.IntEnum):
    NEW = 0
    TRACKED = 1
    LOST = 2
    REMOVED = 3


_KF = KalmanFilterXYAH()


@dataclass(eq=False)
class Track:
    """One track: Kalman state, life-cycle state and bookkeeping (frames are tracker frames)."""

    tlwh0: np.ndarray
    score: float
    cls: int = 1
    feature: np.ndarray | None = None
    track_id: int = 0
    state: TrackState = TrackState.NEW
    is_activated: bool = False
    start_frame: int = 0
    frame_id: int = 0
    tracklet_len: int = 0
    mean: np.ndarray | None = None
    covariance: np.ndarray | None = None
    momentum: float = 0.9
    extra: dict = field(default_factory=dict)  # for plug-ins (re-ID clip buffers, global ids)

    @property
    def tlwh(self) -> np.ndarray:
        """Current box (left, top, width, height): the filtered state, or the birth box."""
        if self.mean is None:
            return self.tlwh0.copy()
        return xyah_to_tlwh(self.mean[:4])

    @property
    def tlbr(self) -> np.ndarray:
        b = self.tlwh
        b[2:] += b[:2]
        return b

    def _set_feature(self, feature: np.ndarray | None) -> None:
        if feature is None:
            return
        f = np.asarray(feature, np.float64)
        f = f / max(np.linalg.norm(f), 1e-12)
        if self.feature is None:
            self.feature = f
        else:
            s = self.momentum * self.feature + (1 - self.momentum) * f
            self.feature = s / max(np.linalg.norm(s), 1e-12)

    def activate(self, track_id: int, frame_id: int) -> None:
        self.track_id = track_id
        self.mean, self.covariance = _KF.initiate(tlwh_to_xyah(self.tlwh0))
        self.tracklet_len = 0
        self.state = TrackState.TRACKED
        self.is_activated = frame_id == 1
        self.frame_id = self.start_frame = frame_id

    def update(self, det: Track, frame_id: int, reactivate: bool = False) -> None:
        self.mean, self.covariance = _KF.update(self.mean, self.covariance,
                                                tlwh_to_xyah(det.tlwh0))
        self.tracklet_len = 0 if reactivate else self.tracklet_len + 1
        self.state = TrackState.TRACKED
        self.is_activated = True
        self.frame_id = frame_id
        self.score = det.score
        self.cls = det.cls
        self._set_feature(det.feature)


def _multi_predict(tracks: list[Track]) -> None:
    if not tracks:
        return
    mean = np.stack([t.mean for t in tracks]).copy()
    cov = np.stack([t.covariance for t in tracks])
    for i, t in enumerate(tracks):
        if t.state != TrackState.TRACKED:
            mean[i, 7] = 0.0  # ByteTrack zeroes the height velocity of non-tracked tracks
    mean, cov = _KF.multi_predict(mean, cov)
    for i, t in enumerate(tracks):
        t.mean, t.covariance = mean[i], cov[i]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between (N, 4) and (M, 4) ``x1, y1, x2, y2`` boxes -> (N, M) (continuous pixel
    coordinates; ByteTrack's cython_bbox adds 1 to widths and heights)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _iou_distance(tracks: list[Track], dets: list[Track]) -> np.ndarray:
    if not tracks or not dets:
        return np.zeros((len(tracks), len(dets)))
    return 1.0 - iou_matrix(np.stack([t.tlbr for t in tracks]),
                            np.stack([d.tlbr for d in dets]))


def _fuse_score(cost: np.ndarray, dets: list[Track]) -> np.ndarray:
    if cost.size == 0:
        return cost
    scores = np.array([d.score for d in dets])[None, :]
    return 1.0 - (1.0 - cost) * scores


def linear_assignment(cost: np.ndarray, thresh: float
                      ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Min-cost matching where pair (i, j) may match only if ``cost[i, j] < thresh`` and leaving
    a row or column unmatched costs ``thresh / 2`` (the extended-matrix form of LAPJV with
    ``cost_limit``). Returns matches, unmatched rows, unmatched columns."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    big = 1e6
    ext = np.full((n + m, m + n), big)
    ext[:n, :m] = np.where(cost < thresh, cost, big)
    ext[np.arange(n), m + np.arange(n)] = thresh / 2
    ext[n + np.arange(m), np.arange(m)] = thresh / 2
    ext[n:, m:] = 0.0
    rows, cols = linear_sum_assignment(ext)
    matches = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True)
               if r < n and c < m and cost[r, c] < thresh]
    mr = {r for r, _ in matches}
    mc = {c for _, c in matches}
    return matches, [i for i in range(n) if i not in mr], [j for j in range(m) if j not in mc]


@dataclass
class TrackOutput:
    """One confirmed track on one frame: ``tlwh`` (left, top, width, height, pixels)."""

    track_id: int
    tlwh: np.ndarray
    score: float
    cls: int
    track: Track

    @property
    def tlbr(self) -> np.ndarray:
        return np.concatenate([self.tlwh[:2], self.tlwh[:2] + self.tlwh[2:]])


class ByteTracker:
    """BYTE for one camera. ``update(detections, features=None)`` once per frame, in order;
    ``features`` (N, D), one row per detection, feeds the optional appearance gate."""

    def __init__(self, config: ByteTrackConfig | None = None,
                 id_allocator: IdAllocator | None = None):
        self.config = config or ByteTrackConfig()
        self.ids = id_allocator or IdAllocator()
        self.frame_id = 0
        self.tracked: list[Track] = []
        self.lost: list[Track] = []
        self.removed: list[Track] = []

    def _make(self, dets: Detections, idx: np.ndarray, features: np.ndarray | None
              ) -> list[Track]:
        out = []
        for i in idx:
            x1, y1, x2, y2 = dets.boxes[i].astype(np.float64)
            out.append(Track(np.array([x1, y1, x2 - x1, y2 - y1]), float(dets.scores[i]),
                             int(dets.classes[i]),
                             None if features is None else features[i],
                             momentum=self.config.feature_momentum))
        for t in out:  # raw feature for matching; smoothed once the track holds it
            if t.feature is not None:
                t.feature = np.asarray(t.feature, np.float64)
                t.feature = t.feature / max(np.linalg.norm(t.feature), 1e-12)
        return out

    def _appearance_stage(self, pool: list[Track], dets: list[Track]
                          ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
        cfg = self.config
        cand = [i for i, t in enumerate(pool) if t.feature is not None
                and (cfg.appearance_on_lost or t.state == TrackState.TRACKED)]
        dcand = [j for j, d in enumerate(dets) if d.feature is not None]
        if not cand or not dcand:
            return [], list(range(len(pool))), list(range(len(dets)))
        tf = np.stack([pool[i].feature for i in cand])
        df = np.stack([dets[j].feature for j in dcand])
        cost = 1.0 - tf @ df.T
        if cfg.appearance_max_iou_distance is not None:
            iou_cost = _iou_distance([pool[i] for i in cand], [dets[j] for j in dcand])
            cost = np.where(iou_cost > cfg.appearance_max_iou_distance, 1.0, cost)
        pairs, _, _ = linear_assignment(cost, cfg.appearance_thresh)
        matches = [(cand[a], dcand[b]) for a, b in pairs]
        mt = {a for a, _ in matches}
        md = {b for _, b in matches}
        return (matches, [i for i in range(len(pool)) if i not in mt],
                [j for j in range(len(dets)) if j not in md])

    def update(self, detections: Detections, features: np.ndarray | None = None
               ) -> list[TrackOutput]:
        """Advance one frame; returns the activated tracks (output-filtered)."""
        cfg = self.config
        self.frame_id += 1
        fid = self.frame_id
        if features is not None and len(features) != len(detections):
            raise ValueError(f"{len(features)} feature rows for {len(detections)} detections")
        scores = detections.scores
        high_idx = np.flatnonzero(scores > cfg.track_thresh)
        low_idx = np.flatnonzero((scores > cfg.low_thresh) & (scores < cfg.track_thresh))
        high = self._make(detections, high_idx, features)
        low = self._make(detections, low_idx, features)

        unconfirmed = [t for t in self.tracked if not t.is_activated]
        confirmed = [t for t in self.tracked if t.is_activated]
        activated: list[Track] = []
        refound: list[Track] = []
        newly_lost: list[Track] = []
        newly_removed: list[Track] = []

        def apply(track: Track, det: Track) -> None:
            if track.state == TrackState.TRACKED:
                track.update(det, fid)
                activated.append(track)
            else:
                track.update(det, fid, reactivate=True)
                refound.append(track)

        # step 1: high boxes vs tracked + lost (all predicted)
        pool = _join(confirmed, self.lost)
        _multi_predict(pool)
        rest_pool, rest_high = list(range(len(pool))), list(range(len(high)))
        if cfg.appearance_thresh is not None:
            matches, rest_pool, rest_high = self._appearance_stage(pool, high)
            for it, idet in matches:
                apply(pool[it], high[idet])
        sub_pool = [pool[i] for i in rest_pool]
        sub_high = [high[j] for j in rest_high]
        cost = _iou_distance(sub_pool, sub_high)
        if cfg.fuse_score:
            cost = _fuse_score(cost, sub_high)
        matches, u_track, u_det = linear_assignment(cost, cfg.match_thresh)
        for it, idet in matches:
            apply(sub_pool[it], sub_high[idet])
        remaining_high = [sub_high[j] for j in u_det]

        # step 2: low boxes vs the remaining tracked tracks
        r_tracked = [sub_pool[i] for i in u_track if sub_pool[i].state == TrackState.TRACKED]
        cost = _iou_distance(r_tracked, low)
        matches, u_track2, _ = linear_assignment(cost, cfg.second_match_thresh)
        for it, idet in matches:
            apply(r_tracked[it], low[idet])
        for it in u_track2:
            t = r_tracked[it]
            if t.state != TrackState.LOST:
                t.state = TrackState.LOST
                newly_lost.append(t)

        # step 3: unconfirmed tracks vs remaining high boxes
        cost = _iou_distance(unconfirmed, remaining_high)
        if cfg.fuse_score:
            cost = _fuse_score(cost, remaining_high)
        matches, u_unconf, u_det = linear_assignment(cost, cfg.unconfirmed_match_thresh)
        for it, idet in matches:
            unconfirmed[it].update(remaining_high[idet], fid)
            activated.append(unconfirmed[it])
        for it in u_unconf:
            unconfirmed[it].state = TrackState.REMOVED
            newly_removed.append(unconfirmed[it])

        # step 4: births
        for idet in u_det:
            det = remaining_high[idet]
            if det.score < cfg.det_thresh:
                continue
            det.activate(self.ids.next(), fid)  # its feature (if any) seeds the track's
            activated.append(det)

        # step 5: expiry and bookkeeping
        for t in self.lost:
            if fid - t.frame_id > cfg.max_time_lost:
                t.state = TrackState.REMOVED
                newly_removed.append(t)
        self.tracked = [t for t in self.tracked if t.state == TrackState.TRACKED]
        self.tracked = _join(self.tracked, activated)
        self.tracked = _join(self.tracked, refound)
        self.lost = [t for t in self.lost if t not in self.tracked]
        self.lost.extend(newly_lost)
        self.lost = [t for t in self.lost if t not in newly_removed]
        self.removed.extend(newly_removed)
        self.tracked, self.lost = self._remove_duplicates(self.tracked, self.lost)
        return [self._output(t) for t in self.tracked if t.is_activated and self._keep(t)]

    def _keep(self, t: Track) -> bool:
        w, h = t.tlwh[2:]
        if self.config.min_box_area and w * h <= self.config.min_box_area:
            return False
        ratio = self.config.aspect_ratio_thresh
        return ratio is None or w / max(h, 1e-12) <= ratio

    @staticmethod
    def _output(t: Track) -> TrackOutput:
        return TrackOutput(t.track_id, t.tlwh, t.score, t.cls, t)

    def _remove_duplicates(self, tracked: list[Track], lost: list[Track]
                           ) -> tuple[list[Track], list[Track]]:
        dist = _iou_distance(tracked, lost)
        drop_t, drop_l = set(), set()
        cfg = self.config
        for p, q in zip(*np.nonzero(dist < cfg.duplicate_thresh), strict=True):
            fp, fq = tracked[p].feature, lost[q].feature
            if (cfg.appearance_thresh is not None and cfg.duplicates_by_appearance
                    and fp is not None and fq is not None
                    and 1.0 - float(fp @ fq) > cfg.appearance_thresh):
                continue
            age_p = tracked[p].frame_id - tracked[p].start_frame
            age_q = lost[q].frame_id - lost[q].start_frame
            if age_p > age_q:
                drop_l.add(q)
            else:
                drop_t.add(p)
        return ([t for i, t in enumerate(tracked) if i not in drop_t],
                [t for i, t in enumerate(lost) if i not in drop_l])


def _join(a: list[Track], b: list[Track]) -> list[Track]:
    seen = {t.track_id for t in a}
    out = list(a)
    for t in b:
        if t.track_id not in seen:
            seen.add(t.track_id)
            out.append(t)
    return out
