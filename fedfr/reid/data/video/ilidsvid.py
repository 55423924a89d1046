"""iLIDS-VID reader (Wang et al., ECCV 2014): 300 people, two cameras, one tracklet each.

Layout (torchreid's)::

    <root>/ilids-vid/i-LIDS-VID/sequences/cam1/<person>/*.png   (and cam2/)
    <root>/ilids-vid/train-test people splits/train_test_splits_ilidsvid.mat   (key ls_set)

``ls_set`` is (10, 300): per split, 1-based indices into the sorted list of cam1 person folders;
the first 150 columns are the test people, the rest the train people (Wang et al.'s protocol,
as torchreid reads it). Train = both cameras' tracklets of the train people; query = the test
people's cam1 tracklets, gallery = their cam2 tracklets. pid = the number in the person folder's
name (``person001`` -> 1), camid 0 = cam1, 1 = cam2. Frames sorted by the last number in their
name (torchreid uses unsorted ``glob`` order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import check_split_id, need_dir
from fedfr.reid.data.records import Tracklet, VideoSplit
from fedfr.reid.data.video.frames import find_dataset_dir, frame_number, list_frames
from fedfr.reid.data.video.mars import read_int_mat
from fedfr.reid.data.video.registry import register_video_dataset

SPLIT_FILE = Path("train-test people splits") / "train_test_splits_ilidsvid.mat"


def person_tracklets(cam_dirs: list[Path], people: list[str]) -> dict[tuple[str, int], Tracklet]:
    """``(person folder, camid) -> Tracklet`` for each person in each camera folder (camid =
    position in ``cam_dirs``); pid = the number in the person folder's name."""
    out = {}
    for camid, cam_dir in enumerate(cam_dirs):
        for person in people:
            folder = need_dir(cam_dir / person, f"the frames of {person} in {cam_dir.name}")
            pid = frame_number(folder)
            out[(person, camid)] = Tracklet(tuple(list_frames(folder, (".png",))), pid, camid)
    return out


def split_parts(tracks: dict[tuple[str, int], Tracklet], train: list[str], test: list[str]
                ) -> tuple[list[Tracklet], list[Tracklet], list[Tracklet]]:
    """Train (both cameras), query (camera 0) and gallery (camera 1) of a two-camera split."""
    tr = [tracks[(p, c)] for p in sorted(train) for c in (0, 1)]
    return tr, [tracks[(p, 0)] for p in sorted(test)], [tracks[(p, 1)] for p in sorted(test)]


@register_video_dataset("ilidsvid")
def read_ilidsvid(root: Path, split_id: int = 0) -> VideoSplit:
    """Split ``split_id`` (0..9) of iLIDS-VID's released 10 splits."""
    base = find_dataset_dir([root / "ilids-vid", root], "i-LIDS-VID/sequences", "iLIDS-VID")
    seq = base / "i-LIDS-VID" / "sequences"
    cams = [need_dir(seq / c, f"iLIDS-VID {c}/<person>/*.png") for c in ("cam1", "cam2")]
    people = sorted(p.name for p in cams[0].iterdir() if p.is_dir())
    other = sorted(p.name for p in cams[1].iterdir() if p.is_dir())
    if people != other:
        diff = sorted(set(people) ^ set(other))[:3]
        raise DataFormatError(f"{seq}: cam1 and cam2 hold different people (e.g. {diff}; "
                              f"expected the same person folders in both)")
    ls_set = read_int_mat(base / SPLIT_FILE, "ls_set", None)
    if ls_set.ndim != 2 or ls_set.shape[1] % 2:
        raise DataFormatError(f"{base / SPLIT_FILE}: ls_set has shape {ls_set.shape} "
                              f"(expected (10, 300))")
    check_split_id("ilidsvid", split_id, ls_set.shape[0])
    row = ls_set[split_id]
    if row.min() < 1 or row.max() > len(people) or len(np.unique(row)) != row.size:
        raise DataFormatError(f"{base / SPLIT_FILE}: split {split_id} holds indices outside "
                              f"1..{len(people)} or repeats (expected distinct 1-based indices)")
    half = row.size // 2
    test = [people[i - 1] for i in row[:half].tolist()]
    train = [people[i - 1] for i in row[half:].tolist()]
    tracks = person_tracklets(cams, sorted(set(test) | set(train)))
    tr, q, g = split_parts(tracks, train, test)
    return VideoSplit("ilidsvid", base, tr, q, g, {"split_id": split_id, "protocol": "ilidsvid"})
