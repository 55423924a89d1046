"""GRID reader (Loy et al., CVPR 2009; QMUL underground Re-ID): 250 paired people plus 775
gallery-only distractors, 8 cameras.

Layout (torchreid's): ``<root>/grid/underground_reid/{probe,gallery}/*.jpeg`` and
``<root>/grid/underground_reid/features_and_partitions.mat``; a root holding
``underground_reid/`` or ``probe/`` itself is accepted too. File name
``0001_1_25004_107_32_130.jpeg``: pid = first field (0000 = distractor), camera = second (1..8,
camid = camera - 1).

Splits: the release's fixed 10 partitions, ``trainIdxAll`` in the .mat (read with
``scipy.io.loadmat``): a 1 x 10 cell of structs whose third field holds the 125 training person
numbers (torchreid reads ``trainIdxAll[0][k][0][0][2][0]``; so do we, by position). Train = probe
and gallery images of those people; query = probe images of the other 125; gallery = gallery
images of the other 125 plus the 775 pid-0 distractors (900). No randomness: ``split_id`` 0..9
picks a partition.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import (
    check_range,
    check_split_id,
    lazy_import,
    list_files,
    need_dir,
    need_file,
    parse_name,
)
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.registry import register_dataset

NUM_SPLITS = 10
NAME = re.compile(r"(\d+)_(\d+)_")


def _train_ids(mat_path: Path, split_id: int) -> set[int]:
    sio = lazy_import("scipy.io", f"reading {mat_path}")
    try:
        mat = sio.loadmat(str(mat_path))
        cells = mat["trainIdxAll"][0]
        if len(cells) < split_id + 1:
            raise IndexError(f"{len(cells)} partitions")
        ids = np.asarray(cells[split_id][0][0][2][0]).astype(int).tolist()
    except Exception as exc:  # scipy raises its own MatReadError too
        raise DataFormatError(
            f"{mat_path}: expected 'trainIdxAll', a 1x{NUM_SPLITS} cell of structs whose third "
            f"field lists the training person numbers ({type(exc).__name__}: {exc})") from exc
    return set(ids)


def _read(folder: Path) -> list[ReidImage]:
    out = []
    for p in list_files(folder, (".jpeg",)):
        m = parse_name(NAME, p, "PPPP_C_....jpeg (person, camera 1..8)")
        out.append(ReidImage(p, int(m.group(1)), check_range(p, "camera", int(m.group(2)), 1, 8)
                             - 1))
    return out


@register_dataset("grid")
def read_grid(root: Path, split_id: int = 0) -> ReidSplit:
    """Partition ``split_id`` (0..9) of GRID's fixed partitions."""
    check_split_id("grid", split_id, NUM_SPLITS)
    base = root / "grid" / "underground_reid"
    for cand in (base, root / "underground_reid", root):
        if (cand / "probe").is_dir():
            base = cand
            break
    probe = _read(need_dir(base / "probe", "GRID probe images (*.jpeg)"))
    gallery_all = _read(need_dir(base / "gallery", "GRID gallery images (*.jpeg)"))
    train_ids = _train_ids(need_file(base / "features_and_partitions.mat",
                                     "GRID partitions (trainIdxAll)"), split_id)
    train = [r for r in probe + gallery_all if r.pid in train_ids]
    query = [r for r in probe if r.pid not in train_ids]
    gallery = [r for r in gallery_all if r.pid not in train_ids]
    meta = {"split_id": split_id, "protocol": "single-shot", "distractor_pids": [0]}
    return ReidSplit("grid", base, train, query, gallery, meta)
