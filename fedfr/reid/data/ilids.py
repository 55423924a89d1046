"""QMUL iLIDS reader (Zheng et al., BMVC 2009): 476 images of 119 people from airport cameras.

Layout (torchreid's): ``<root>/ilids/i-LIDS_Pedestrian/Persons/*.jpg``; a root holding
``Persons/`` or the images themselves is accepted too. File name ``0001001.jpg``: pid =
``int(name[:4])``, image number = ``int(name[4:7])``. The release gives no camera labels;
torchreid uses ``image number - 1`` as the "camid", and so do we (it only has to differ between
a query and its gallery image, which it always does). torchreid also asserts 476 images / 119
identities; we record the counts in ``meta`` instead, so that subsets read too.

Splits: 10 random splits; ``int(0.5 * #ids)`` train identities (59 of 119) with all their
images; for each test identity two distinct images drawn at random, the first the query, the
second the gallery image (60 / 60). torchreid draws them with Python's unseeded ``random``;
here from ``seed``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import (
    check_split_id,
    list_files,
    parse_name,
    read_torchreid_splits,
    split_rng,
)
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.registry import register_dataset

NUM_SPLITS = 10
NAME = re.compile(r"(\d{4})(\d{3})\.jpg$", re.IGNORECASE)


@register_dataset("ilids")
def read_ilids(root: Path, split_id: int = 0, seed: int = 0,
               split_file: str | Path | None = None) -> ReidSplit:
    """One of QMUL-iLIDS's 10 random splits, drawn from ``seed`` or taken from a torchreid
    ``splits.json`` (``split_file``: lists of image names)."""
    check_split_id("ilids", split_id, NUM_SPLITS)
    cands = [root / "ilids" / "i-LIDS_Pedestrian" / "Persons", root / "i-LIDS_Pedestrian" /
             "Persons", root / "Persons", root]
    folder = next((c for c in cands if c.is_dir() and list_files(c, (".jpg",))), None)
    if folder is None:
        raise DataFormatError(f"{root}: missing folder (expected ilids/i-LIDS_Pedestrian/Persons/"
                              f" with images named PPPPNNN.jpg)")
    by_pid: dict[int, list[ReidImage]] = defaultdict(list)
    for path in list_files(folder, (".jpg",)):
        m = parse_name(NAME, path, "PPPPNNN.jpg: 4-digit person, 3-digit image number")
        by_pid[int(m.group(1))].append(ReidImage(path, int(m.group(1)), int(m.group(2)) - 1))
    pids = sorted(by_pid)
    few = [p for p in pids if len(by_pid[p]) < 2]
    if few:
        raise DataFormatError(f"{folder}: person {few[0]:04d} has {len(by_pid[few[0]])} image "
                              f"(expected at least 2 per person)")
    if split_file is not None:
        split = read_torchreid_splits(split_file, "ilids", split_id)
        by_name = {r.path.name: r for recs in by_pid.values() for r in recs}
        parts = []
        for part in ("train", "query", "gallery"):
            missing = [n for n in split.get(part, []) if n not in by_name]
            if missing:
                raise DataFormatError(f"{split_file} split {split_id} {part}: {missing[0]} is not "
                                      f"in {folder}")
            parts.append([by_name[n] for n in split[part]])
        meta = {"split_id": split_id, "split_file": str(split_file), "protocol": "single-shot"}
        return ReidSplit("ilids", folder, *parts, meta)
    rng = split_rng(seed, "ilids")
    num_train = int(len(pids) * 0.5)
    for _ in range(split_id + 1):
        order = rng.permutation(len(pids))
        picks = [rng.choice(len(by_pid[pids[i]]), 2, replace=False) for i in order[num_train:]]
    train = [r for i in sorted(order[:num_train]) for r in by_pid[pids[i]]]
    query, gallery = [], []
    for i, (q, g) in sorted(zip(order[num_train:], picks, strict=True), key=lambda t: t[0]):
        query.append(by_pid[pids[i]][q])
        gallery.append(by_pid[pids[i]][g])
    meta = {"split_id": split_id, "seed": seed, "protocol": "single-shot",
            "images": sum(len(v) for v in by_pid.values()), "ids": len(pids)}
    return ReidSplit("ilids", folder, train, query, gallery, meta)
