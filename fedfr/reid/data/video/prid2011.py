"""PRID2011 multi-shot reader (Hirzer et al., SCIA 2011): 385 people in camera A, 749 in camera
B, persons 1..200 in both.

Layout (torchreid's)::

    <root>/prid2011/prid_2011/multi_shot/{cam_a,cam_b}/person_NNNN/NNNN.png
    <root>/prid2011/splits_prid2011.json     (optional: torchreid's list of {train, test} dirs)

Protocol (the common one after McLaughlin et al.): the people seen by both cameras with at least
``min_frames`` (27) frames in each (178 people in the full set), split in halves; query = the
test people's cam_a tracklets, gallery = their cam_b tracklets. With a splits JSON (``split_file``
or ``splits_prid2011.json`` beside the data) its person lists are used; otherwise 10 splits are
drawn from ``seed``. pid = the person number, camid 0 = cam_a, 1 = cam_b; frames sorted by number.
"""

from __future__ import annotations

from pathlib import Path

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import check_split_id, need_dir, read_torchreid_splits, split_rng
from fedfr.reid.data.records import VideoSplit
from fedfr.reid.data.video.frames import find_dataset_dir, list_frames
from fedfr.reid.data.video.ilidsvid import person_tracklets, split_parts
from fedfr.reid.data.video.registry import register_video_dataset

NUM_SPLITS = 10


@register_video_dataset("prid2011")
def read_prid2011(root: Path, split_id: int = 0, seed: int = 0, min_frames: int = 27,
                  split_file: str | Path | None = None) -> VideoSplit:
    """Split ``split_id`` of PRID2011 multi-shot (see the module docstring)."""
    check_split_id("prid2011", split_id, NUM_SPLITS)
    base = find_dataset_dir([root / "prid2011" / "prid_2011", root / "prid_2011", root],
                            "multi_shot/cam_a", "PRID2011 multi-shot")
    ms = base / "multi_shot"
    cams = [need_dir(ms / c, f"PRID2011 {c}/person_NNNN/*.png") for c in ("cam_a", "cam_b")]
    in_a = {p.name for p in cams[0].iterdir() if p.is_dir()}
    in_b = {p.name for p in cams[1].iterdir() if p.is_dir()}
    sf = Path(split_file) if split_file is not None else base.parent / "splits_prid2011.json"
    if split_file is not None or sf.is_file():
        split = read_torchreid_splits(sf, "prid2011", split_id)
        try:
            train = [Path(str(d)).name for d in split["train"]]
            test = [Path(str(d)).name for d in split["test"]]
        except (KeyError, TypeError) as exc:
            raise DataFormatError(f"{sf}: split {split_id} lacks train / test lists") from exc
        source = str(sf)
    else:
        both = sorted(in_a & in_b)
        people = [p for p in both if min(len(list_frames(c / p, (".png",))) for c in cams)
                  >= min_frames]
        if len(people) < 2:
            raise DataFormatError(f"{ms}: {len(people)} people in both cameras with >= "
                                  f"{min_frames} frames (expected at least 2)")
        rng = split_rng(seed, "prid2011")
        perms = [rng.permutation(len(people)) for _ in range(split_id + 1)]
        order = perms[split_id]
        half = len(people) // 2
        train = [people[i] for i in order[:half]]
        test = [people[i] for i in order[half:2 * half]]
        source = f"seed {seed}"
    for p in train + test:
        if p not in in_a or p not in in_b:
            raise DataFormatError(f"{ms}: {p} is not in both cam_a and cam_b (expected by the "
                                  f"split, {source})")
    tracks = person_tracklets(cams, sorted(set(train) | set(test)))
    tr, q, g = split_parts(tracks, train, test)
    return VideoSplit("prid2011", base, tr, q, g,
                      {"split_id": split_id, "protocol": "prid2011", "split_source": source})
