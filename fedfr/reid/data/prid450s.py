"""PRID 450S reader (Roth et al., PR 2014): 450 people, one image in each of two cameras.

Layout (torchreid's ``prid450s``): ``<root>/prid450s/{cam_a,cam_b}/img_NNNN.png``; a root holding
``cam_a/`` and ``cam_b/`` itself is accepted too. Only ``img_*.png`` are read (the release's
segmentation masks beside them are ignored). pid = NNNN; camid 0 = cam_a, 1 = cam_b. Every
person must appear in both views.

Splits: 10 random halves (225 train / 225 test people). ``protocol='both'`` (default, torchreid's):
query = gallery = both views of the test people, so each query's one valid match is its other
view (same-id-same-camera gallery items are discarded by the evaluation). ``protocol='a-to-b'``:
query = cam_a, gallery = cam_b, as most papers report. torchreid draws the halves with an
unseeded ``np.random.shuffle`` over 0-based positions but compares them with the 1-based file
numbers, so its splits never put person 450 in train and have 224 or 225 train people; here the
halves are drawn over the persons themselves from ``seed``.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data.files import (
    check_split_id,
    list_files,
    match_torchreid_items,
    need_dir,
    parse_name,
    read_torchreid_splits,
    split_rng,
)
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.registry import register_dataset

NUM_SPLITS = 10
NAME = re.compile(r"img_(\d+)\.png$")


def _images(folder: Path) -> dict[int, Path]:
    return {int(parse_name(NAME, p, "img_NNNN.png").group(1)): p
            for p in list_files(folder, (".png",)) if p.name.startswith("img_")}


@register_dataset("prid450s")
def read_prid450s(root: Path, split_id: int = 0, seed: int = 0, protocol: str = "both",
                  split_file: str | Path | None = None) -> ReidSplit:
    """One of PRID 450S's 10 random splits, drawn from ``seed`` or taken from a torchreid
    ``splits.json`` (``split_file``; its train part decides, ``protocol`` still applies)."""
    check_split_id("prid450s", split_id, NUM_SPLITS)
    if protocol not in ("both", "a-to-b"):
        raise ConfigError(f"prid450s: protocol {protocol!r} (expected 'both' or 'a-to-b')")
    base = root / "prid450s"
    if not (base / "cam_a").is_dir() and (root / "cam_a").is_dir():
        base = root
    cam_a = _images(need_dir(base / "cam_a", "PRID 450S camera A images (img_NNNN.png)"))
    cam_b = _images(need_dir(base / "cam_b", "PRID 450S camera B images (img_NNNN.png)"))
    for pid in sorted(set(cam_a) ^ set(cam_b)):
        have, miss = ("cam_a", "cam_b") if pid in cam_a else ("cam_b", "cam_a")
        raise DataFormatError(f"{base / miss / f'img_{pid:04d}.png'}: missing (person {pid} is "
                              f"in {have}; expected every person in both views)")
    if not cam_a:
        raise DataFormatError(f"{base / 'cam_a'}: no img_NNNN.png images")
    pids = sorted(cam_a)
    if split_file is not None:
        split = read_torchreid_splits(split_file, "prid450s", split_id)
        by_key = {(p.parent.name, p.name): ReidImage(p, i, c)
                  for c, cam in enumerate((cam_a, cam_b)) for i, p in cam.items()}
        train_recs = match_torchreid_items(split.get("train", []), by_key,
                                           f"{split_file} split {split_id} train")
        train_ids = sorted({r.pid for r in train_recs})
    else:
        rng = split_rng(seed, "prid450s")
        for _ in range(split_id + 1):
            order = rng.permutation(len(pids))
        train_ids = sorted(pids[i] for i in order[: len(pids) // 2])
    test_ids = [i for i in pids if i not in set(train_ids)]
    train = [ReidImage(f[i], i, c) for i in train_ids for c, f in ((0, cam_a), (1, cam_b))]
    test_a = [ReidImage(cam_a[i], i, 0) for i in test_ids]
    test_b = [ReidImage(cam_b[i], i, 1) for i in test_ids]
    if protocol == "both":
        query, gallery = test_a + test_b, test_a + test_b
    else:
        query, gallery = test_a, test_b
    meta = {"split_id": split_id, "seed": None if split_file else seed, "protocol": protocol,
            "split_file": str(split_file) if split_file else None}
    return ReidSplit("prid450s", base, train, query, gallery, meta)
