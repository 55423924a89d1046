"""Tiny files in the exact MOTChallenge / video layouts for the tracking tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MOT17_MINI = Path("/work/shared/data/mot/MOT17-mini")
MOTMETRICS_REF = Path("/work/shared/data/mot/motmetrics-reference")


def write_sequence(root: Path, name: str = "SEQ-01", frames: int = 5, width: int = 64,
                   height: int = 48, frame_rate: float = 10, seq_length: int | None = None,
                   det_rows: list[str] | None = None, gt_rows: list[str] | None = None) -> Path:
    """A MOTChallenge sequence folder with ``frames`` JPEG images (frame k is filled with
    value 10*k in the red channel), optional det/det.txt and gt/gt.txt."""
    from PIL import Image

    seq = root / name
    (seq / "img1").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={frame_rate}\n"
        f"seqLength={seq_length or frames}\nimWidth={width}\nimHeight={height}\nimExt=.jpg\n"
    )
    for k in range(1, frames + 1):
        img = np.zeros((height, width, 3), np.uint8)
        img[..., 0] = (10 * k) % 256
        Image.fromarray(img).save(seq / "img1" / f"{k:06d}.jpg", quality=95)
    if det_rows is not None:
        (seq / "det").mkdir()
        (seq / "det" / "det.txt").write_text("\n".join(det_rows) + "\n")
    if gt_rows is not None:
        (seq / "gt").mkdir()
        (seq / "gt" / "gt.txt").write_text("\n".join(gt_rows) + "\n")
    return seq


def write_video(path: Path, frames: int = 12, width: int = 64, height: int = 48,
                rate: int = 25) -> Path:
    """An MPEG-4 file whose frame k (1-based) has mean grey level about 8*k."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(1, frames + 1):
            img = np.full((height, width, 3), 8 * k, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
