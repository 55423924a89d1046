"""PRID2011 single-shot reader (Hirzer et al., SCIA 2011): camera A shows 385 people, camera B
749; persons 1..200 appear in both.

Layout (torchreid's): ``<root>/prid2011/prid_2011/single_shot/{cam_a,cam_b}/person_%04d.png``;
a root holding ``single_shot/`` or ``cam_a/``/``cam_b/`` itself is accepted too. camid 0 =
cam_a, 1 = cam_b; pid = the file's number.

Splits: 10 random splits of the ``num_shared`` (200) shared people into halves (100 train / 100
test). Train = both views of the train people; query = cam_a images of the test people; gallery =
their cam_b images plus every cam_b person above ``num_shared`` (549 distractors: gallery 649).
cam_a people above ``num_shared`` are not used. torchreid draws with unseeded ``random.sample``;
here from ``seed``. torchreid builds the distractor names 201..749 without looking; we list
``cam_b`` and fail if a shared person's image is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import (
    check_split_id,
    list_files,
    need_dir,
    parse_name,
    read_torchreid_splits,
    split_rng,
)
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.registry import register_dataset

NUM_SPLITS = 10
NAME = re.compile(r"person_(\d{4})\.png$")


def _by_number(folder: Path) -> dict[int, Path]:
    out = {}
    for path in list_files(folder, (".png",)):
        out[int(parse_name(NAME, path, "person_NNNN.png").group(1))] = path
    return out


@register_dataset("prid")
def read_prid(root: Path, split_id: int = 0, seed: int = 0, num_shared: int = 200,
              split_file: str | Path | None = None) -> ReidSplit:
    """One of PRID2011 single-shot's 10 random splits, drawn from ``seed`` or taken from a
    torchreid ``splits_single_shot.json`` (``split_file``: train / test person lists)."""
    check_split_id("prid", split_id, NUM_SPLITS)
    base = root / "prid2011" / "prid_2011" / "single_shot"
    for cand in (base, root / "prid_2011" / "single_shot", root / "single_shot", root):
        if (cand / "cam_a").is_dir():
            base = cand
            break
    cam_a = _by_number(need_dir(base / "cam_a", "PRID2011 single-shot camera A (person_NNNN.png)"))
    cam_b = _by_number(need_dir(base / "cam_b", "PRID2011 single-shot camera B (person_NNNN.png)"))
    for pid in range(1, num_shared + 1):
        for cam, files in (("cam_a", cam_a), ("cam_b", cam_b)):
            if pid not in files:
                raise DataFormatError(f"{base / cam / f'person_{pid:04d}.png'}: missing (expected "
                                      f"persons 1..{num_shared} in both views)")
    if split_file is not None:
        split = read_torchreid_splits(split_file, "prid", split_id)
        try:
            train_ids = sorted(int(i) for i in split["train"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{split_file} split {split_id}: expected a 'train' list of "
                                  f"person numbers") from exc
        bad = [i for i in train_ids if not 1 <= i <= num_shared]
        if bad:
            raise DataFormatError(f"{split_file} split {split_id}: train person {bad[0]} outside "
                                  f"1..{num_shared}")
    else:
        rng = split_rng(seed, "prid")
        for _ in range(split_id + 1):
            train_ids = sorted(int(i) + 1 for i in rng.choice(num_shared, num_shared // 2,
                                                               replace=False))
    test_ids = [i for i in range(1, num_shared + 1) if i not in set(train_ids)]
    train = [ReidImage(files[i], i, c) for i in train_ids
             for c, files in ((0, cam_a), (1, cam_b))]
    query = [ReidImage(cam_a[i], i, 0) for i in test_ids]
    gallery = [ReidImage(cam_b[i], i, 1) for i in test_ids]
    gallery += [ReidImage(cam_b[i], i, 1) for i in sorted(cam_b) if i > num_shared]
    meta = {"split_id": split_id, "seed": None if split_file else seed,
            "split_file": str(split_file) if split_file else None, "protocol": "single-shot",
            "num_shared": num_shared, "distractor_pids": f">{num_shared}"}
    return ReidSplit("prid", base, train, query, gallery, meta)
