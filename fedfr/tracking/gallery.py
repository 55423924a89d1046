"""The cross-camera gallery (the thesis's "shared information memory", §8.4) and global
identities.

* A track that has **exited** its camera (its tracker dropped it) enters the gallery with its
  feature (the running-average clip feature), its camera, its local id, its global id and its
  exit time.
* Every ``query_interval`` frames (the thesis: 40) the tracks in view that have no cross-camera
  match yet query the gallery together. Cost = cosine distance (1 - cos) between L2-normalised
  features; pairs from the **same camera** are forbidden, so are pairs the camera topology
  rejects; pairs at distance above ``threshold`` are not matched. The assignment is one-to-one
  (Hungarian, ``scipy.optimize.linear_sum_assignment``) over the whole query batch. A matched
  query takes the entry's global id; the entry leaves the gallery (one person enters one place).
  The match is recorded on both sides (``MatchEvent``: C1-ID1 <-> C2-ID11).
* Entries expire ``ttl`` seconds after their exit.
* Topology (optional; JSON): ``{"cameras": [...], "links": [{"from": "c001", "to": "c002",
  "dtmin": 2.0, "dtmax": 15.0}, ...], "symmetric": false}``. Only listed camera pairs connect;
  the transit time ``query track's first-seen time - entry's exit time`` (seconds; negative when
  views overlap) must lie in [dtmin, dtmax]. ``symmetric: true`` adds every link's reverse.

The thesis leaves the threshold, the metric, eviction and one-to-one-ness open (seed C.4); these
choices are options here. Times are seconds (a camera's frame index / frame rate in synchronous
runs, capture timestamps live). Thread-safe: one lock around every public method.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from fedfr.errors import ConfigError, DataFormatError

TrackKey = tuple[str, int]
"""(camera, camera-local track id)."""

_FORBIDDEN = 1e6


@dataclass(frozen=True)
class Link:
    """Camera ``src`` -> ``dst`` with a transit window [dtmin, dtmax] in seconds."""

    src: str
    dst: str
    dtmin: float = float("-inf")
    dtmax: float = float("inf")


class Topology:
    """Which cameras connect and their transit-time windows."""

    def __init__(self, links: Sequence[Link], cameras: Sequence[str] | None = None):
        self.links: dict[tuple[str, str], Link] = {}
        for link in links:
            if link.dtmin > link.dtmax:
                raise ConfigError(f"topology link {link.src}->{link.dst}: dtmin {link.dtmin} > "
                                  f"dtmax {link.dtmax}")
            self.links[(link.src, link.dst)] = link
        self.cameras = list(cameras) if cameras is not None else sorted(
            {c for k in self.links for c in k})

    def allows(self, src: str, dst: str, transit_s: float) -> bool:
        """Can a person who left ``src`` be the one first seen in ``dst`` ``transit_s`` later?"""
        link = self.links.get((src, dst))
        return link is not None and link.dtmin <= transit_s <= link.dtmax

    @classmethod
    def from_dict(cls, doc: dict, where: str = "topology") -> Topology:
        if not isinstance(doc, dict) or not isinstance(doc.get("links"), list):
            raise DataFormatError(f"{where}: expected an object with a 'links' list")
        links = []
        for i, item in enumerate(doc["links"]):
            try:
                link = Link(str(item["from"]), str(item["to"]),
                            float(item.get("dtmin", float("-inf"))),
                            float(item.get("dtmax", float("inf"))))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataFormatError(f"{where}: link {i} ({item!r}) needs 'from', 'to' and "
                                      "numeric 'dtmin' / 'dtmax'") from exc
            links.append(link)
            if doc.get("symmetric", False):
                links.append(Link(link.dst, link.src, link.dtmin, link.dtmax))
        cams = doc.get("cameras")
        topo = cls(links, [str(c) for c in cams] if cams is not None else None)
        unknown = {c for k in topo.links for c in k} - set(topo.cameras)
        if unknown:
            raise DataFormatError(f"{where}: links name cameras {sorted(unknown)} missing from "
                                  "'cameras'")
        return topo

    @classmethod
    def load(cls, path: str | Path) -> Topology:
        """Read a topology JSON file; a bad file raises DataFormatError naming it."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFormatError(f"{path}: not a readable topology JSON file ({exc})") from exc
        return cls.from_dict(doc, str(path))


@dataclass
class GalleryEntry:
    """An exited track: ``feature`` (D,) L2-normalised, ``exit_time`` and ``first_time`` in s."""

    camera: str
    track_id: int
    global_id: int
    feature: np.ndarray
    exit_time: float
    first_time: float


@dataclass(frozen=True)
class Query:
    """A track in view asking for its earlier self: ``feature`` (D,), ``first_time`` (s) when
    its camera first saw it."""

    camera: str
    track_id: int
    feature: np.ndarray
    first_time: float


@dataclass(frozen=True)
class MatchEvent:
    """A cross-camera link recorded on both sides: (``entry_camera``, ``entry_track``) left
    earlier; (``camera``, ``track_id``) now carries ``global_id``; ``distance`` = 1 - cos."""

    time: float
    global_id: int
    entry_camera: str
    entry_track: int
    camera: str
    track_id: int
    distance: float


@dataclass
class GalleryConfig:
    """``threshold``: the largest cosine distance (1 - cos) that matches; ``ttl``: seconds an
    exited track stays; ``query_interval``: frames between queries (the thesis: 40);
    ``consume``: a matched entry leaves the gallery; ``exits``: unmatched tracks query the
    exited tracks (the thesis; off leaves live matching alone).

    ``live`` (off by default: the thesis matches exited tracks only) also matches tracks in
    view across cameras with overlapping views (:meth:`MultiCameraMatcher.match_live`):
    ``live_threshold`` (default ``threshold``), ``live_interval`` frames between live queries
    (default ``query_interval``), ``live_window`` seconds since a track of another camera was
    last seen for it to count as in view."""

    threshold: float = 0.3
    ttl: float = 120.0
    query_interval: int = 40
    consume: bool = True
    exits: bool = True
    live: bool = False
    live_threshold: float | None = None
    live_interval: int | None = None
    live_window: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 2.0:
            raise ConfigError(f"gallery threshold {self.threshold}: expected a cosine distance "
                              "in [0, 2]")
        if self.ttl <= 0 or self.query_interval < 1:
            raise ConfigError(f"gallery ttl {self.ttl} / query_interval {self.query_interval}: "
                              "expected ttl > 0 and an interval >= 1 frame")
        if self.live_threshold is not None and not 0.0 <= self.live_threshold <= 2.0:
            raise ConfigError(f"gallery live_threshold {self.live_threshold}: expected a "
                              "cosine distance in [0, 2]")
        if (self.live_interval is not None and self.live_interval < 1) or self.live_window < 0:
            raise ConfigError(f"gallery live_interval {self.live_interval} / live_window "
                              f"{self.live_window}: expected an interval >= 1 frame and a "
                              "window >= 0 s")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(-1)
    n = np.linalg.norm(x)
    if not np.isfinite(n) or n == 0:
        raise ValueError("gallery feature: zero or non-finite vector")
    return x / n


class GlobalIdentities:
    """Global ids for (camera, local id): a fresh id at first sight, the gallery's id after a
    cross-camera match. Ids start at 1."""

    def __init__(self) -> None:
        self._next = 1
        self._ids: dict[TrackKey, int] = {}

    def get(self, camera: str, track_id: int) -> int:
        key = (camera, int(track_id))
        if key not in self._ids:
            self._ids[key] = self._next
            self._next += 1
        return self._ids[key]

    def assign(self, camera: str, track_id: int, global_id: int) -> None:
        self._ids[(camera, int(track_id))] = int(global_id)

    def relabel(self, keys: Sequence[TrackKey], global_id: int) -> None:
        """Give every (camera, local id) of ``keys`` the id ``global_id``."""
        for camera, track_id in keys:
            self.assign(camera, track_id, global_id)

    def mapping(self, camera: str) -> dict[int, int]:
        """{local id: global id} of one camera (for the writers' ``ids`` argument)."""
        return {t: g for (c, t), g in self._ids.items() if c == camera}


class CrossCameraGallery:
    """Exited tracks of all cameras, queried by tracks in view (see the module docstring)."""

    def __init__(self, config: GalleryConfig | None = None, topology: Topology | None = None,
                 identities: GlobalIdentities | None = None):
        self.config = config or GalleryConfig()
        self.topology = topology
        self.ids = identities or GlobalIdentities()
        self.entries: list[GalleryEntry] = []
        self.events: list[MatchEvent] = []
        self.expired = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def add_exit(self, camera: str, track_id: int, feature: np.ndarray, exit_time: float,
                 first_time: float | None = None) -> GalleryEntry:
        """Put an exited track in the gallery under its current global id."""
        with self._lock:
            entry = GalleryEntry(camera, int(track_id), self.ids.get(camera, track_id),
                                 _unit(feature), float(exit_time),
                                 float(exit_time if first_time is None else first_time))
            self.entries.append(entry)
            return entry

    def expire(self, now: float) -> int:
        """Drop entries that exited more than ``ttl`` seconds before ``now``; returns how many."""
        with self._lock:
            return self._expire(now)

    def _expire(self, now: float) -> int:
        keep = [e for e in self.entries if now - e.exit_time <= self.config.ttl]
        n = len(self.entries) - len(keep)
        self.entries = keep
        self.expired += n
        return n

    def cost_matrix(self, queries: Sequence[Query]) -> np.ndarray:
        """(Q, E) cosine distances, ``_FORBIDDEN`` where camera or topology rule a pair out."""
        with self._lock:
            return self._cost(queries)

    def _cost(self, queries: Sequence[Query]) -> np.ndarray:
        if not queries or not self.entries:
            return np.zeros((len(queries), len(self.entries)))
        q = np.stack([_unit(x.feature) for x in queries])
        g = np.stack([e.feature for e in self.entries])
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"gallery: query features of dimension {q.shape[1]}, entries "
                             f"{g.shape[1]}")
        cost = 1.0 - q @ g.T
        for i, x in enumerate(queries):
            for j, e in enumerate(self.entries):
                if e.camera == x.camera:
                    cost[i, j] = _FORBIDDEN
                elif self.topology is not None and not self.topology.allows(
                        e.camera, x.camera, x.first_time - e.exit_time):
                    cost[i, j] = _FORBIDDEN
        return cost

    def query(self, queries: Sequence[Query], now: float) -> list[MatchEvent]:
        """Expire old entries, then match ``queries`` one-to-one to entries (Hungarian on the
        cosine distance, pairs above ``threshold`` or forbidden left out). Matched queries take
        the entry's global id; returns the new matches."""
        with self._lock:
            self._expire(now)
            cost = self._cost(queries)
            if cost.size == 0:
                return []
            rows, cols = linear_sum_assignment(np.minimum(cost, _FORBIDDEN))
            events, used = [], []
            for i, j in zip(rows, cols, strict=True):
                if cost[i, j] > self.config.threshold:
                    continue
                e, x = self.entries[j], queries[i]
                self.ids.assign(x.camera, x.track_id, e.global_id)
                ev = MatchEvent(float(now), e.global_id, e.camera, e.track_id, x.camera,
                                int(x.track_id), float(cost[i, j]))
                events.append(ev)
                used.append(j)
            if self.config.consume:
                gone = set(used)
                self.entries = [e for j, e in enumerate(self.entries) if j not in gone]
            self.events.extend(events)
            return events


    def link_live(self, event: MatchEvent, relabel: Sequence[TrackKey], drop: int) -> None:
        """Record a live cross-camera link: the tracks ``relabel`` and the gallery entries
        carrying the id ``drop`` take ``event.global_id``."""
        with self._lock:
            self.ids.relabel(relabel, event.global_id)
            for e in self.entries:
                if e.global_id == drop:
                    e.global_id = event.global_id
            self.events.append(event)


@dataclass
class _Live:
    first_time: float
    last_time: float
    last_frame: int
    matched: bool = False


@dataclass
class MultiCameraMatcher:
    """The thesis's MC matcher over a :class:`CrossCameraGallery` (one for all cameras).

    Per camera frame call ``update(camera, frame, time, track_ids, features)`` with the
    confirmed tracks in view and a feature provider (``features(camera, track_id) -> (D,) or
    None``, e.g. :class:`fedfr.tracking.track_features.TrackFeatureBank.feature`). A track
    unseen for ``exit_after`` frames has exited: its feature goes to the gallery. Every
    ``query_interval`` frames of a camera its unmatched tracks with a feature query the gallery.
    ``global_id(camera, track_id)`` gives the identity to draw and write."""

    gallery: CrossCameraGallery = field(default_factory=CrossCameraGallery)
    exit_after: int = 30
    live: dict[TrackKey, _Live] = field(default_factory=dict)

    def global_id(self, camera: str, track_id: int) -> int:
        return self.gallery.ids.get(camera, track_id)

    def update(self, camera: str, frame: int, time: float, track_ids: Sequence[int],
               features) -> list[MatchEvent]:
        for t in track_ids:
            key = (camera, int(t))
            st = self.live.get(key)
            if st is None:
                self.live[key] = _Live(time, time, frame)
                self.gallery.ids.get(camera, t)
            else:
                st.last_time, st.last_frame = time, frame
        for key, st in list(self.live.items()):
            if key[0] == camera and frame - st.last_frame > self.exit_after:
                self._exit(key, st, features)
        events: list[MatchEvent] = []
        if self.gallery.config.exits and frame % self.gallery.config.query_interval == 0:
            queries = []
            for t in track_ids:
                st = self.live[(camera, int(t))]
                f = None if st.matched else features(camera, int(t))
                if f is not None:
                    queries.append(Query(camera, int(t), np.asarray(f), st.first_time))
            events = self.gallery.query(queries, time)
            for ev in events:
                self.live[(ev.camera, ev.track_id)].matched = True
        cfg = self.gallery.config
        if cfg.live and frame % (cfg.live_interval or cfg.query_interval) == 0:
            events = events + self.match_live(camera, time, track_ids, features)
        return events

    def match_live(self, camera: str, now: float, track_ids: Sequence[int],
                   features) -> list[MatchEvent]:
        """Overlapping views (``GalleryConfig.live``; not in the thesis): match this camera's
        unmatched tracks in view to the identities in view in the other cameras.

        An identity is the set of live tracks of other cameras that carry one global id and
        were seen within ``live_window`` s of ``now``; its cost for a query is the smallest
        cosine distance to its members. Forbidden: ids already on a live track of this camera
        (one person is one track per camera), members the topology rejects (transit = the
        query's first-seen time - the member's last-seen time, <= 0 while both are in view).
        One-to-one Hungarian over (queries, identities); costs above ``live_threshold`` are
        not matched. A match merges the two identities under the older (smaller) global id:
        the live tracks and gallery entries of the other id take it; both sides count as
        matched (not queried again)."""
        cfg, ids, topo = self.gallery.config, self.gallery.ids, self.gallery.topology
        thr = cfg.threshold if cfg.live_threshold is None else cfg.live_threshold
        here = {ids.get(*k) for k in self.live if k[0] == camera}
        queries = []
        for t in track_ids:
            st = self.live[(camera, int(t))]
            f = None if st.matched else features(camera, int(t))
            if f is not None:
                queries.append((int(t), st, _unit(f)))
        groups: dict[int, list[tuple[TrackKey, _Live, np.ndarray]]] = {}
        for key, st in self.live.items():
            if key[0] == camera or now - st.last_time > cfg.live_window:
                continue
            g = ids.get(*key)
            f = None if g in here else features(*key)
            if f is not None:
                groups.setdefault(g, []).append((key, st, _unit(f)))
        if not queries or not groups:
            return []
        gids = sorted(groups)
        cost = np.full((len(queries), len(gids)), _FORBIDDEN)
        near: dict[tuple[int, int], TrackKey] = {}
        for i, (_, qst, q) in enumerate(queries):
            for j, g in enumerate(gids):
                for key, st, f in groups[g]:
                    if topo is not None and not topo.allows(key[0], camera,
                                                            qst.first_time - st.last_time):
                        continue
                    d = 1.0 - float(q @ f)
                    if d < cost[i, j]:
                        cost[i, j], near[(i, j)] = d, key
        rows, cols = linear_sum_assignment(cost)
        events = []
        for i, j in zip(rows, cols, strict=True):
            if cost[i, j] > thr:
                continue
            t, qst, _ = queries[i]
            gq, gg = ids.get(camera, t), gids[j]
            keep, drop = min(gq, gg), max(gq, gg)
            relabel = [(camera, t)] if keep == gg else [
                k for k in self.live if ids.get(*k) == gg]
            ev = MatchEvent(float(now), keep, near[(i, j)][0], near[(i, j)][1], camera, t,
                            float(cost[i, j]))
            self.gallery.link_live(ev, relabel, drop)
            qst.matched = True
            for _key, st, _ in groups[gg]:
                st.matched = True
            events.append(ev)
        return events

    def _exit(self, key: TrackKey, st: _Live, features) -> None:
        del self.live[key]
        f = features(*key)
        if f is not None:
            self.gallery.add_exit(key[0], key[1], f, st.last_time, st.first_time)

    def finish(self, features) -> None:
        """End of the run: every live track exits (so nothing is left unaccounted)."""
        for key, st in list(self.live.items()):
            self._exit(key, st, features)
