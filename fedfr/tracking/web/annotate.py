"""Drawing boxes and global ids on a frame, and JPEG encoding (Pillow)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# 12 distinct, saturated colours; a global id always gets the same one
PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (170, 110, 40))


def colour(global_id: int) -> tuple[int, int, int]:
    return PALETTE[int(global_id) % len(PALETTE)]


def annotate(image: np.ndarray, boxes: Sequence[tuple[int, int, np.ndarray]],
             title: str = "") -> Image.Image:
    """A copy of ``image`` (uint8 (H, W, 3) RGB) with one rectangle per ``(global id, local id,
    tlwh)`` (pixels), labelled ``G<global>`` in the id's colour, and ``title`` top left."""
    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    for gid, _local, tlwh in boxes:
        x, y, w, h = (float(v) for v in tlwh)
        c = colour(gid)
        draw.rectangle((x, y, x + w, y + h), outline=c, width=2)
        label = f"G{gid}"
        tx, ty = x, max(0.0, y - 12)
        draw.rectangle((tx, ty, tx + 7 * len(label) + 4, ty + 12), fill=c)
        draw.text((tx + 2, ty), label, fill=(0, 0, 0), font=font)
    if title:
        draw.rectangle((0, 0, 7 * len(title) + 8, 14), fill=(0, 0, 0))
        draw.text((4, 1), title, fill=(255, 255, 255), font=font)
    return im


def to_jpeg(im: Image.Image | np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of a PIL image or an RGB uint8 array."""
    if isinstance(im, np.ndarray):
        im = Image.fromarray(im)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()

