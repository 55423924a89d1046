"""fedfr.tracking.train_detector: samples from a MOT-layout sequence, a training step from
scratch, and the checkpoint loading into TorchvisionDetector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedfr.errors import DataFormatError
from fedfr.tracking.train_detector import load_samples, main


def write_seq(root: Path, frames: int = 2, w: int = 96, h: int = 64) -> Path:
    seq = root / "SYN-01"
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname=SYN-01\nimDir=img1\nframeRate=10\nseqLength={frames}\n"
        f"imWidth={w}\nimHeight={h}\nimExt=.jpg\n")
    rows = []
    for f in range(1, frames + 1):
        img = np.full((h, w, 3), 90, np.uint8)
        x = 10 + 20 * f
        img[8:56, x:x + 20] = (200, 40, 40)
        Image.fromarray(img).save(seq / "img1" / f"{f:06d}.jpg")
        rows.append(f"{f},1,{x + 1},9,20,48,1,1,1.0")
        rows.append(f"{f},2,5,5,10,10,0,1,1.0")  # not considered: flag 0
    (seq / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    return seq


def test_load_samples_reads_considered_boxes(tmp_path) -> None:
    seq = write_seq(tmp_path)
    samples = load_samples([seq])
    assert [p.name for p, _ in samples] == ["000001.jpg", "000002.jpg"]
    assert samples[0][1].tolist() == [[30.0, 8.0, 50.0, 56.0]]
    (seq / "gt" / "gt.txt").unlink()
    with pytest.raises(DataFormatError, match="gt.txt"):
        load_samples([seq])


@pytest.mark.slow
def test_two_steps_from_scratch_and_checkpoint_loads(tmp_path) -> None:
    from fedfr.tracking.detection import TorchvisionDetector
    from fedfr.tracking.sources import ImageFolderSource

    seq = write_seq(tmp_path)
    out = tmp_path / "det.pt"
    assert main(["--seq", str(seq), "--out", str(out), "--steps", "2", "--batch", "2"]) == 0
    det = TorchvisionDetector(checkpoint=out)
    frames = list(ImageFolderSource(seq).frames())
    res = det.detect(frames)
    assert len(res) == 2 and all(r.boxes.shape[1] == 4 for r in res)
