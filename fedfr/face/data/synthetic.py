"""``SyntheticFaces``: a deterministic open-set identity generator standing in for face images.

Every identity is a cartoon face drawn from one template (head, hair, ears, eyes, brows, nose,
mouth, optional beard and glasses) with its own geometry, colours and a low-frequency skin
texture. Every image of an identity adds nuisance scaled by ``difficulty``: a random affine pose
(shift, rotation, scale, squash), background, illumination (brightness, contrast, colour cast, a
directional gradient), pixel noise and, on some images, an occluding rectangle.

Randomness is counter-based: identity ``j`` depends only on ``(seed, j)`` and image ``k`` of it
only on ``(seed, j, k, size, difficulty)``, so a larger dataset extends a smaller one. Canonical
faces are rendered analytically on a coordinate grid at up to twice the output size (soft edges),
then posed with ``grid_sample``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fedfr.errors import ConfigError
from fedfr.face.data.source import FaceSource
from fedfr.face.data.transforms import to_uint8_chw

#: Bump when the rendering changes, so cached images of an older generator are not reused.
GENERATOR_VERSION = 1

_STREAM_IDENTITY = 1
_STREAM_IMAGE = 2
_ZOOM = 1.25  # canonical face -> frame magnification (the head fills most of the image)
#: Nuisance strengths at difficulty 1 (std of normals unless noted; lengths in units of half the
#: image side, intensities in [0, 1]).
_NUISANCE: dict = {
    "rot": 0.08,  # rotation, radians
    "scale": 0.05, "squash": 0.05,  # log scale, log horizontal squash
    "shift": 0.04,  # translation
    "bg": 0.25, "bg_tint": 0.06, "bg_grad": 0.25,  # background level (uniform +-), tint, ramp
    "bright": 0.06, "contrast": 0.1, "cast": 0.04,  # brightness, log contrast, log colour gain
    "light_grad": 0.2,  # directional light ramp across the image
    "occ_prob": 0.3, "occ_half": (0.1, 0.35),  # occluder probability, half-size range (uniform)
    "noise": 0.035,  # pixel noise std
}

_SKIN_LIGHT = (0.96, 0.82, 0.70)
_SKIN_DARK = (0.34, 0.21, 0.13)
_HAIR = ((0.07, 0.06, 0.06), (0.24, 0.14, 0.08), (0.45, 0.30, 0.16), (0.86, 0.72, 0.44),
         (0.62, 0.26, 0.11), (0.66, 0.66, 0.68))
_IRIS = ((0.30, 0.18, 0.08), (0.12, 0.08, 0.05), (0.25, 0.45, 0.75), (0.30, 0.55, 0.30),
         (0.50, 0.55, 0.60))


# ------------------------------------------------------------------------------------------------
# counter-based random numbers
def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _keys(seed: int, stream: int, j: np.ndarray, k: np.ndarray) -> np.ndarray:
    """uint64 key per (seed, stream, j, k)."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    x = np.full(j.shape, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for part in (np.full(j.shape, stream, dtype=np.uint64), j.astype(np.uint64),
                 k.astype(np.uint64)):
        x = _mix64(x * golden + part + golden)
    return x


def _uniform(keys: np.ndarray, n_fields: int) -> np.ndarray:
    """(len(keys), n_fields) float64 uniforms in [0, 1); field f depends only on (key, f)."""
    f = np.arange(1, n_fields + 1, dtype=np.uint64)
    h = _mix64(keys[:, None] ^ _mix64(f * np.uint64(0xD1B54A32D192ED03))[None, :])
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


class _Draws:
    """Hands out columns of a uniform table in a fixed order: one per parameter."""

    def __init__(self, u: np.ndarray):
        self.u, self.col = u, 0

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        c = self.u[:, self.col]
        self.col += 1
        return torch.as_tensor(lo + (hi - lo) * c, dtype=torch.float32)

    def normal(self, std: float = 1.0) -> torch.Tensor:
        u1 = np.clip(self.u[:, self.col], 1e-12, 1.0)
        u2 = self.u[:, self.col + 1]
        self.col += 2
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
        return torch.as_tensor(std * z, dtype=torch.float32)

    def choice(self, table: tuple) -> torch.Tensor:
        t = torch.tensor(table, dtype=torch.float32)
        i = (self.uniform() * len(table)).long().clamp_(max=len(table) - 1)
        return t[i]


# ------------------------------------------------------------------------------------------------
# soft shapes on a coordinate grid; all shapes (n, R, R) masks in [0, 1]
def _col(x: torch.Tensor) -> torch.Tensor:
    """(n,) -> (n, 1, 1) to broadcast against (n, R, R) grids."""
    return x[:, None, None]


def _soft(d: torch.Tensor, eps: float) -> torch.Tensor:
    """Soft inside-mask of a signed distance ``d`` (> 0 inside), edge width ``eps``."""
    return torch.sigmoid(d / eps)


def _ellipse(u, v, cx, cy, rx, ry, eps):
    q = torch.sqrt(((u - _col(cx)) / _col(rx)) ** 2 + ((v - _col(cy)) / _col(ry)) ** 2 + 1e-12)
    return _soft((1.0 - q) * torch.minimum(_col(rx), _col(ry)), eps)


def _paint(img: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Alpha-blend ``colour`` ((n, 3) or (n, 3, R, R)) over ``img`` (n, 3, R, R) where ``mask``.

    In place: returns ``img``.
    """
    if colour.ndim == 2:
        colour = colour[:, :, None, None]
    return img.lerp_(colour.expand_as(img), mask[:, None])


def _identity_params(seed: int, ids: np.ndarray) -> dict[str, torch.Tensor]:
    """Appearance parameters of identities ``ids``: each a tensor with leading dim len(ids)."""
    d = _Draws(_uniform(_keys(seed, _STREAM_IDENTITY, ids, np.zeros_like(ids)), 192))
    p: dict[str, torch.Tensor] = {}
    tone = d.uniform()[:, None]
    light, dark = torch.tensor(_SKIN_LIGHT), torch.tensor(_SKIN_DARK)
    p["skin"] = (light * (1 - tone) + dark * tone + torch.stack(
        [d.normal(0.03) for _ in range(3)], 1)).clamp(0.05, 1.0)
    p["hair"] = (d.choice(_HAIR) + torch.stack([d.normal(0.04) for _ in range(3)], 1)).clamp(0, 1)
    p["iris"] = (d.choice(_IRIS) + torch.stack([d.normal(0.04) for _ in range(3)], 1)).clamp(0, 1)
    # head
    p["a"], p["b"] = d.uniform(0.46, 0.64), d.uniform(0.60, 0.78)
    p["cy"] = d.uniform(0.02, 0.14)
    p["jaw"] = d.uniform(0.0, 0.35)
    # hair
    p["hair_top"] = d.uniform(0.0, 0.25)
    p["hair_wide"] = d.uniform(1.02, 1.22)
    p["hair_len"] = d.uniform(-0.3, 1.0)
    p["hairline"] = d.uniform(0.35, 0.85)
    p["fringe_tilt"] = d.uniform(-0.35, 0.35)
    p["fringe_amp"] = d.uniform(0.0, 0.09)
    p["fringe_freq"] = d.uniform(2.0, 7.0)
    p["fringe_phase"] = d.uniform(0.0, 2 * math.pi)
    # eyes and brows
    p["eye_y"] = d.uniform(0.02, 0.26)
    p["eye_x"] = d.uniform(0.32, 0.50)
    p["eye_rx"] = d.uniform(0.075, 0.14)
    p["eye_ry"] = d.uniform(0.40, 0.75)
    p["iris_r"] = d.uniform(0.75, 1.0)
    p["brow_dy"] = d.uniform(0.07, 0.18)
    p["brow_w"] = d.uniform(1.0, 1.6)
    p["brow_t"] = d.uniform(0.018, 0.055)
    p["brow_tilt"] = d.uniform(-0.3, 0.3)
    # nose, mouth
    p["nose_len"] = d.uniform(0.30, 0.55)
    p["nose_w"] = d.uniform(0.05, 0.13)
    p["nose_shade"] = d.uniform(0.08, 0.25)
    p["mouth_dy"] = d.uniform(0.10, 0.22)
    p["mouth_w"] = d.uniform(0.11, 0.25)
    p["mouth_t"] = d.uniform(0.025, 0.075)
    p["mouth_curve"] = d.uniform(-0.08, 0.10)
    p["lip"] = torch.stack([d.uniform(0.55, 0.85), d.uniform(0.30, 0.50), d.uniform(0.30, 0.50)], 1)
    # extras
    p["ear"] = d.uniform(0.6, 1.2)
    p["beard"] = (d.uniform() < 0.25).float() * d.uniform(0.6, 0.95)
    p["glasses"] = (d.uniform() < 0.2).float()
    p["tex_amp"] = d.uniform(0.04, 0.12)
    p["tex"] = torch.stack([d.normal() for _ in range(48)], 1).reshape(-1, 3, 4, 4)
    return p


def _render_identities(p: dict[str, torch.Tensor], res: int) -> torch.Tensor:
    """Canonical faces: (n, 4, res, res) float RGBA in [0, 1] (alpha 0 = background)."""
    n = p["a"].shape[0]
    eps = 1.5 / res
    lin = (torch.arange(res, dtype=torch.float32) + 0.5) * (2.0 / res) - 1.0
    v, u = torch.meshgrid(lin, lin, indexing="ij")
    u, v = u.expand(n, res, res), v.expand(n, res, res)
    zero = torch.zeros(n)
    a, b, cy = p["a"], p["b"], p["cy"]
    skin, hair = p["skin"], p["hair"]

    img = torch.zeros(n, 3, res, res)
    alpha = torch.zeros(n, res, res)
    # back hair: a wide ellipse over the skull plus, for long hair, a band down to hair_len
    top = _ellipse(u, v, zero, cy - p["hair_top"] * 0.5, a * p["hair_wide"],
                   b + p["hair_top"] * 0.5, eps)
    top = top * _soft(_col(cy + 0.2 * b) - v, eps)
    band = (_soft(_col(a * p["hair_wide"]) - u.abs(), eps) * _soft(v - _col(cy), eps)
            * _soft(_col(p["hair_len"]) - v, eps))
    back = torch.maximum(top, band)
    img = _paint(img, back, hair * 0.85)
    alpha = torch.maximum(alpha, back)
    # neck and ears
    neck = _soft(_col(a * 0.42) - u.abs(), eps) * _soft(v - _col(cy), eps)
    img = _paint(img, neck, skin * 0.85)
    alpha = torch.maximum(alpha, neck)
    ear_y = cy - b * p["eye_y"] + 0.08
    for side in (-1.0, 1.0):
        ear = _ellipse(u, v, side * a * 0.98, ear_y, 0.09 * p["ear"], 0.16 * p["ear"], eps)
        img = _paint(img, ear, skin * 0.92)
        alpha = torch.maximum(alpha, ear)
    # head: an ellipse whose lower half narrows towards the chin
    below = ((v - _col(cy)) / _col(b)).clamp(min=0.0)
    half_w = _col(a) * (1.0 - _col(p["jaw"]) * below ** 2)
    q = torch.sqrt((u / half_w) ** 2 + ((v - _col(cy)) / _col(b)) ** 2 + 1e-12)
    head = _soft((1.0 - q) * _col(torch.minimum(a, b)) * 0.8, eps)
    tex = F.interpolate(p["tex"], size=(res, res), mode="bicubic", align_corners=False)
    skin_tex = skin[:, :, None, None] * (1.0 + p["tex_amp"][:, None, None, None] * tex)
    skin_tex = skin_tex.clamp(0, 1)
    img = _paint(img, head, skin_tex)
    alpha = torch.maximum(alpha, head)
    # fringe: hair inside the head above a tilted, wavy hairline
    hl = (_col(cy - b * p["hairline"]) + _col(p["fringe_tilt"]) * u * 0.3
          + _col(p["fringe_amp"]) * torch.sin(_col(p["fringe_freq"]) * u * math.pi
                                              + _col(p["fringe_phase"])))
    img = _paint(img, head * _soft(hl - v, eps), hair)
    # eyes: whites, iris, pupil; brows above
    ey = cy - b * p["eye_y"]
    erx, ery = p["eye_rx"], p["eye_rx"] * p["eye_ry"]
    white = torch.tensor([0.95, 0.95, 0.93]).expand(n, 3)
    for side in (-1.0, 1.0):
        ex = side * a * p["eye_x"]
        eye = _ellipse(u, v, ex, ey, erx, ery, eps)
        img = _paint(img, eye, white)
        iris = eye * _ellipse(u, v, ex, ey, ery * p["iris_r"], ery * p["iris_r"], eps)
        img = _paint(img, iris, p["iris"])
        pupil = eye * _ellipse(u, v, ex, ey, ery * 0.4, ery * 0.4, eps)
        img = _paint(img, pupil, torch.zeros(n, 3) + 0.03)
        by = ey - p["brow_dy"]
        bu = u - _col(ex)
        brow_c = _col(by) - _col(p["brow_tilt"] * side) * bu
        brow = (_soft(_col(erx * p["brow_w"]) - bu.abs(), eps)
                * _soft(_col(p["brow_t"]) - (v - brow_c).abs(), eps))
        img = _paint(img, brow, hair * 0.7)
        if bool(p["glasses"].any()):
            ring_r = erx * 1.5
            rq = torch.sqrt((u - _col(ex)) ** 2 + (v - _col(ey)) ** 2)
            ring = _soft(0.022 - (rq - _col(ring_r)).abs(), eps) * _col(p["glasses"])
            img = _paint(img, ring, torch.zeros(n, 3) + 0.08)
    if bool(p["glasses"].any()):
        bridge_x = a * p["eye_x"] - erx * 1.5
        bridge = (_soft(_col(bridge_x) - u.abs(), eps) * _soft(0.018 - (v - _col(ey)).abs(), eps)
                  * _col(p["glasses"]))
        img = _paint(img, bridge, torch.zeros(n, 3) + 0.08)
    # nose: a shaded ridge and two nostrils
    ny = ey + b * p["nose_len"]
    ridge = (_soft(_col(p["nose_w"] * 0.35) - u.abs(), eps) * _soft(v - _col(ey + 0.06), eps)
             * _soft(_col(ny) - v, eps))
    img = _paint(img, ridge * _col(p["nose_shade"]) * 2.0, skin * 0.6)
    for side in (-1.0, 1.0):
        nostril = _ellipse(u, v, side * p["nose_w"] * 0.6, ny, p["nose_w"] * 0.35,
                           p["nose_w"] * 0.2, eps)
        img = _paint(img, nostril, skin * 0.35)
    # mouth: a curved band
    my = torch.minimum(ny + p["mouth_dy"], cy + 0.78 * b)
    mu = u / _col(p["mouth_w"])
    centre = _col(my) + _col(p["mouth_curve"]) * (mu ** 2 - 0.5)
    mouth = _soft(1.0 - mu.abs(), eps / _col(p["mouth_w"])) * _soft(
        _col(p["mouth_t"] * 0.5) - (v - centre).abs(), eps)
    img = _paint(img, mouth, p["lip"] * skin)
    # beard: hair over the lower face, around the mouth
    beard = head * _soft(v - _col(my - 0.09), eps) * (1.0 - mouth) * _col(p["beard"])
    img = _paint(img, beard, hair)
    return torch.cat([img.clamp(0, 1), alpha[:, None]], 1)


def _image_params(seed: int, j: np.ndarray, k: np.ndarray, difficulty: float
                  ) -> dict[str, torch.Tensor]:
    """Nuisance parameters of images (j, k): each a tensor with leading dim len(j)."""
    d = _Draws(_uniform(_keys(seed, _STREAM_IMAGE, j, k), 64))
    s = float(difficulty)
    p = {
        "rot": d.normal(_NUISANCE["rot"] * s),
        "scale": torch.exp(d.normal(_NUISANCE["scale"] * s)),
        "squash": torch.exp(d.normal(_NUISANCE["squash"] * s)),
        "tx": d.normal(_NUISANCE["shift"] * s), "ty": d.normal(_NUISANCE["shift"] * s),
        "bg": 0.5 + s * (d.uniform(-_NUISANCE["bg"], _NUISANCE["bg"])[:, None]
                         + torch.stack([d.normal(_NUISANCE["bg_tint"]) for _ in range(3)], 1)),
        "bg_grad": d.normal(_NUISANCE["bg_grad"] * s),
        "bright": d.normal(_NUISANCE["bright"] * s),
        "contrast": torch.exp(d.normal(_NUISANCE["contrast"] * s)),
        "cast": torch.exp(torch.stack([d.normal(_NUISANCE["cast"] * s) for _ in range(3)], 1)),
        "grad": d.normal(_NUISANCE["light_grad"] * s), "grad_dir": d.uniform(0.0, 2 * math.pi),
        "occ": (d.uniform() < min(1.0, _NUISANCE["occ_prob"] * s)).float(),
        "occ_x": d.uniform(-0.7, 0.7), "occ_y": d.uniform(-0.7, 0.7),
        "occ_w": d.uniform(*_NUISANCE["occ_half"]), "occ_h": d.uniform(*_NUISANCE["occ_half"]),
        "occ_col": torch.stack([d.uniform() for _ in range(3)], 1),
    }
    # one seed per image for the pixel noise (drawn with torch)
    key = _keys(seed, _STREAM_IMAGE + 1, j, k) >> np.uint64(1)
    p["noise_seed"] = torch.as_tensor(key.astype(np.int64))
    return p


def _render_images(canon: torch.Tensor, per_id: int, p: dict[str, torch.Tensor], size: int,
                   difficulty: float) -> torch.Tensor:
    """Pose and light ``per_id`` images of each canonical face: uint8 (n*per_id, size, size, 3).

    ``canon`` is (n, 4, R, R) RGBA; parameters ``p`` are identity-major (image j*per_id + k).
    """
    n = canon.shape[0]
    m = n * per_id
    cos, sin = torch.cos(p["rot"]), torch.sin(p["rot"])
    sx, sy = 1.0 / (_ZOOM * p["scale"] * p["squash"]), 1.0 / (_ZOOM * p["scale"])
    theta = torch.stack([torch.stack([cos * sx, -sin * sx, p["tx"]], 1),
                         torch.stack([sin * sy, cos * sy, p["ty"]], 1)], 1)  # (m, 2, 3)
    grid = F.affine_grid(theta, [m, 4, size, size], align_corners=False)
    # stack the images of one identity vertically so each canonical face is sampled once
    grid = grid.reshape(n, per_id * size, size, 2)
    out = F.grid_sample(canon, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.reshape(n, 4, per_id, size, size).permute(0, 2, 1, 3, 4).reshape(m, 4, size, size)
    rgb, alpha = out[:, :3], out[:, 3:]
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    y, x = torch.meshgrid(lin, lin, indexing="ij")
    x, y = x[None], y[None]
    bg = p["bg"][:, :, None, None] * (1.0 + 0.5 * _col(p["bg_grad"])[:, None] * x[:, None])
    img = rgb + (1.0 - alpha) * bg
    # illumination: contrast, brightness, directional gradient, colour cast
    ramp = x * _col(torch.cos(p["grad_dir"])) + y * _col(torch.sin(p["grad_dir"]))
    img = (img - 0.5) * p["contrast"][:, None, None, None] + 0.5 + p["bright"][:, None, None, None]
    img = img * (1.0 + _col(p["grad"]) * ramp)[:, None] * p["cast"][:, :, None, None]
    # occlusion: a rectangle of random colour on some images
    occ = (_soft(_col(p["occ_w"]) - (x - _col(p["occ_x"])).abs(), 1.0 / size)
           * _soft(_col(p["occ_h"]) - (y - _col(p["occ_y"])).abs(), 1.0 / size) * _col(p["occ"]))
    img = _paint(img, occ, p["occ_col"])
    if difficulty > 0:
        sigma = _NUISANCE["noise"] * float(difficulty)
        noise = torch.empty(m, 3, size, size)
        gen = torch.Generator()
        for i in range(m):
            gen.manual_seed(int(p["noise_seed"][i]))
            noise[i] = torch.randn((3, size, size), generator=gen)
        img = img + sigma * noise
    img = (img * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return img.permute(0, 2, 3, 1).contiguous()


def render(seed: int, identities: Iterable[int], images_per_identity: int, size: int,
           difficulty: float = 1.0, max_pixels: int = 1 << 22) -> np.ndarray:
    """Render images 0..images_per_identity-1 of each identity: uint8 (n*per_id, size, size, 3).

    Identity-major; rendering runs in chunks of about ``max_pixels`` canonical + output pixels.
    """
    ids = np.asarray(list(identities), dtype=np.int64)
    per_id = int(images_per_identity)
    res = max(size, min(2 * size, 128))  # canonical resolution: 2x (anti-aliasing) up to 128
    out = np.empty((len(ids) * per_id, size, size, 3), dtype=np.uint8)
    chunk = max(1, max_pixels // (res * res + per_id * size * size))  # identities per chunk
    with torch.no_grad():
        for c0 in range(0, len(ids), chunk):
            cid = ids[c0:c0 + chunk]
            canon = _render_identities(_identity_params(seed, cid), res)
            j = np.repeat(cid, per_id)
            k = np.tile(np.arange(per_id, dtype=np.int64), len(cid))
            imgs = _render_images(canon, per_id, _image_params(seed, j, k, difficulty),
                                  size, difficulty)
            out[c0 * per_id:(c0 + len(cid)) * per_id] = imgs.numpy()
    return out


class SyntheticFaces(FaceSource):
    """The embedded default dataset: ``num_identities`` x ``images_per_identity`` synthetic faces.

    ``images``: (N, size, size, 3) uint8 RGB, identity-major (index j*images_per_identity + k);
    ``labels``: (N,) int64 identity j. With ``cache_dir`` the images are stored in and reloaded from
    ``<cache_dir>/synthetic-<digest>.npz``.
    """

    def __init__(self, num_identities: int, images_per_identity: int, size: int = 32,
                 seed: int = 0, difficulty: float = 1.0,
                 cache_dir: str | os.PathLike | None = None):
        for key, val, lo in (("num_identities", num_identities, 1),
                             ("images_per_identity", images_per_identity, 1), ("size", size, 4),
                             ("seed", seed, 0)):
            if not isinstance(val, numbers.Integral) or isinstance(val, bool) or val < lo:
                raise ConfigError(
                    f"SyntheticFaces: '{key}' must be an integer >= {lo}, got {val!r}")
        if seed >= 2**63:
            raise ConfigError(f"SyntheticFaces: 'seed' must be < 2**63, got {seed!r}")
        if (not isinstance(difficulty, numbers.Real) or isinstance(difficulty, bool)
                or not 0.0 <= float(difficulty) <= 10.0):
            raise ConfigError(
                f"SyntheticFaces: 'difficulty' must be a number in [0, 10], got {difficulty!r}")
        self.num_ids, self.per_id = int(num_identities), int(images_per_identity)
        self.size, self.seed, self.difficulty = int(size), int(seed), float(difficulty)
        self.name = f"synthetic-{self.num_ids}x{self.per_id}-s{self.seed}"
        self.identity_names = [f"synthetic-{j}" for j in range(self.num_ids)]
        self.labels = np.repeat(np.arange(self.num_ids, dtype=np.int64), self.per_id)
        self.cache_path: Path | None = None
        if cache_dir is not None:
            self.cache_path = Path(cache_dir) / f"synthetic-{self.digest()}.npz"
        self.images = self._load_or_render()

    def describe(self) -> dict:
        return {"kind": "synthetic", "version": GENERATOR_VERSION, "num_identities": self.num_ids,
                "images_per_identity": self.per_id, "size": self.size, "seed": self.seed,
                "difficulty": self.difficulty, "num_images": self.num_ids * self.per_id}

    def load(self, i: int) -> np.ndarray:
        return self.images[self._check_index(int(i))].copy()

    def load_many(self, indices: Iterable[int], size: int) -> torch.Tensor:
        idx = np.asarray([self._check_index(int(i)) for i in indices], dtype=np.int64)
        batch = self.images[idx]
        if size == self.size:
            return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
        return to_uint8_chw(batch, size)

    # --------------------------------------------------------------------------------------------
    def _render(self) -> np.ndarray:
        return render(self.seed, range(self.num_ids), self.per_id, self.size, self.difficulty)

    def _load_or_render(self) -> np.ndarray:
        path = self.cache_path
        shape = (self.num_ids * self.per_id, self.size, self.size, 3)
        if path is not None and path.exists():
            try:
                with np.load(path) as z:
                    images = z["images"]
                if images.shape == shape and images.dtype == np.uint8:
                    return images
                warnings.warn(f"{path}: cached images have shape {images.shape} {images.dtype}, "
                              f"expected {shape} uint8; re-rendering", stacklevel=3)
            except (OSError, ValueError, KeyError) as exc:
                warnings.warn(f"{path}: unreadable cache ({exc}); re-rendering", stacklevel=3)
        images = self._render()
        if path is not None:
            _atomic_savez(path, images=images, labels=self.labels,
                          describe=np.array(json.dumps(self.describe())))
        return images


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """Write an .npz to a temporary file in the same folder, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

