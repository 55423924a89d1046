"""Face alignment: a 5-point similarity transform to the 112 x 112 ArcFace template.

Landmark order (as in IJB-C's ijbc_name_5pts_score.txt and the MS1M / .bin crops): left eye,
right eye, nose tip, left mouth corner, right mouth corner (left/right as seen in the image),
as (x, y) pixel coordinates with (0, 0) the centre of the top-left pixel.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: the standard ArcFace 112 x 112 template (the 96 x 112 template shifted +8 px in x)
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping
    src points onto dst points (Umeyama 1991). src, dst (n, 2), n >= 2 -> (2, 3) matrix M with
    dst ~= M[:, :2] @ src + M[:, 2]."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"similarity_transform: expected two (n>=2, 2) point sets, got "
                         f"{src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("similarity_transform: points must be finite")
    n = src.shape[0]
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc ** 2).sum() / n
    if var_s <= 1e-12:
        raise ValueError("similarity_transform: source points coincide")
    cov = dc.T @ sc / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    r = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / var_s)
    t = mu_d - scale * r @ mu_s
    return np.concatenate([scale * r, t[:, None]], axis=1)


def warp_affine(image: np.ndarray, m: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp an (H, W, 3) uint8 image by the (2, 3) map ``m`` (input pixel -> output pixel, both
    with pixel-centre coordinates) into a (size, size, 3) uint8 image, bilinear, black border."""
    a = np.asarray(m, dtype=np.float64)[:, :2]
    t = np.asarray(m, dtype=np.float64)[:, 2]
    a_inv = np.linalg.inv(a)
    # PIL maps OUTPUT to INPUT in pixel-corner coordinates (centre + 0.5).
    off = -a_inv @ (t + 0.5) + 0.5
    coeffs = (a_inv[0, 0], a_inv[0, 1], off[0], a_inv[1, 0], a_inv[1, 1], off[1])
    pil = Image.fromarray(np.ascontiguousarray(image))
    out = pil.transform((size, size), Image.Transform.AFFINE, coeffs,
                        resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(out, dtype=np.uint8)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """(H, W, 3) uint8 image + (5, 2) landmarks -> aligned (size, size, 3) uint8 face.
    The template is scaled by size / 112 for other sizes."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    m = similarity_transform(lm, ARCFACE_TEMPLATE * (size / 112.0))
    return warp_affine(image, m, size)
