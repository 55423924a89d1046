"""A deterministic synthetic pedestrian generator: the re-ID workload's embedded default data.

Each *domain* (a named dataset such as ``synth-market``) has its own people and its own cameras.

* A person: skin tone, hair colour and length, body width, head size; a top (colour, second
  colour, pattern: solid, horizontal or vertical stripes, checks, an open jacket over a shirt,
  a chest print; short or long sleeves), a bottom (trousers, shorts or skirt), shoes, an optional
  hat and an optional bag (backpack, handbag or shoulder bag). Jackets, prints and backpacks look
  different from the front, the side and the back, so colour alone does not identify a person
  across views.
* A camera: a dominant walking direction (the view angle it mostly sees) and its spread, the
  person's scale and placement in the box, a colour cast, brightness / contrast / gamma, a light
  gradient, blur, a resolution loss, pixel noise and a background (two-tone scene with
  pillars and clutter).
* A domain: its number of cameras, the spread of its camera styles, its clothing palette
  (summer / winter / mixed), its bag and occlusion rates and its image quality.

Each person walks past 2 or more cameras; each pass (a *visit*) gives a few consecutive frames
(similar view, changing stride), as real tracklet-based sets do. Written in the Market-1501 layout
(``bounding_box_train/``, ``query/``, ``bounding_box_test/``, names ``PPPP_cCsS_FFFFFF_BB.jpg``,
at most 9 cameras so that Market's one-digit camera rule holds), so ``market1501``'s parser
reads it. Train and test identities are disjoint; each test person gives one query per visited
camera and the rest of its images to the gallery; a share of pid-0 distractors join the gallery.

Randomness: person ``p`` depends only on ``(seed, domain, p)`` and camera ``c`` only on
``(seed, domain, c)``, so more people extend a smaller set (the split into train and test is
drawn over all of them). Rendering is numpy float32, vectorised over a batch of images, with soft
(anti-aliased) edges.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedfr.errors import ConfigError
from fedfr.reid.data.market1501 import read_market_layout
from fedfr.reid.data.records import ReidSplit
from fedfr.reid.data.registry import register_dataset

#: Bump when the rendering changes, so that caches of an older generator are not reused.
GENERATOR_VERSION = 1
MAX_CAMS = 9  # Market-1501 names carry the camera as one digit
_SS = 1  # supersampling factor (soft edges already anti-alias)


@dataclass(frozen=True)
class DomainSpec:
    """Everything that determines a synthetic domain's images (its digest keys the cache).

    Lengths are in units of the person's height, angles in radians, intensities in [0, 1].
    Ranges are ``(low, high)`` of uniform draws per camera unless noted.
    """

    name: str
    seed: int = 0
    num_ids: int = 150
    images_per_id: int = 20  # mean images per person (0.6x..1.4x)
    num_cams: int = 6
    max_visits: int = 4  # cameras a person passes (2..max_visits)
    height: int = 64
    width: int = 32
    train_fraction: float = 0.5
    distractor_fraction: float = 0.05  # pid-0 gallery images, as a share of test images
    jpeg_quality: int = 90
    # people
    palette: str = "mixed"  # summer | winter | mixed | dark
    bag_prob: float = 0.5
    hat_prob: float = 0.1
    # cameras
    view_spread: tuple[float, float] = (0.3, 0.8)  # std of the view angle around the camera's
    person_scale: tuple[float, float] = (0.80, 0.95)  # person height / box height
    cast: float = 0.15  # std of the log colour gain per channel
    domain_cast: tuple[float, float, float] = (0.0, 0.0, 0.0)  # log gain shared by all cameras
    brightness: tuple[float, float] = (-0.08, 0.08)
    contrast: tuple[float, float] = (0.8, 1.15)
    gamma: tuple[float, float] = (0.85, 1.2)
    light_grad: float = 0.25  # max relative light change across the box
    blur: tuple[float, float] = (0.2, 0.8)  # gaussian sigma, output pixels
    lowres_prob: float = 0.15  # chance that a camera loses half its resolution
    noise: tuple[float, float] = (0.01, 0.03)
    bg_dark: tuple[float, float] = (0.25, 0.7)  # background level
    bg_tint: float = 0.06
    occlusion_prob: float = 0.15
    misalign: float = 0.04  # std of the box shift
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, goes into the digest

    def digest(self) -> str:
        """sha256 of the spec and :data:`GENERATOR_VERSION`."""
        d = dataclasses.asdict(self)
        d["generator_version"] = GENERATOR_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


#: Named domains: client-like sets (market, duke, msmt, cuhk), unseen-like sets (viper, ilids,
#: grid, prid) and a public pre-training set. Differences mirror the real sets': Market summer,
#: 6 cameras, bright; Duke winter, 8 cameras, more occlusion; MSMT many cameras and strong light
#: changes; CUHK 2-view pairs with misaligned boxes; VIPeR 2 cameras with large view and colour
#: changes; iLIDS heavy occlusion and luggage; GRID low resolution, dim and blurred; PRID two
#: outdoor cameras with opposite colour casts.
PRESETS: dict[str, dict[str, Any]] = {
    "synth-market": dict(num_cams=6, palette="summer", bag_prob=0.45,
                         domain_cast=(0.03, 0.0, -0.03)),
    "synth-duke": dict(num_cams=8, palette="winter", bag_prob=0.55, occlusion_prob=0.3,
                       bg_dark=(0.2, 0.55), domain_cast=(0.0, 0.02, 0.05), blur=(0.3, 1.0)),
    "synth-msmt": dict(num_cams=9, palette="mixed", max_visits=5, cast=0.2,
                       brightness=(-0.15, 0.12), gamma=(0.7, 1.4), light_grad=0.4),
    "synth-cuhk": dict(num_cams=6, max_visits=2, palette="mixed", misalign=0.08,
                       images_per_id=10, bg_dark=(0.35, 0.6), domain_cast=(-0.03, 0.0, 0.04)),
    "synth-viper": dict(num_cams=2, max_visits=2, images_per_id=4, palette="summer",
                        cast=0.2, view_spread=(0.2, 0.4), person_scale=(0.85, 0.97),
                        lowres_prob=0.2, domain_cast=(0.06, 0.03, -0.05)),
    "synth-ilids": dict(num_cams=4, max_visits=3, images_per_id=6, palette="winter",
                        bag_prob=0.85, occlusion_prob=0.5, bg_dark=(0.3, 0.5)),
    "synth-grid": dict(num_cams=8, max_visits=2, images_per_id=6, palette="dark",
                       blur=(0.6, 1.1), lowres_prob=0.5, brightness=(-0.14, -0.02),
                       noise=(0.02, 0.045), bg_dark=(0.15, 0.35), domain_cast=(0.08, 0.04, -0.1)),
    "synth-prid": dict(num_cams=2, max_visits=2, images_per_id=6, palette="mixed", cast=0.22,
                       person_scale=(0.75, 0.9), domain_cast=(-0.04, 0.05, 0.0)),
    "synth-public": dict(num_cams=6, num_ids=300, palette="mixed", cast=0.15),
}


def make_spec(name_or_spec: str | DomainSpec, **overrides: Any) -> DomainSpec:
    """A DomainSpec from a preset name (or a spec) with ``overrides`` applied."""
    if isinstance(name_or_spec, DomainSpec):
        spec = name_or_spec
    else:
        if name_or_spec not in PRESETS:
            raise ConfigError(f"unknown synthetic domain {name_or_spec!r}; known: "
                              f"{', '.join(sorted(PRESETS))}")
        spec = DomainSpec(name=name_or_spec, **PRESETS[name_or_spec])
    fields = {f.name for f in dataclasses.fields(DomainSpec)}
    for key in overrides:
        if key not in fields:
            raise ConfigError(f"synthetic domain: unknown option {key!r}; accepted: "
                              f"{', '.join(sorted(fields))}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    spec = dataclasses.replace(spec, **overrides)
    if not 1 <= spec.num_cams <= MAX_CAMS:
        raise ConfigError(f"synthetic domain {spec.name}: num_cams {spec.num_cams} "
                          f"(expected 1..{MAX_CAMS}: Market names hold one camera digit)")
    if spec.num_cams < 2:
        raise ConfigError(f"synthetic domain {spec.name}: num_cams must be at least 2")
    if spec.num_ids < 2 or spec.images_per_id < 2:
        raise ConfigError(f"synthetic domain {spec.name}: num_ids and images_per_id must be >= 2")
    if spec.height < 16 or spec.width < 8:
        raise ConfigError(f"synthetic domain {spec.name}: image size {spec.height}x{spec.width} "
                          f"(expected at least 16x8)")
    return spec


# ------------------------------------------------------------------------------------------------
# random streams
def _tag(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _rng(spec: DomainSpec, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed & (2**63 - 1), _tag(spec.name), stream, index])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i],
                    np.float32)


_PALETTES = {  # neutral share, saturation range, value range
    "summer": (0.35, (0.45, 0.95), (0.5, 0.95)),
    "winter": (0.65, (0.3, 0.8), (0.15, 0.6)),
    "mixed": (0.5, (0.35, 0.9), (0.3, 0.9)),
    "dark": (0.6, (0.3, 0.7), (0.1, 0.5)),
}
_HAIR = np.array([(0.05, 0.04, 0.04), (0.2, 0.12, 0.06), (0.42, 0.28, 0.15), (0.8, 0.68, 0.4),
                  (0.55, 0.22, 0.1), (0.6, 0.6, 0.62)], np.float32)


def _colour(rng: np.random.Generator, palette: str) -> np.ndarray:
    neutral, sat, val = _PALETTES[palette]
    if rng.random() < neutral:
        g = rng.uniform(0.05, 0.92)
        return np.clip(g + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32)
    if rng.random() < 0.3:  # denim / khaki family, common bottoms and jackets
        base = np.array([(0.2, 0.3, 0.55), (0.6, 0.52, 0.35)][rng.integers(2)], np.float32)
        return np.clip(base * rng.uniform(0.6, 1.2), 0, 1).astype(np.float32)
    return _hsv(rng.random(), rng.uniform(*sat), rng.uniform(*val))


def _person(spec: DomainSpec, pid: int) -> dict[str, Any]:
    """Appearance of person ``pid`` (1-based; distractors continue the numbering)."""
    rng = _rng(spec, 1, pid)
    pal = spec.palette
    tone = rng.beta(2, 2)
    p: dict[str, Any] = {
        "skin": (np.array([0.95, 0.8, 0.68]) * (1 - tone) + np.array([0.35, 0.22, 0.14]) * tone
                 ).astype(np.float32),
        "hair": _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.15),
        "hair_long": rng.random() < 0.35,
        "shoulder": rng.uniform(0.105, 0.16), "hip": rng.uniform(0.085, 0.125),
        "head": rng.uniform(0.055, 0.068), "leg": rng.uniform(0.032, 0.045),
        "top": _colour(rng, pal), "top2": _colour(rng, pal),
        "pattern": int(rng.choice(6, p=[0.35, 0.15, 0.1, 0.1, 0.15, 0.15])),
        "freq": rng.uniform(3, 7), "phase": rng.uniform(0, 2 * np.pi),
        "long_sleeves": rng.random() < {"summer": 0.3, "winter": 0.9}.get(pal, 0.6),
        "bottom": _colour(rng, pal),
        "bottom_kind": int(rng.choice(3, p=[0.7, 0.18, 0.12] if pal == "summer"
                                      else [0.88, 0.04, 0.08])),
        "shoes": np.clip(rng.uniform(0.02, 0.3) + rng.normal(0, 0.05, 3), 0, 1),
        "bag": int(rng.choice(4, p=[1 - spec.bag_prob, spec.bag_prob * 0.45,
                                    spec.bag_prob * 0.25, spec.bag_prob * 0.3])),
        "bag_colour": _colour(rng, "mixed"), "bag_side": float(rng.choice([-1.0, 1.0])),
        "hat": rng.random() < spec.hat_prob, "hat_colour": _colour(rng, pal),
    }
    if rng.random() < 0.25:  # two-colour tops are often mid/dark over light
        p["top2"] = np.clip(p["top2"] * 0.3 + 0.65, 0, 1).astype(np.float32)
    return p


def _camera(spec: DomainSpec, cam: int) -> dict[str, Any]:
    """Style of camera ``cam`` (0-based)."""
    rng = _rng(spec, 2, cam)
    lvl = rng.uniform(*spec.bg_dark)
    return {
        "view": rng.uniform(0, 2 * np.pi), "spread": rng.uniform(*spec.view_spread),
        "scale": rng.uniform(*spec.person_scale),
        "gain": np.exp(np.asarray(spec.domain_cast) + rng.normal(0, spec.cast, 3)),
        "bright": rng.uniform(*spec.brightness), "contrast": rng.uniform(*spec.contrast),
        "gamma": rng.uniform(*spec.gamma),
        "grad": rng.uniform(-spec.light_grad, spec.light_grad, 2),
        "blur": rng.uniform(*spec.blur), "lowres": rng.random() < spec.lowres_prob,
        "noise": rng.uniform(*spec.noise),
        "bg_top": np.clip(lvl + rng.normal(0, spec.bg_tint, 3), 0, 1),
        "bg_bottom": np.clip(lvl * rng.uniform(0.6, 1.3) + rng.normal(0, spec.bg_tint, 3), 0, 1),
        "horizon": rng.uniform(0.45, 0.8), "pillar_freq": rng.uniform(0.5, 3),
        "pillar_amp": rng.uniform(0.0, 0.12), "clutter": _colour(rng, "mixed"),
    }


# ------------------------------------------------------------------------------------------------
# the image plan: who, where, how
def _plan(spec: DomainSpec) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """One row per image, and each person's part ('train' | 'test' | 'distractor')."""
    split_rng = _rng(spec, 4, 0)
    pids = np.arange(1, spec.num_ids + 1)
    order = split_rng.permutation(pids)
    n_train = int(round(spec.train_fraction * spec.num_ids))
    part = {int(p): ("train" if i < n_train else "test") for i, p in enumerate(order)}
    rows: list[dict[str, Any]] = []
    for pid in pids:
        rng = _rng(spec, 3, int(pid))
        n_vis = int(rng.integers(2, min(spec.max_visits, spec.num_cams) + 1))
        cams = rng.choice(spec.num_cams, n_vis, replace=False)
        n_img = max(2 * n_vis, int(round(spec.images_per_id * rng.uniform(0.6, 1.4))))
        counts = 1 + rng.multinomial(n_img - n_vis, np.full(n_vis, 1.0 / n_vis))
        for cam, cnt in zip(cams, counts, strict=True):
            rows += _visit(spec, rng, int(pid), int(cam), int(cnt))
    n_test = sum(1 for r in rows if part[r["pid"]] == "test")
    n_dis = int(round(spec.distractor_fraction * n_test))
    drng = _rng(spec, 5, 0)
    for k in range(n_dis):  # distractors: one image each of people outside the set
        pid = spec.num_ids + 1 + k
        row = _visit(spec, drng, pid, int(drng.integers(spec.num_cams)), 1)[0]
        row["frame"] = 6 * k  # pid 0 names stay unique: distinct frame numbers
        part[pid] = "distractor"
        rows.append(row)
    return rows, part


def _visit(spec: DomainSpec, rng: np.random.Generator, pid: int, cam: int,
           count: int) -> list[dict[str, Any]]:
    cs = _camera(spec, cam)
    view = cs["view"] + rng.normal(0, cs["spread"]) + (np.pi if rng.random() < 0.3 else 0.0)
    seq, frame0 = int(rng.integers(1, 7)), int(rng.integers(0, 900000))
    stride0, step = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.4)
    dx0, dy0 = rng.normal(0, spec.misalign, 2)
    occluded = rng.random() < spec.occlusion_prob
    occ_kind = int(rng.integers(3))
    out = []
    for k in range(count):
        out.append({
            "pid": pid, "cam": cam, "seq": seq, "frame": frame0 + 6 * k,
            "view": view + rng.normal(0, 0.12), "stride": stride0 + step * k,
            "dx": dx0 + rng.normal(0, 0.015), "dy": dy0 + rng.normal(0, 0.015),
            "scale": cs["scale"] * np.exp(rng.normal(0, 0.04)), "bright": rng.normal(0, 0.03),
            "occ": occluded and rng.random() < 0.8, "occ_kind": occ_kind,
            "occ_a": rng.uniform(0.25, 0.45), "occ_b": rng.uniform(0, 1),
            "clutter_x": rng.uniform(-0.5, 0.5), "noise_seed": int(rng.integers(2**31)),
        })
    return out


# ------------------------------------------------------------------------------------------------
# rendering
def _col(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32)[:, None, None]


def _box(u, v, cu, cv, hu, hv, eps):
    """Soft axis-aligned box mask; all args broadcast to (B, H, W)."""
    a = np.clip(0.5 - (np.abs(u - cu) - hu) / eps, 0, 1)
    b = np.clip(0.5 - (np.abs(v - cv) - hv) / eps, 0, 1)
    return a * b


def _ellipse(u, v, cu, cv, ru, rv, eps):
    d = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2) - 1.0
    return np.clip(0.5 - d * np.minimum(ru, rv) / eps, 0, 1)


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """img (B,H,W,3) <- mask (B,H,W) * colour ((B,3), (B,H,1,3) or (B,H,W,3)), blended in place
    over the rows the mask touches."""
    rows = np.flatnonzero(mask.max(axis=(0, 2)) > 0)
    if rows.size == 0:
        return
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c = colour[:, None, None, :] if colour.ndim == 2 else colour[:, r0:r1]
    sub = img[:, r0:r1]
    sub += mask[:, r0:r1, :, None] * (c - sub)


def _stack(people: list[dict], key: str) -> np.ndarray:
    return np.stack([np.asarray(p[key], np.float32) for p in people])


def _render(spec: DomainSpec, rows: list[dict], people: dict[int, dict],
            cams: list[dict]) -> np.ndarray:
    """uint8 images (B, H, W, 3) for ``rows``."""
    B, H, W = len(rows), spec.height * _SS, spec.width * _SS
    P = [people[r["pid"]] for r in rows]
    C = [cams[r["cam"]] for r in rows]
    g = lambda key: np.array([r[key] for r in rows], np.float32)  # noqa: E731
    pf = lambda key: np.array([float(p[key]) for p in P], np.float32)  # noqa: E731
    col = lambda vals: _col(np.asarray(vals, np.float32))  # noqa: E731

    ys = (np.arange(H, dtype=np.float32) + 0.5) / H
    xs = (np.arange(W, dtype=np.float32) + 0.5) / H  # x in units of the box height
    y, x = ys[None, :, None], xs[None, None, :]
    # background: two-tone scene, pillars, a clutter block
    hz = col([c["horizon"] for c in C])
    top, bot = _stack(C, "bg_top"), _stack(C, "bg_bottom")
    t = np.clip((y - hz) / 0.04 + 0.5, 0, 1)[..., None]
    img = top[:, None, None, :] * (1 - t) + bot[:, None, None, :] * t
    pill = col([c["pillar_amp"] for c in C]) * np.sin(
        2 * np.pi * col([c["pillar_freq"] for c in C]) * x * 2 + col(g("clutter_x")) * 3)
    img = img * (1 + pill[..., None] * (y < hz)[..., None])
    img = np.broadcast_to(img, (B, H, W, 3)).copy()
    eps_img = 1.5 / H
    cx = W / H / 2
    _paint(img, 0.8 * _box(x, y, cx + col(g("clutter_x")) * 0.5, hz - 0.12, 0.08, 0.1, eps_img),
           _stack(C, "clutter"))

    # person frame: u across (units of person height), v from head top (0) to feet (1)
    hp = col(g("scale"))
    top_y = (1 - hp) / 2 + col(g("dy"))
    u = (x - cx - col(g("dx"))) / hp
    v = (y - top_y) / hp
    eps = eps_img / hp
    th = g("view")
    cth, sth = col(np.cos(th)), col(np.sin(th))
    front, back, side = np.maximum(cth, 0), np.maximum(-cth, 0), np.abs(sth)
    wf = 0.6 + 0.4 * np.abs(cth)  # apparent width factor
    stride = g("stride")
    swing = col(np.sin(stride))
    skin, hair = _stack(P, "skin"), _stack(P, "hair")
    sh, hip, head, leg = (col(pf(k)) for k in ("shoulder", "hip", "head", "leg"))

    # long hair behind the shoulders
    long_hair = col(pf("hair_long"))
    _paint(img, long_hair * _box(u, v, 0, 0.16, head * 1.1 * wf, 0.07, eps), hair)
    # legs and shoes
    kind = np.array([p["bottom_kind"] for p in P])
    for sgn in (-1.0, 1.0):
        lu = sgn * (hip * 0.5 * wf) + sgn * swing * 0.07 * side
        lm = _box(u, v, lu, 0.735, leg, 0.215, eps)
        shorts = col(kind == 1)
        leg_col = np.where((v > 0.68)[..., None] & (shorts[..., None] > 0),
                           skin[:, None, None, :], _stack(P, "bottom")[:, None, None, :])
        skirt = col(kind == 2)
        leg_col = np.where((v > 0.72)[..., None] & (skirt[..., None] > 0),
                           skin[:, None, None, :], leg_col)
        _paint(img, lm, leg_col)
        _paint(img, _box(u, v, lu + 0.015 * sth, 0.965, leg * 1.2, 0.03, eps), _stack(P, "shoes"))
    # skirt
    tv_sk = np.clip((v - 0.5) / 0.22, 0, 1)
    _paint(img, col(kind == 2) * _box(u, v, 0, 0.61, (hip + 0.03 * tv_sk) * wf, 0.11, eps),
           _stack(P, "bottom"))
    # backpack seen from the side (behind the body)
    bag = np.array([p["bag"] for p in P])
    bagc = _stack(P, "bag_colour")
    bside = col([p["bag_side"] for p in P])
    _paint(img, col(bag == 1) * side * _box(u, v, -np.sign(sth + 1e-6) * (sh * wf + 0.035), 0.3,
                                             0.04, 0.12, eps), bagc)
    # torso with its pattern
    tv = (v - 0.15) / 0.39
    half = (sh + (hip - sh) * np.clip(tv, 0, 1)) * wf
    coat = col([p["pattern"] == 4 for p in P])
    torso = _box(u, v, 0, 0.345 + 0.07 * coat, 10.0, 0.195 + 0.07 * coat, eps) * np.clip(
        0.5 - (np.abs(u) - half) / eps, 0, 1)
    tu = u / np.maximum(half, 1e-3)
    pat = np.array([p["pattern"] for p in P])
    freq = col(pf("freq"))
    phase = col(pf("phase"))
    k = 3.0
    sec = np.zeros((B, H, W), np.float32)
    sec = np.where(col(pat == 1) > 0,
                   0.5 + 0.5 * np.tanh(k * np.sin(2 * np.pi * freq * tv + phase)), sec)
    sec = np.where(col(pat == 2) > 0,
                   0.5 + 0.5 * np.tanh(k * np.sin(np.pi * freq * 0.5 * tu * wf + phase)), sec)
    sec = np.where(col(pat == 3) > 0, 0.5 + 0.5 * np.tanh(
        k * np.sin(2 * np.pi * freq * tv + phase) * np.sin(np.pi * freq * 0.5 * tu * wf)), sec)
    sec = np.where(col(pat == 4) > 0, front * np.clip(0.5 - (np.abs(tu) - 0.35) * 6, 0, 1)
                   * (tv < 1.0), sec)  # open jacket: the shirt shows from the front only
    sec = np.where(col(pat == 5) > 0, front * _box(tu, tv, 0, 0.35, 0.45, 0.15, 0.1), sec)
    t1, t2 = _stack(P, "top"), _stack(P, "top2")
    top_col = t1[:, None, None, :] * (1 - sec[..., None]) + t2[:, None, None, :] * sec[..., None]
    _paint(img, torso, top_col)
    # long hair over the back
    _paint(img, long_hair * back * _box(u, v, 0, 0.17, head * 1.1, 0.06, eps), hair)
    # arms
    sleeve_end = col([0.5 if p["long_sleeves"] else 0.3 for p in P])
    for sgn in (-1.0, 1.0):
        au = sgn * (sh * wf + 0.02) * np.abs(cth) + sgn * swing * 0.06 * side
        arm = _box(u, v, au, 0.33, 0.03, 0.17, eps)
        arm_col = np.where((v < sleeve_end)[..., None], t1[:, None, None, :],
                           skin[:, None, None, :])
        _paint(img, arm, arm_col)
    # bags in front of the body
    straps = col(bag == 1) * front * (_box(u, v, sh * 0.5 * wf, 0.25, 0.012, 0.1, eps) +
                                      _box(u, v, -sh * 0.5 * wf, 0.25, 0.012, 0.1, eps))
    _paint(img, np.clip(straps, 0, 1), bagc * 0.7)
    _paint(img, col(bag == 1) * back * _box(u, v, 0, 0.3, half * 0.8, 0.12, eps), bagc)
    hb_u = bside * np.sign(cth + 1e-6) * (sh * wf + 0.05) * (0.3 + 0.7 * np.abs(cth))
    _paint(img, col(bag == 2) * _box(u, v, hb_u, 0.53, 0.04, 0.055, eps), bagc)
    diag = np.abs(v - 0.16 - (u * bside + half) * 0.9) < 0.012
    _paint(img, col(bag == 3) * torso * diag * (1 - side * 0.7), bagc * 0.8)
    hip_bag = _box(u, v, bside * np.sign(cth + 1e-6) * half, 0.5, 0.05, 0.05, eps)
    _paint(img, col(bag == 3) * hip_bag, bagc)
    # head, hair, hat
    hm = _ellipse(u, v, 0.015 * sth, 0.075, head * 0.85, head, eps)
    _paint(img, hm, skin)
    hairline = 0.075 + head * (-0.45 + 1.5 * back + 0.4 * side)
    hair_mask = hm * np.clip(0.5 - (v - hairline) / eps, 0, 1)
    side_hair = hm * side * np.clip(0.5 - (u * -np.sign(sth + 1e-6)) / eps, 0, 1) * (v < 0.1)
    _paint(img, np.clip(hair_mask + side_hair, 0, 1), hair)
    hat = col([p["hat"] for p in P])
    _paint(img, hat * _box(u, v, 0, 0.03, head * 0.95, 0.03, eps), _stack(P, "hat_colour"))
    # occluders: a low object, a pole or another person's shoulder
    occ = col(g("occ"))
    ok = np.array([r["occ_kind"] for r in rows])
    a, b = col(g("occ_a")), col(g("occ_b"))
    low = _box(x, y, cx + (b - 0.5) * 0.4, 1 - a * 0.5, 0.4, a * 0.5, eps_img)
    pole = _box(x, y, b * 2 * cx, 0.5, a * 0.15, 0.6, eps_img)
    other = _ellipse(x, y, (b > 0.5) * 2 * cx, 0.75, a * 0.6, 0.45, eps_img)
    om = occ * (col(ok == 0) * low + col(ok == 1) * pole + col(ok == 2) * other)
    occ_col = np.stack([_colour(np.random.default_rng(r["noise_seed"] + 1), "mixed")
                        for r in rows])
    _paint(img, om, occ_col)

    # camera: box-average the supersampling, resolution loss, blur, light, colour, noise
    img = img.reshape(B, spec.height, _SS, spec.width, _SS, 3).mean(axis=(2, 4))
    lr = np.array([c["lowres"] for c in C])
    if lr.any() and spec.height % 2 == 0 and spec.width % 2 == 0:
        small = img[lr].reshape(-1, spec.height // 2, 2, spec.width // 2, 2, 3).mean(axis=(2, 4))
        img[lr] = small.repeat(2, axis=1).repeat(2, axis=2)
    img = _blur(img, np.array([c["blur"] for c in C], np.float32))
    yy = (np.arange(spec.height, dtype=np.float32) / spec.height - 0.5)[None, :, None]
    xx = (np.arange(spec.width, dtype=np.float32) / spec.width - 0.5)[None, None, :]
    grad = _stack(C, "grad")
    light = 1 + grad[:, 0, None, None] * yy + grad[:, 1, None, None] * xx
    img = img * light[..., None] * _stack(C, "gain")[:, None, None, :]
    img = np.clip(img, 0, 1) ** _col([c["gamma"] for c in C])[..., None]
    img = (img - 0.5) * _col([c["contrast"] for c in C])[..., None] + 0.5
    img = img + (_col([c["bright"] for c in C]) + _col(g("bright")))[..., None]
    noise = np.stack([np.random.default_rng(r["noise_seed"]).standard_normal(
        (spec.height, spec.width, 3), dtype=np.float32) for r in rows])
    img = img + noise * _col([c["noise"] for c in C])[..., None]
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def _blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable gaussian blur with a per-image sigma (pixels); edges replicated."""
    r = 3
    offs = np.arange(-r, r + 1, dtype=np.float32)
    k = np.exp(-0.5 * (offs[None, :] / np.maximum(sigma[:, None], 1e-3)) ** 2)
    k /= k.sum(axis=1, keepdims=True)  # (B, 7)
    out = img
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for j in range(2 * r + 1):
            sl = [slice(None)] * 4
            sl[axis] = slice(j, j + n)
            acc += k[:, j, None, None, None] * p[tuple(sl)]
        out = acc
    return out


# ------------------------------------------------------------------------------------------------
# writing and caching
def _file_name(row: dict[str, Any], box: int) -> str:
    pid = 0 if row.get("distractor") else row["pid"]
    return f"{pid:04d}_c{row['cam'] + 1}s{row['seq']}_{row['frame']:06d}_{box:02d}.jpg"


def _assign(spec: DomainSpec, rows: list[dict], part: dict[int, str]) -> list[tuple[str, str]]:
    """(folder, file name) per row: train people to train; per test person and camera one query
    image, the rest to the gallery; distractors (pid 0) to the gallery."""
    rng = _rng(spec, 6, 0)
    out: list[tuple[str, str]] = []
    query_pick: dict[tuple[int, int], int] = {}
    by_visit: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(rows):
        if part[r["pid"]] == "test":
            by_visit.setdefault((r["pid"], r["cam"]), []).append(i)
    for key, idx in sorted(by_visit.items()):
        query_pick[key] = idx[int(rng.integers(len(idx)))]
    for i, r in enumerate(rows):
        kind = part[r["pid"]]
        if kind == "train":
            out.append(("bounding_box_train", _file_name(r, 0)))
        elif kind == "test":
            folder = "query" if query_pick[(r["pid"], r["cam"])] == i else "bounding_box_test"
            out.append((folder, _file_name(r, 0)))
        else:
            out.append(("bounding_box_test", _file_name({**r, "distractor": True}, 0)))
    return out


def write_generated(out: Path, digest: str, what: str,
                    write: Callable[[Path], dict[str, Any]]) -> Path:
    """The folder ``out`` holding generated data with ``digest`` (its ``spec.json`` says so).

    Returned as is when it already holds that digest; an error when it holds anything else (an
    empty folder counts as fresh). Otherwise ``write(tmp)`` fills a temporary sibling and returns
    the other fields of ``spec.json``; the folder is then renamed into place (a concurrent writer
    of the same digest wins harmlessly). ``what`` names the data in the error.
    """
    marker = out / "spec.json"
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder is taken as "write here"
    if out.exists():
        if marker.is_file() and json.loads(marker.read_text()).get("digest") == digest:
            return out
        raise ConfigError(f"{out}: exists and does not hold {what} with "
                          f"digest {digest[:12]} (expected a fresh or matching folder)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        info = {"digest": digest, **write(tmp)}
        (tmp / "spec.json").write_text(json.dumps(info, indent=1, sort_keys=True))
        try:
            os.replace(tmp, out)
        except OSError:
            if not (marker.is_file() and json.loads(marker.read_text()).get("digest") == digest):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def render_domain(name_or_spec: str | DomainSpec, out_root: str | os.PathLike, *,
                  batch: int = 256, **overrides: Any) -> Path:
    """Render a domain into ``out_root`` (Market-1501 layout + ``spec.json``) and return it.

    ``overrides`` are DomainSpec fields (``seed``, ``num_ids``, ``images_per_id``, ``height``,
    ``width``, ...). The folder is written to a temporary sibling and renamed into place; if
    ``out_root`` already holds this spec's images it is returned as is, a different spec there is
    an error.
    """
    from PIL import Image

    spec = make_spec(name_or_spec, **overrides)

    def write(tmp: Path) -> dict[str, Any]:
        rows, part = _plan(spec)
        names = _assign(spec, rows, part)
        people = {pid: _person(spec, pid) for pid in sorted({r["pid"] for r in rows})}
        cams = [_camera(spec, c) for c in range(spec.num_cams)]
        for sub in ("bounding_box_train", "query", "bounding_box_test"):
            (tmp / sub).mkdir()
        for s in range(0, len(rows), batch):
            imgs = _render(spec, rows[s:s + batch], people, cams)
            for img, (folder, name) in zip(imgs, names[s:s + batch], strict=True):
                Image.fromarray(img).save(tmp / folder / name, quality=spec.jpeg_quality)
        return {"generator_version": GENERATOR_VERSION, "spec": dataclasses.asdict(spec),
                "images": len(rows)}

    return write_generated(Path(out_root), spec.digest(), f"synthetic domain {spec.name}", write)


def domain_dir(spec: DomainSpec, cache_dir: str | os.PathLike) -> Path:
    """Cache folder of ``spec``: ``<cache_dir>/<name>-<digest[:16]>``."""
    return Path(cache_dir) / f"{spec.name}-{spec.digest()[:16]}"


def synthetic_dataset(name: str | DomainSpec, cache_dir: str | os.PathLike,
                      **spec: Any) -> ReidSplit:
    """The domain ``name`` (with ``spec`` overrides), rendered into ``cache_dir`` once, read back
    with the Market-1501 parser (cameras 1..num_cams)."""
    s = make_spec(name, **spec)
    folder = render_domain(s, domain_dir(s, cache_dir))
    return read_market_layout(folder, s.name, num_cams=s.num_cams, max_pid=9999, drop_junk=True,
                              meta={"layout": "synthetic", "protocol": "market1501",
                                    "digest": s.digest(), "spec": dataclasses.asdict(s)})


def _register(name: str) -> None:
    def reader(root: Path, seed: int = 0, num_ids: int | None = None,
               images_per_id: int | None = None, height: int | None = None,
               width: int | None = None) -> ReidSplit:
        opts = {k: v for k, v in dict(seed=seed, num_ids=num_ids, images_per_id=images_per_id,
                                     height=height, width=width).items() if v is not None}
        return synthetic_dataset(name, root, **opts)

    reader.__doc__ = f"Synthetic domain {name}, rendered into (and cached under) ``root``."
    register_dataset(name)(reader)


for _name in PRESETS:
    _register(_name)
