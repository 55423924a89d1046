"""A deterministic synthetic multi-camera scene: people walking on a ground plane, seen by
projected pinhole cameras, written per camera in the MOTChallenge layout.

World: metres, z up, the ground is z = 0. Two set-ups:

* ``overlapping`` (WILDTRACK-like): a 16 x 12 m square watched by ``num_cameras`` cameras placed
  around it, all looking at its centre; people enter and leave beyond its edge and wander
  through 1-3 interior waypoints, so most people are seen by several cameras at once.
* ``disjoint`` (Duke / CityFlow-like): a 6 m wide corridor, one camera per 16 m stretch with
  unobserved gaps between the fields of view; people walk its length (some leave through a side
  exit), so they pass from one camera to the next after a transit time. ``topology.json`` gives
  the links and transit windows (the cross-camera gallery's topology file).

Cameras are 3 x 4 pinhole projections ``K [R | -R C]`` (height above the ground, look-at
target, horizontal field of view); a person's box spans the projections of the feet and the head
(the person's height, 1.55-1.95 m). People are the re-ID generator's pedestrians
(:mod:`fedfr.reid.data.synthetic`: clothing, bags, hair, view-dependent looks), rendered as
sprites for 8 view angles x 3 gait poses and composited far to near, so nearer people
occlude farther ones. Each camera has its own ground texture and its own colour cast, gamma and
brightness (the cross-camera domain gap).

Per camera folder ``<out>/<camera>/``: ``seqinfo.ini``, ``img1/%06d.jpg``, ``gt/gt.txt``
(``frame, id, left, top, width, height, 1, 1, visibility``; 1-based frames and pixels; ids are
the global person ids, so one identity keeps its id across cameras) and ``det/det.txt``
(``frame, -1, left, top, width, height, score, -1, -1, -1``) from :class:`DetectionNoise`.
Scene files: ``scene.json`` (spec, calibration), ``ground_truth.txt`` (AI City 9 columns:
``camera_id person_id frame left top width height x_world y_world``, 0-based pixels) and
``topology.json``. Visibility is the share of the person's own pixels (sprite alpha > 0.5) that
are inside the image and not covered by a nearer person.

Randomness: person ``p`` depends only on ``(seed, p)``, camera ``c`` on ``(seed, c)``, the
detections of (camera, frame) on ``(seed, camera, frame)``: the same spec gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fedfr.errors import ConfigError
from fedfr.reid.data.synthetic import DomainSpec, _person, _render
from fedfr.tracking.detection import NoiseModel

SETUPS = ("overlapping", "disjoint")
SPRITE_H, SPRITE_W = 96, 48  # sprite pixels (person height = _SPRITE_SCALE * SPRITE_H)
_SPRITE_SCALE = 0.96
_VIEWS, _PHASES = 8, 4
_POSE_OF_PHASE = (0, 1, 0, 2)  # gait phase -> rendered pose (legs together, apart, apart)
_STRIDE_M = 0.7  # metres per half gait cycle
_SPACING = 16.0  # metres of corridor per camera in the disjoint set-up


@dataclass(frozen=True)
class DetectionNoise(NoiseModel):
    """The ``det.txt`` noise model: the runtime stand-in's (``detection.NoiseModel``: misses,
    jitter, scores falling with occlusion, so that occluded people get the low scores BYTE's
    second stage recovers) plus what a written scene adds. Per frame a Poisson(``false_alarms``)
    number of false boxes of person size on the ground, scores uniform in
    ``false_alarm_scores``; boxes are clipped to the image, and boxes with fewer than
    ``min_visible`` of their person's pixels in view are not detected."""

    false_alarm_scores: tuple[float, float] = (0.1, 0.6)
    min_visible: float = 0.05


@dataclass(frozen=True)
class SceneSpec:
    """Everything that determines a scene. Lengths in metres, times in seconds, angles in
    degrees, sizes in pixels."""

    name: str = "synth-mtmc"
    seed: int = 0
    setup: str = "overlapping"  # overlapping | disjoint
    num_cameras: int = 3
    num_people: int = 12
    frames: int = 200
    frame_rate: float = 10.0
    width: int = 640
    height: int = 480
    hfov: float = 60.0
    camera_height: float = 5.0
    person_height: tuple[float, float] = (1.55, 1.95)
    speed: tuple[float, float] = (1.0, 1.6)
    palette: str = "mixed"
    cast: float = 0.12  # std of each camera's log colour gain per channel
    brightness: tuple[float, float] = (-0.06, 0.06)
    gamma: tuple[float, float] = (0.85, 1.2)
    jpeg_quality: int = 90
    detection: DetectionNoise = field(default_factory=DetectionNoise)

    def __post_init__(self) -> None:
        if self.setup not in SETUPS:
            raise ConfigError(f"scene setup {self.setup!r}: expected one of {SETUPS}")
        for key in ("num_cameras", "num_people", "frames", "width", "height"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"scene {key}={getattr(self, key)}: expected >= 1")
        if self.frame_rate <= 0:
            raise ConfigError(f"scene frame_rate={self.frame_rate}: expected > 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Camera:
    """A pinhole camera: ``K`` (3, 3), ``R`` (3, 3) world-to-camera rotation, ``C`` (3,) its
    centre in world metres; image ``width`` x ``height``; style (colour gain per channel,
    brightness offset, gamma)."""

    name: str
    K: np.ndarray
    R: np.ndarray
    C: np.ndarray
    width: int
    height: int
    gain: np.ndarray
    bright: float
    gamma: float

    @property
    def P(self) -> np.ndarray:
        """The 3 x 4 projection matrix K [R | -R C]."""
        return self.K @ np.concatenate([self.R, -(self.R @ self.C)[:, None]], axis=1)

    def to_camera(self, X: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> camera coordinates (N, 3) (x right, y down, z forward)."""
        return (np.asarray(X, np.float64) - self.C) @ self.R.T

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixels (N, 2) (0-based, continuous) and depth z (N,)."""
        pc = self.to_camera(X)
        z = pc[:, 2]
        uv = (pc @ self.K.T)[:, :2] / np.where(np.abs(z) < 1e-9, 1e-9, z)[:, None]
        return uv, z

    def lut(self) -> np.ndarray:
        """(3, 256) uint8 look-up table of the camera's colour response."""
        x = (np.arange(256, dtype=np.float64) / 255.0) ** self.gamma
        out = x[None, :] * self.gain[:, None] + self.bright
        return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "K": self.K.tolist(), "R": self.R.tolist(),
                "C": self.C.tolist(), "P": self.P.tolist(), "width": self.width,
                "height": self.height, "gain": self.gain.tolist(), "bright": self.bright,
                "gamma": self.gamma}


@dataclass
class Walker:
    """One person's path: waypoints (K, 2) on the ground walked at ``speed`` m/s from time
    ``t0`` (s); ``height`` in metres."""

    pid: int
    waypoints: np.ndarray
    speed: float
    t0: float
    height: float

    def __post_init__(self) -> None:
        seg = np.diff(self.waypoints, axis=0)
        self._len = np.linalg.norm(seg, axis=1)
        self._cum = np.concatenate([[0.0], np.cumsum(self._len)])

    @property
    def t1(self) -> float:
        return self.t0 + self._cum[-1] / self.speed

    def state(self, t: float) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(position (2,), unit heading (2,), distance walked) at time t, None off the path."""
        if t < self.t0 or t > self.t1:
            return None
        d = (t - self.t0) * self.speed
        k = int(np.clip(np.searchsorted(self._cum, d, side="right") - 1, 0, len(self._len) - 1))
        heading = (self.waypoints[k + 1] - self.waypoints[k]) / max(self._len[k], 1e-9)
        pos = self.waypoints[k] + heading * (d - self._cum[k])
        return pos, heading, d


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed & (2**63 - 1), 7001, *keys])


def _look_at(C: np.ndarray, target: np.ndarray) -> np.ndarray:
    fwd = target - C
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd])


def _cameras(spec: SceneSpec) -> list[Camera]:
    f = (spec.width / 2) / math.tan(math.radians(spec.hfov) / 2)
    K = np.array([[f, 0, spec.width / 2], [0, f, spec.height / 2], [0, 0, 1.0]])
    cams = []
    for k in range(spec.num_cameras):
        rng = _rng(spec.seed, 2, k)
        if spec.setup == "overlapping":
            ang = 2 * math.pi * k / spec.num_cameras + math.pi / 7
            C = np.array([8 + 11 * math.cos(ang), 6 + 11 * math.sin(ang), spec.camera_height])
            target = np.array([8.0, 6.0, 0.0]) + np.r_[rng.normal(0, 0.7, 2), 0.0]
        else:
            xk = _SPACING * (k + 0.5)
            C = np.array([xk, -4.0, spec.camera_height])
            target = np.array([xk, 3.5, 0.0])
        cams.append(Camera(
            name=f"c{k + 1:03d}", K=K.copy(), R=_look_at(C, target), C=C,
            width=spec.width, height=spec.height,
            gain=np.exp(rng.normal(0, spec.cast, 3)), bright=float(rng.uniform(*spec.brightness)),
            gamma=float(rng.uniform(*spec.gamma))))
    return cams


def _walkers(spec: SceneSpec) -> list[Walker]:
    T = spec.frames / spec.frame_rate
    out = []
    for pid in range(1, spec.num_people + 1):
        rng = _rng(spec.seed, 3, pid)
        speed = float(rng.uniform(*spec.speed))
        height = float(rng.uniform(*spec.person_height))
        if spec.setup == "overlapping":
            a0, a1 = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
            start = np.array([8 + 10 * math.cos(a0), 6 + 8 * math.sin(a0)])
            end = np.array([8 + 10 * math.cos(a1), 6 + 8 * math.sin(a1)])
            mids = np.column_stack([rng.uniform(1.5, 14.5, 3), rng.uniform(1.0, 11.0, 3)])
            mids = mids[: int(rng.integers(1, 4))]
            wps = np.vstack([start, mids, end])
            length = float(np.linalg.norm(np.diff(wps, axis=0), axis=1).sum())
            t0 = float(rng.uniform(-0.5 * length / speed, T - 0.3 * length / speed))
        else:
            L = _SPACING * spec.num_cameras
            forward = rng.random() < 0.5
            xs = np.sort(rng.uniform(0, L, int(rng.integers(2, 5))))
            wps = np.column_stack([np.r_[-3.0, xs, L + 3.0], rng.uniform(0.8, 5.2, len(xs) + 2)])
            if rng.random() < 0.3:  # leaves through a side exit in a gap between cameras
                gap = _SPACING * int(rng.integers(1, spec.num_cameras)) + rng.uniform(-1.0, 1.0)
                keep = wps[:, 0] < gap
                wps = np.vstack([wps[keep], [gap, 8.0]])
            if not forward:
                wps = wps[::-1].copy()
            length = float(np.linalg.norm(np.diff(wps, axis=0), axis=1).sum())
            t0 = float(rng.uniform(-0.6 * length / speed, T - 8.0))
        out.append(Walker(pid=pid, waypoints=wps, speed=speed, t0=t0, height=height))
    return out


def _sprites(spec: SceneSpec) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{pid: (premultiplied colour (V, 3, H, W, 3) float32, alpha (V, 3, H, W) float32)} for
    _VIEWS view angles x 3 poses (legs together, left / right forward), rendered by the re-ID
    generator's person model over black and over white (alpha = 1 - (white - black))."""
    dspec = DomainSpec(name=f"scene-{spec.name}", seed=spec.seed, palette=spec.palette,
                       height=SPRITE_H, width=SPRITE_W)
    people = {pid: _person(dspec, pid) for pid in range(1, spec.num_people + 1)}

    def cam(level: float) -> dict[str, Any]:
        return {"gain": np.ones(3), "bright": 0.0, "contrast": 1.0, "gamma": 1.0,
                "grad": np.zeros(2), "blur": 1e-3, "lowres": False, "noise": 0.0,
                "bg_top": np.full(3, level), "bg_bottom": np.full(3, level), "horizon": 0.5,
                "pillar_freq": 1.0, "pillar_amp": 0.0, "clutter": np.zeros(3)}

    rows = []
    for pid in people:
        for v in range(_VIEWS):
            for s in (0.0, 0.5 * math.pi, 1.5 * math.pi):
                rows.append({"pid": pid, "cam": 0, "view": 2 * math.pi * v / _VIEWS,
                             "stride": s, "dx": 0.0, "dy": 0.0,
                             "scale": _SPRITE_SCALE, "bright": 0.0, "occ": False, "occ_kind": 0,
                             "occ_a": 0.3, "occ_b": 0.5, "clutter_x": 40.0, "noise_seed": 0})
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    chunk = _VIEWS * 3
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        black = _render(dspec, part, people, [cam(0.0)]).astype(np.float32) / 255.0
        white = _render(dspec, part, people, [cam(1.0)]).astype(np.float32) / 255.0
        alpha = np.clip(1.0 - (white - black).mean(axis=3), 0.0, 1.0)
        shape = (_VIEWS, 3, SPRITE_H, SPRITE_W)
        out[part[0]["pid"]] = (black.reshape(*shape, 3), alpha.reshape(shape))
    return out


def _background(spec: SceneSpec, cam: Camera, index: int) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1]: the ground seen by ``cam`` (1 m tiles, two tones, the
    walkable area paved, the rest grass-like), a wall colour above the horizon."""
    rng = _rng(spec.seed, 4, index)
    H, W = cam.height, cam.width
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(cam.K).T @ cam.R  # world dirs
    t = -cam.C[2] / np.where(rays[..., 2] < -1e-6, rays[..., 2], -1e-6)
    gx, gy = cam.C[0] + t * rays[..., 0], cam.C[1] + t * rays[..., 1]
    ground = (rays[..., 2] < -1e-3) & (t < 80)
    if spec.setup == "overlapping":
        inside = (gx > 0) & (gx < 16) & (gy > 0) & (gy < 12)
    else:
        inside = (gy > 0) & (gy < 6)
    pave = rng.uniform(0.45, 0.7) * np.array([1.0, 0.97, 0.92]) * rng.uniform(0.9, 1.1, 3)
    grass = np.array([0.25, 0.4, 0.2]) * rng.uniform(0.8, 1.2, 3)
    wall = np.clip(rng.uniform(0.3, 0.8) + rng.normal(0, 0.08, 3), 0, 1)
    checker = ((np.floor(gx) + np.floor(gy)) % 2)[..., None]
    img = np.where(inside[..., None], pave * (0.92 + 0.08 * checker), grass * (0.9 + 0.1 * checker))
    stripes = 0.9 + 0.1 * np.sin(u / rng.uniform(12, 40))[..., None]
    img = np.where(ground[..., None], img, wall * stripes)
    return np.clip(img, 0, 1).astype(np.float32)


@dataclass
class FrameTruth:
    """One camera frame's people: ``pids`` (N,), ``tlwh`` (N, 4) 0-based pixel boxes (not
    clipped), ``visibility`` (N,), ``world`` (N, 2) ground positions; nearest last."""

    pids: np.ndarray
    tlwh: np.ndarray
    visibility: np.ndarray
    world: np.ndarray


class SyntheticScene:
    """A scene built from a :class:`SceneSpec`: ``cameras``, ``walkers`` and
    ``render(camera_index, frame) -> (uint8 (H, W, 3) RGB image, FrameTruth)`` (1-based frames,
    before JPEG)."""

    def __init__(self, spec: SceneSpec | None = None):
        self.spec = spec or SceneSpec()
        self.cameras = _cameras(self.spec)
        self.walkers = _walkers(self.spec)
        self._sprites = _sprites(self.spec)
        self._luts = [c.lut() for c in self.cameras]
        self._bg = [np.clip(np.round(_background(self.spec, c, k) * 255), 0, 255).astype(np.uint8)
                    for k, c in enumerate(self.cameras)]  # linear (before the camera's response)
        self._bg_out = [_apply_lut(b, lut) for b, lut in zip(self._bg, self._luts, strict=True)]

    def background(self, cam_index: int) -> np.ndarray:
        """The empty view of a camera as rendered (uint8 (H, W, 3), colour response applied)."""
        return self._bg_out[cam_index].copy()

    def render(self, cam_index: int, frame: int) -> tuple[np.ndarray, FrameTruth]:
        spec, cam = self.spec, self.cameras[cam_index]
        t = (frame - 1) / spec.frame_rate
        H, W = cam.height, cam.width
        items = []
        for w in self.walkers:
            st = w.state(t)
            if st is None:
                continue
            pos, heading, dist = st
            feet = np.array([[pos[0], pos[1], 0.0], [pos[0], pos[1], w.height]])
            uv, z = cam.project(feet)
            if z.min() < 0.8:
                continue
            top_v, bot_v = uv[1, 1], uv[0, 1]
            ph = bot_v - top_v  # person height in pixels
            if ph < 4 or ph > 3 * H:
                continue
            s = ph / (_SPRITE_SCALE * SPRITE_H)
            x0 = uv[0, 0] - SPRITE_W * s / 2
            y0 = top_v - (1 - _SPRITE_SCALE) / 2 * SPRITE_H * s
            if x0 > W or x0 + SPRITE_W * s < 0 or y0 > H or y0 + SPRITE_H * s < 0:
                continue
            to_cam = cam.C[:2] - pos
            view = math.atan2(to_cam[1], to_cam[0]) - math.atan2(heading[1], heading[0])
            vbin = int(round(view / (2 * math.pi) * _VIEWS)) % _VIEWS
            sbin = _POSE_OF_PHASE[int(dist / _STRIDE_M * _PHASES / 2) % _PHASES]
            items.append((z[0], w.pid, pos, x0, y0, s, vbin, sbin))
        items.sort(key=lambda it: -it[0])  # far to near
        img = self._bg[cam_index].copy()
        regions = []
        owner = np.full((H, W), -1, np.int32)
        totals, boxes = [], []
        for n, (_, pid, _, x0, y0, s, vbin, sbin) in enumerate(items):
            col, alpha = self._sprites[pid]
            sw, sh = max(1, int(round(SPRITE_W * s))), max(1, int(round(SPRITE_H * s)))
            rgba = _resize(np.concatenate([col[vbin, sbin], alpha[vbin, sbin, ..., None]], -1),
                           sh, sw)
            c, a = rgba[..., :3], rgba[..., 3]
            ix, iy = int(round(x0)), int(round(y0))
            drawn = a > 0.02  # the box covers exactly the pixels drawn
            a, c = a * drawn, c * drawn[..., None]
            solid = a > 0.5
            ys, xs = np.nonzero(drawn)
            if len(ys) == 0:
                boxes.append(np.array([x0, y0, 0.0, 0.0]))
                totals.append(1)
                continue
            boxes.append(np.array([ix + xs.min(), iy + ys.min(), xs.max() - xs.min() + 1,
                                   ys.max() - ys.min() + 1], np.float64))
            totals.append(max(int(solid.sum()), 1))
            # clip the sprite to the image
            sx0, sy0 = max(0, -ix), max(0, -iy)
            sx1, sy1 = min(sw, W - ix), min(sh, H - iy)
            if sx1 <= sx0 or sy1 <= sy0:
                continue
            reg = (slice(iy + sy0, iy + sy1), slice(ix + sx0, ix + sx1))
            a_c = a[sy0:sy1, sx0:sx1, None]
            blend = img[reg] * (1 - a_c) + c[sy0:sy1, sx0:sx1] * 255.0
            img[reg] = np.clip(np.round(blend), 0, 255).astype(np.uint8)
            regions.append(reg)
            owner[reg][solid[sy0:sy1, sx0:sx1]] = n
        counts = np.bincount(owner[owner >= 0], minlength=len(items))
        vis = np.array([counts[n] / totals[n] for n in range(len(items))])
        truth = FrameTruth(
            pids=np.array([it[1] for it in items], np.int64),
            tlwh=np.array(boxes, np.float64).reshape(-1, 4),
            visibility=np.clip(vis, 0, 1) if len(items) else np.zeros(0),
            world=np.array([it[2] for it in items], np.float64).reshape(-1, 2))
        out = self._bg_out[cam_index].copy()  # the camera's response only where people are
        for reg in regions:
            out[reg] = _apply_lut(img[reg], self._luts[cam_index])
        return out, truth

    def detections(self, cam_index: int, frame: int, truth: FrameTruth) -> np.ndarray:
        """(N, 5) left, top, width, height (0-based pixels, clipped to the image), score: the
        :class:`DetectionNoise` model applied to ``truth``, seeded by (seed, camera, frame)."""
        nm, cam = self.spec.detection, self.cameras[cam_index]
        rng = _rng(self.spec.seed, 5, cam_index, frame)
        vis = truth.visibility
        p_miss = nm.miss_base + nm.miss_occluded * (1 - vis) ** 2
        hit = (rng.random(len(vis)) >= p_miss) & (vis >= nm.min_visible)
        tlwh = truth.tlwh[hit].copy()
        size = tlwh[:, [2, 3, 2, 3]]
        tlwh += rng.normal(0.0, nm.jitter, tlwh.shape) * size
        scores = nm.score_base + nm.score_visible * vis[hit]
        scores = scores + rng.normal(0, nm.score_std, int(hit.sum()))
        n_fa = int(rng.poisson(nm.false_alarms))
        if n_fa:  # person-sized boxes standing on random visible ground points
            fa = []
            for _ in range(n_fa):
                u, v = rng.uniform(0, cam.width), rng.uniform(cam.height * 0.3, cam.height)
                ray = np.linalg.inv(cam.K) @ np.array([u, v, 1.0]) @ cam.R
                if ray[2] >= -1e-3:
                    continue
                g = cam.C - cam.C[2] / ray[2] * ray
                uv, _ = cam.project(np.array([[g[0], g[1], 0.0], [g[0], g[1], 1.75]]))
                h = uv[0, 1] - uv[1, 1]
                fa.append([uv[0, 0] - 0.2 * h, uv[1, 1], 0.4 * h, h])
            if fa:
                tlwh = np.vstack([tlwh, np.array(fa)])
                scores = np.r_[scores, rng.uniform(*nm.false_alarm_scores, len(fa))]
        x1 = np.clip(tlwh[:, 0], 0, cam.width)
        y1 = np.clip(tlwh[:, 1], 0, cam.height)
        x2 = np.clip(tlwh[:, 0] + tlwh[:, 2], 0, cam.width)
        y2 = np.clip(tlwh[:, 1] + tlwh[:, 3], 0, cam.height)
        keep = ((x2 - x1) >= 2) & ((y2 - y1) >= 4)
        out = np.column_stack([x1, y1, x2 - x1, y2 - y1, np.clip(scores, 0.01, 1.0)])
        return out[keep]

    def topology(self) -> dict[str, Any]:
        """The camera-topology document (:mod:`fedfr.tracking.gallery` format): overlapping
        set-ups link every pair with a window of [-T, T] (a person may be in both views at once);
        the disjoint corridor links neighbours with the gap between their fields of view
        (measured on the corridor's centre line) walked at the spec's speeds, +- 2 s."""
        spec = self.spec
        names = [c.name for c in self.cameras]
        T = spec.frames / spec.frame_rate
        links = []
        if spec.setup == "overlapping":
            for a in names:
                for b in names:
                    if a != b:
                        links.append({"from": a, "to": b, "dtmin": -T, "dtmax": T})
        else:
            spans = [self._centreline_span(c) for c in self.cameras]
            for k in range(len(names) - 1):
                gap = max(spans[k + 1][0] - spans[k][1], 0.0) + 1.5  # + the lane width spread
                lo = max(gap - 3.0, 0.0) / spec.speed[1] - 2.0
                hi = (gap + 3.0) / spec.speed[0] * 1.3 + 2.0
                for a, b in ((names[k], names[k + 1]), (names[k + 1], names[k])):
                    links.append({"from": a, "to": b, "dtmin": round(lo, 3), "dtmax": round(hi, 3)})
        return {"cameras": names, "links": links, "time_unit": "s"}

    def _centreline_span(self, cam: Camera) -> tuple[float, float]:
        xs = np.linspace(-5, _SPACING * self.spec.num_cameras + 5, 2000)
        pts = np.column_stack([xs, np.full_like(xs, 3.0), np.zeros_like(xs)])
        uv, z = cam.project(pts)
        ok = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] < cam.height)
        return (float(xs[ok].min()), float(xs[ok].max())) if ok.any() else (0.0, 0.0)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """float (H0, W0, C) -> (h, w, C), bilinear at pixel centres (edges clamped), box-averaged
    first by the integer factor when shrinking more than 2x (against aliasing)."""
    h0, w0 = img.shape[:2]
    f = min(h0 // max(h, 1), w0 // max(w, 1))
    if f >= 2:
        img = img[: h0 // f * f, : w0 // f * f].reshape(h0 // f, f, w0 // f, f, -1).mean((1, 3))
        h0, w0 = img.shape[:2]
    ys = np.clip((np.arange(h) + 0.5) * h0 / h - 0.5, 0, h0 - 1)
    xs = np.clip((np.arange(w) + 0.5) * w0 / w - 0.5, 0, w0 - 1)
    y0, x0 = ys.astype(int), xs.astype(int)
    y1, x1 = np.minimum(y0 + 1, h0 - 1), np.minimum(x0 + 1, w0 - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    rows = img[y0] * (1 - wy) + img[y1] * wy
    return (rows[:, x0] * (1 - wx) + rows[:, x1] * wx).astype(np.float32)


def _apply_lut(img: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) through a (3, 256) per-channel look-up table."""
    return np.stack([lut[k][img[..., k]] for k in range(3)], -1)


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def write_scene(spec: SceneSpec | None, out: str | Path) -> Path:
    """Render ``spec`` and write it under ``out`` (see the module docstring); returns ``out``.

    An existing non-empty ``out`` is an error (nothing is overwritten)."""
    spec = spec or SceneSpec()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty; give a new folder for the scene")
    scene = SyntheticScene(spec)
    out.mkdir(parents=True, exist_ok=True)
    aic: list[str] = []
    for ci, cam in enumerate(scene.cameras):
        seq = out / cam.name
        (seq / "img1").mkdir(parents=True)
        (seq / "gt").mkdir()
        (seq / "det").mkdir()
        (seq / "seqinfo.ini").write_text(
            f"[Sequence]\nname={cam.name}\nimDir=img1\nframeRate={spec.frame_rate:g}\n"
            f"seqLength={spec.frames}\nimWidth={cam.width}\nimHeight={cam.height}\nimExt=.jpg\n")
        gt_lines, det_lines = [], []
        for f in range(1, spec.frames + 1):
            img, truth = scene.render(ci, f)
            Image.fromarray(img).save(seq / "img1" / f"{f:06d}.jpg", quality=spec.jpeg_quality)
            order = np.argsort(truth.pids, kind="stable")
            for n in order:
                x, y, w, h = truth.tlwh[n]
                pid = int(truth.pids[n])
                gt_lines.append(f"{f},{pid},{_fmt(x + 1)},{_fmt(y + 1)},{_fmt(w)},{_fmt(h)},1,1,"
                                f"{truth.visibility[n]:.4f}")
                wx, wy = truth.world[n]
                aic.append(f"{ci + 1} {pid} {f} {int(round(x))} {int(round(y))} "
                           f"{int(round(w))} {int(round(h))} {wx:.4f} {wy:.4f}")
            for x, y, w, h, s in scene.detections(ci, f, truth):
                det_lines.append(f"{f},-1,{_fmt(x + 1)},{_fmt(y + 1)},{_fmt(w)},{_fmt(h)},"
                                 f"{s:.4f},-1,-1,-1")
        (seq / "gt" / "gt.txt").write_text("".join(line + "\n" for line in gt_lines))
        (seq / "det" / "det.txt").write_text("".join(line + "\n" for line in det_lines))
    (out / "ground_truth.txt").write_text("".join(line + "\n" for line in aic))
    (out / "topology.json").write_text(json.dumps(scene.topology(), indent=1) + "\n")
    (out / "scene.json").write_text(json.dumps({
        "spec": spec.to_dict(), "cameras": [c.to_dict() for c in scene.cameras],
        "people": [{"pid": w.pid, "height": w.height, "speed": w.speed, "t0": w.t0,
                    "waypoints": w.waypoints.tolist()} for w in scene.walkers],
    }, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m fedfr.tracking.scene OUT [--setup disjoint] [--frames N] ...``"""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m fedfr.tracking.scene",
                                 description="Write a synthetic multi-camera scene.")
    ap.add_argument("out")
    ap.add_argument("--setup", default="overlapping", choices=SETUPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--people", type=int, default=12)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--size", default="640x480", help="WxH")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    spec = SceneSpec(setup=a.setup, seed=a.seed, num_cameras=a.cameras, num_people=a.people,
                     frames=a.frames, frame_rate=a.fps, width=w, height=h)
    print(write_scene(spec, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
