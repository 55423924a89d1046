"""DukeMTMC-VideoReID reader (Wu et al., CVPR 2018): 702 train + 702 test identities and 408
distractor identities in the gallery, 8 cameras, manually annotated boxes.

Layout (torchreid's)::

    <root>/dukemtmc-vidreid/DukeMTMC-VideoReID/{train,query,gallery}/<pid4>/<tracklet4>/*.jpg

Frame name ``0001_C6_F0099_X30823.jpg`` (person, camera 1..8, frame, an index) or the older
``0001C6F0099X30823.jpg``. Parse rules: frames sorted by the number after ``F`` (torchreid looks
them up one by one with ``*F%04d*``); the name's person must be the folder's, and one tracklet
holds one camera. The dataset folder itself, or ``root/DukeMTMC-VideoReID``, is accepted too.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import need_dir
from fedfr.reid.data.records import Tracklet, VideoSplit
from fedfr.reid.data.video.frames import find_dataset_dir, list_frames
from fedfr.reid.data.video.registry import register_video_dataset

NAME = re.compile(r"^(\d{4})_?C(\d)_?F(\d+)")
FRAME = re.compile(r"F(\d+)")
PARTS = ("train", "query", "gallery")
NUM_CAMS = 8


def _read_part(folder: Path, min_seq_len: int) -> list[Tracklet]:
    out = []
    for pid_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not pid_dir.name.isdigit():
            raise DataFormatError(f"{pid_dir}: identity folder name is not a number "
                                  f"(expected <pid4>, e.g. 0001)")
        pid = int(pid_dir.name)
        for tdir in sorted(p for p in pid_dir.iterdir() if p.is_dir()):
            frames = list_frames(tdir, (".jpg",), FRAME)
            cams = set()
            for f in frames:
                m = NAME.match(f.name)
                if m is None:
                    raise DataFormatError(f"{f}: frame name does not match the layout (expected "
                                          f"0001_C6_F0099_X30823.jpg or 0001C6F0099X30823.jpg)")
                if int(m.group(1)) != pid:
                    raise DataFormatError(f"{f}: person {m.group(1)} in folder {pid_dir.name}")
                cams.add(int(m.group(2)))
            if len(cams) != 1:
                raise DataFormatError(f"{tdir}: frames from cameras {sorted(cams)} (expected one)")
            cam = cams.pop()
            if not 1 <= cam <= NUM_CAMS:
                raise DataFormatError(f"{tdir}: camera {cam} (expected 1..{NUM_CAMS})")
            if len(frames) >= min_seq_len:
                out.append(Tracklet(tuple(frames), pid, cam - 1))
    return out


@register_video_dataset("dukemtmcvidreid")
def read_dukev(root: Path, min_seq_len: int = 0) -> VideoSplit:
    """DukeMTMC-VideoReID: 2,196 train / 702 query / 2,636 gallery tracklets in the full set;
    ``min_seq_len`` drops shorter tracklets (torchreid's option)."""
    base = find_dataset_dir([root / "dukemtmc-vidreid" / "DukeMTMC-VideoReID",
                             root / "DukeMTMC-VideoReID", root], "query", "DukeMTMC-VideoReID")
    parts = {p: _read_part(need_dir(base / p, f"DukeMTMC-VideoReID {p}/<pid4>/<tracklet>/"),
                           min_seq_len) for p in PARTS}
    return VideoSplit("dukemtmcvidreid", base, parts["train"], parts["query"], parts["gallery"],
                      {"protocol": "dukev", "layout": base.name})
