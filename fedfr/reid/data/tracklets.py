"""Synthetic tracklets: people from the pedestrian generator (``synthetic.py``) walking through
a camera's view, with the defects that re-Detect-and-Link repairs, written in the MARS layout.

A tracklet is a visit of one person to one camera, cut by the "tracker" into 1..3 fragments (as
MARS's GMCP tracker does). Frame to frame the person's pose (stride phase, small view wobble),
scale (walking towards or away from the camera), truncation (entering or leaving at the image
border, so part of the body is outside the crop) and occlusion (an occluder that comes and goes)
change. Defects, each drawn per tracklet with its ground truth per frame:

* **misaligned boxes**: a run of frames whose box is off the person (shifted by 0.12-0.3 of the
  box height sideways, 0.05-0.15 vertically, scaled by 0.65-0.8 or 1.2-1.4);
* **a second person in the box**: a run of frames with another person standing beside and behind
  the target (``intruder_pid``);
* **an identity switch**: from a frame in the second half on, the tracklet shows another person
  of the same part (train or test) while keeping its label (``true_pid`` changes).

Written as MARS (``bbox_train/``, ``bbox_test/``, ``info/`` with the names lists,
``tracks_*_info.mat``, ``query_IDX.mat``), so the ``mars`` reader serves it, plus
``info/frame_truth.csv`` (per-frame ground truth, read back into ``Tracklet.truth``) and
``info/clean_tracks_test_info.mat`` (cleaned labels from the ground truth: a switched tracklet's
second person becomes its ambiguous identity). The test part holds pid-0 distractor tracklets
(people outside the set) and pid -1 junk tracklets (boxes mostly off any person). Queries: one
fragment per (test person, camera) where that camera has two or more fragments.

Deterministic: everything follows from the spec (its digest keys the cache folder, as for
``synthetic.py``'s domains).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedfr.errors import ConfigError
from fedfr.reid.data import synthetic as syn
from fedfr.reid.data.records import VideoSplit
from fedfr.reid.data.video.fixtures import mars_name, write_mars_info
from fedfr.reid.data.video.mars import NUM_CAMS, TRUTH_COLUMNS, TRUTH_FILE, read_mars
from fedfr.reid.data.video.registry import register_video_dataset

GENERATOR_VERSION = 1
#: A frame is "truncated" when the body reaches more than this far (box heights) outside the box.
TRUNC_TOL = 0.03


@dataclass(frozen=True)
class TrackletSpec:
    """Everything that determines a synthetic tracklet set (lengths in box heights).

    ``domain``: the ``synthetic.py`` preset whose people, cameras and image style are used
    (at most 6 cameras: MARS names carry cameras 1..6). Probabilities are per tracklet.
    """

    name: str = "synth-mars"
    domain: str = "synth-market"
    seed: int = 0
    num_ids: int = 24
    max_visits: int = 3  # cameras a person passes (2..max_visits)
    fragments: tuple[int, int] = (1, 3)  # tracklets per visit
    frames: tuple[int, int] = (6, 20)  # frames per tracklet
    height: int = 64
    width: int = 32
    train_fraction: float = 0.5
    distractor_tracklets: int = 4
    junk_tracklets: int = 3
    misalign_prob: float = 0.2
    intruder_prob: float = 0.15
    switch_prob: float = 0.1
    occlusion_prob: float = 0.25
    truncation_prob: float = 0.25
    jpeg_quality: int = 90
    num_cams: int | None = None  # the domain's first num_cams cameras (None: all of them)

    def digest(self) -> str:
        d = dataclasses.asdict(self)
        if d["num_cams"] is None:  # keeps the digests (and caches) of specs from before the key
            del d["num_cams"]
        d["generator_version"] = GENERATOR_VERSION
        d["domain_digest"] = self.domain_spec().digest()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def domain_spec(self) -> syn.DomainSpec:
        extra = self.num_ids + self.distractor_tracklets + self.junk_tracklets
        cams = {} if self.num_cams is None else {"num_cams": self.num_cams}
        return syn.make_spec(self.domain, seed=self.seed, num_ids=max(2, extra),
                             height=self.height, width=self.width, **cams)


PRESETS: dict[str, dict[str, Any]] = {
    "synth-mars": {},
    # DukeV's boxes are hand-drawn: the same walks without tracker defects
    "synth-dukev": dict(domain="synth-duke", misalign_prob=0.0, intruder_prob=0.0,
                        switch_prob=0.0, junk_tracklets=0, frames=(10, 30), num_cams=NUM_CAMS),
}


def make_tracklet_spec(name_or_spec: str | TrackletSpec, **overrides: Any) -> TrackletSpec:
    """A TrackletSpec from a preset name (or a spec) with ``overrides`` applied."""
    if isinstance(name_or_spec, TrackletSpec):
        spec = name_or_spec
    elif name_or_spec in PRESETS:
        spec = TrackletSpec(name=name_or_spec, **PRESETS[name_or_spec])
    else:
        raise ConfigError(f"unknown synthetic tracklet set {name_or_spec!r}; known: "
                          f"{', '.join(sorted(PRESETS))}")
    fields = {f.name for f in dataclasses.fields(TrackletSpec)}
    for key in overrides:
        if key not in fields:
            raise ConfigError(f"synthetic tracklets: unknown option {key!r}; accepted: "
                              f"{', '.join(sorted(fields))}")
    spec = dataclasses.replace(spec, **{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in overrides.items()})
    dom = spec.domain_spec()
    if dom.num_cams > NUM_CAMS:
        raise ConfigError(f"synthetic tracklets {spec.name}: domain {spec.domain} has "
                          f"{dom.num_cams} cameras (expected at most {NUM_CAMS}: MARS layout)")
    if spec.num_ids < 4 or not 1 <= spec.frames[0] <= spec.frames[1] <= 999:
        raise ConfigError(f"synthetic tracklets {spec.name}: num_ids >= 4 and frames within "
                          f"1..999 expected, got {spec.num_ids}, {spec.frames}")
    if not 1 <= spec.fragments[0] <= spec.fragments[1]:
        raise ConfigError(f"synthetic tracklets {spec.name}: fragments {spec.fragments}")
    return spec


def _rng(spec: TrackletSpec, *key: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed & (2**63 - 1), syn._tag(spec.name), *key])


def _run(rng: np.random.Generator, n: int) -> tuple[int, int]:
    """A run [a, b) of 1..ceil(n / 2) frames inside n frames."""
    length = int(rng.integers(1, max(1, (n + 1) // 2) + 1))
    a = int(rng.integers(0, n - length + 1))
    return a, a + length


def _walk(spec: TrackletSpec, rng: np.random.Generator, pid: int, cam: int, n: int,
          cs: dict[str, Any], defects: bool, others: list[int]) -> list[dict[str, Any]]:
    """Frame rows (synthetic.py's render rows plus ground-truth keys) of one tracklet."""
    view = cs["view"] + rng.normal(0, cs["spread"]) + (np.pi if rng.random() < 0.3 else 0.0)
    stride0, step = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.4)
    growth = rng.normal(0, 0.006)  # log-scale drift per frame (towards / away, box lagging)
    dx0, dy0 = rng.normal(0, 0.02, 2)
    trunc = np.zeros(n)
    if rng.random() < spec.truncation_prob:  # entering (start) or leaving (end) at a border
        k = int(rng.integers(1, max(1, n // 3) + 1))
        side = rng.choice([-1.0, 1.0])
        ramp = np.linspace(rng.uniform(0.15, 0.3), 0.0, k + 1)[:k]
        if rng.random() < 0.5:
            trunc[:k] = side * ramp
        else:
            trunc[n - k:] = side * ramp[::-1]
    occ = np.zeros(n, bool)
    if rng.random() < spec.occlusion_prob:
        a, b = _run(rng, n)
        occ[a:b] = True
    occ_kind, occ_a, occ_b0 = int(rng.integers(3)), rng.uniform(0.25, 0.45), rng.uniform(0, 1)
    mis = np.zeros(n, bool)
    intr = np.zeros(n, np.int64)
    true = np.full(n, pid, np.int64)
    if defects and rng.random() < spec.misalign_prob:
        a, b = _run(rng, n)
        mis[a:b] = True
    mis_dx = rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.3)
    mis_dy = rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.15)
    mis_s = rng.uniform(0.65, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.4)
    if defects and others and rng.random() < spec.intruder_prob:
        a, b = _run(rng, n)
        intr[a:b] = others[int(rng.integers(len(others)))]
    intr_dx = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.32)
    if defects and others and n >= 2 and rng.random() < spec.switch_prob:
        k = int(rng.integers((n + 1) // 2, n))
        true[k:] = others[int(rng.integers(len(others)))]
    rows = []
    for t in range(n):
        scale = cs["scale"] * float(np.exp(growth * (t - n / 2)))
        dx, dy = dx0 + trunc[t] + rng.normal(0, 0.01), dy0 + rng.normal(0, 0.01)
        if mis[t]:
            dx, dy, scale = dx + mis_dx, dy + mis_dy, scale * mis_s
        half_w = 0.16 * scale  # shoulder half-width, box heights
        rows.append({
            "pid": int(true[t]), "cam": cam, "view": view + rng.normal(0, 0.08),
            "stride": stride0 + step * t, "dx": dx, "dy": dy, "scale": scale,
            "bright": rng.normal(0, 0.02), "occ": bool(occ[t]), "occ_kind": occ_kind,
            "occ_a": occ_a, "occ_b": float(np.clip(occ_b0 + 0.03 * t, 0, 1)),
            "clutter_x": 0.0, "noise_seed": int(rng.integers(2**31)),
            "misaligned": bool(mis[t]), "intruder": int(intr[t]), "intruder_dx": intr_dx,
            "truncated": bool(abs(dx) + half_w > spec.width / spec.height / 2 + TRUNC_TOL
                              or abs(dy) + 0.5 * scale > 0.5 + TRUNC_TOL),
        })
    return rows


def _plan(spec: TrackletSpec) -> tuple[list[dict[str, Any]], list[int]]:
    """Tracklets (part, label pid, camera, rows) in write order, and the 0-based test rows of
    the queries."""
    dom = spec.domain_spec()
    cams = [syn._camera(dom, c) for c in range(dom.num_cams)]
    order = _rng(spec, 1).permutation(np.arange(1, spec.num_ids + 1))
    n_train = int(round(spec.train_fraction * spec.num_ids))
    part = {int(p): ("train" if i < n_train else "test") for i, p in enumerate(order)}
    members = {k: sorted(p for p, v in part.items() if v == k) for k in ("train", "test")}
    outsiders = list(range(spec.num_ids + 1, spec.num_ids + 1 + spec.distractor_tracklets +
                           spec.junk_tracklets))
    tracks: list[dict[str, Any]] = []
    for pid in range(1, spec.num_ids + 1):
        rng = _rng(spec, 2, pid)
        n_vis = int(rng.integers(2, min(spec.max_visits, dom.num_cams) + 1))
        others = [p for p in members[part[pid]] if p != pid] + outsiders
        for cam in sorted(rng.choice(dom.num_cams, n_vis, replace=False).tolist()):
            for _ in range(int(rng.integers(spec.fragments[0], spec.fragments[1] + 1))):
                n = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
                tracks.append({"part": part[pid], "label": pid, "cam": cam,
                               "rows": _walk(spec, rng, pid, cam, n, cams[cam], True, others)})
    rng = _rng(spec, 3, 0)
    for k, pid in enumerate(outsiders):
        junk = k >= spec.distractor_tracklets
        cam = int(rng.integers(dom.num_cams))
        n = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
        rows = _walk(spec, rng, pid, cam, n, cams[cam], False, [])
        if junk:  # a box mostly off any person: a bad detection
            side = rng.choice([-1.0, 1.0])
            for r in rows:
                r.update(dx=side * rng.uniform(0.3, 0.4), scale=r["scale"] * 0.6,
                         misaligned=True, truncated=True)
        tracks.append({"part": "test", "label": -1 if junk else 0, "cam": cam, "rows": rows})
    test = [i for i, t in enumerate(t for t in tracks if t["part"] == "test")]
    test_tracks = [t for t in tracks if t["part"] == "test"]
    by_key: dict[tuple[int, int], list[int]] = {}
    for i in test:
        t = test_tracks[i]
        if t["label"] > 0:
            by_key.setdefault((t["label"], t["cam"]), []).append(i)
    qrng = _rng(spec, 4, 0)
    query = sorted(v[int(qrng.integers(len(v)))] for _, v in sorted(by_key.items())
                   if len(v) >= 2)
    return tracks, query


def _render_rows(spec: TrackletSpec, rows: list[dict[str, Any]]) -> np.ndarray:
    """uint8 (N, H, W, 3) frames; intruders composited behind the tracked person."""
    dom = spec.domain_spec()
    pids = {r["pid"] for r in rows} | {r["intruder"] for r in rows if r["intruder"]}
    people = {p: syn._person(dom, p) for p in sorted(pids)}
    cams = [syn._camera(dom, c) for c in range(dom.num_cams)]
    out = syn._render(dom, rows, people, cams)
    has = [i for i, r in enumerate(rows) if r["intruder"]]
    if has:
        sub = [rows[i] for i in has]
        intr = [{**r, "pid": r["intruder"], "dx": r["dx"] + r["intruder_dx"], "occ": False}
                for r in sub]
        bg = [{**r, "dx": 10.0, "occ": False} for r in sub]
        im_i = syn._render(dom, intr, people, cams).astype(np.int16)
        im_b = syn._render(dom, bg, people, cams).astype(np.int16)
        main = out[has].astype(np.int16)
        person = np.abs(main - im_b).max(axis=-1, keepdims=True) > 6
        out[has] = np.where(person, main, im_i).astype(np.uint8)
    return out


def render_tracklets(name_or_spec: str | TrackletSpec, out_root: str | os.PathLike, *,
                     batch: int = 256, **overrides: Any) -> Path:
    """Render a tracklet set into ``out_root`` (MARS layout + ``spec.json``) and return it; an
    existing folder with this spec's digest is returned as is, another spec there is an error."""
    from PIL import Image

    spec = make_tracklet_spec(name_or_spec, **overrides)

    def write(tmp: Path) -> dict[str, Any]:
        tracks, query = _plan(spec)
        names: dict[str, list[str]] = {"train": [], "test": []}
        info: dict[str, list[tuple[int, ...]]] = {"train": [], "test": []}
        clean: list[tuple[int, ...]] = []
        flat: list[tuple[str, str, dict[str, Any]]] = []
        counter: dict[tuple[str, int, int], int] = {}
        for t in tracks:
            key = (t["part"], t["label"], t["cam"])
            tid = counter[key] = counter.get(key, 0) + 1
            lst = names[t["part"]]
            start = len(lst) + 1
            for f, r in enumerate(t["rows"]):
                name = mars_name(t["label"], t["cam"] + 1, tid, f + 1)
                lst.append(name)
                flat.append((f"bbox_{t['part']}", name, r))
            info[t["part"]].append((start, len(lst), t["label"], t["cam"] + 1))
            if t["part"] == "test":
                true = [r["pid"] for r in t["rows"]]
                second = [p for p in dict.fromkeys(true) if p != t["label"]]
                clean.append((start, len(lst), t["label"], t["cam"] + 1, t["label"],
                              second[0] if second and t["label"] > 0 else 0))
        for s in range(0, len(flat), batch):
            part = flat[s:s + batch]
            imgs = _render_rows(spec, [r for _, _, r in part])
            for img, (folder, name, _) in zip(imgs, part, strict=True):
                path = tmp / folder / name[:4] / name
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path, quality=spec.jpeg_quality)
        write_mars_info(tmp, names, {k: np.asarray(v) for k, v in info.items()}, query,
                        np.asarray(clean))
        with (tmp / "info" / TRUTH_FILE).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(TRUTH_COLUMNS)
            for _, name, r in flat:
                w.writerow([name, r["pid"], f"{r['dx']:.5f}", f"{r['dy']:.5f}",
                            f"{r['scale']:.5f}", int(r["misaligned"]), r["intruder"],
                            int(r["truncated"]), int(r["occ"])])
        return {"generator_version": GENERATOR_VERSION, "spec": dataclasses.asdict(spec),
                "frames": len(flat), "tracklets": len(tracks)}

    return syn.write_generated(Path(out_root), spec.digest(),
                               f"synthetic tracklets {spec.name}", write)


def tracklet_dir(spec: TrackletSpec, cache_dir: str | os.PathLike) -> Path:
    """Cache folder of ``spec``: ``<cache_dir>/<name>-<digest[:16]>``."""
    return Path(cache_dir) / f"{spec.name}-{spec.digest()[:16]}"


def synthetic_tracklets(name: str | TrackletSpec, cache_dir: str | os.PathLike,
                        gallery: str = "torchreid", clean: bool = False,
                        **spec: Any) -> VideoSplit:
    """The tracklet set ``name`` (with ``spec`` overrides), rendered into ``cache_dir`` once and
    read back by the MARS reader (``gallery`` / ``clean`` as ``read_mars``)."""
    s = make_tracklet_spec(name, **spec)
    folder = render_tracklets(s, tracklet_dir(s, cache_dir))
    split = read_mars(folder, gallery=gallery, clean=clean)
    split.name = s.name
    split.meta.update(layout="synthetic", digest=s.digest(), spec=dataclasses.asdict(s))
    return split


def _register(name: str) -> None:
    def reader(root: Path, seed: int = 0, num_ids: int | None = None,
               gallery: str = "torchreid", clean: bool = False) -> VideoSplit:
        opts = {k: v for k, v in dict(seed=seed, num_ids=num_ids).items() if v is not None}
        return synthetic_tracklets(name, root, gallery=gallery, clean=clean, **opts)

    reader.__doc__ = f"Synthetic tracklet set {name} (MARS layout), cached under ``root``."
    register_video_dataset(name)(reader)


for _name in PRESETS:
    _register(_name)
