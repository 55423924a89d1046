"""VIPeR reader (Gray et al., PETS 2007): 632 people, one image in each of two cameras.

Layout (torchreid's): ``<root>/viper/VIPeR/{cam_a,cam_b}/*.bmp``; a root holding ``cam_a/`` and
``cam_b/`` itself is accepted too. Parse rule: the i-th file of ``cam_a`` in sorted order and the
i-th of ``cam_b`` are person i (pid = i, 0-based); camid 0 = cam_a, 1 = cam_b. Where the names
carry the person number before an underscore (the release's ``000_45.bmp``), the two numbers of
each pair must agree, else the reader fails naming both files.

Splits: 10 random halves (316 train / 316 test identities); each gives two sub-splits, cam_a ->
cam_b and cam_b -> cam_a, so ``split_id`` runs over 0..19 (split_id 2k and 2k+1 share the same
train identities). torchreid draws the halves with an unseeded ``np.random.shuffle`` on first use
and caches them as JSON; here they are drawn from ``seed`` (see ``files.split_rng``), so the same
seed gives the same splits everywhere.
"""

from __future__ import annotations

from pathlib import Path

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import (
    check_split_id,
    list_files,
    match_torchreid_items,
    need_dir,
    read_torchreid_splits,
    split_rng,
)
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.registry import register_dataset

NUM_SPLITS = 10


def _person_number(path: Path) -> str | None:
    head = path.stem.split("_")[0]
    return head if head.isdigit() else None


def _from_file(base: Path, cam_a: list[Path], cam_b: list[Path], split_file: Path,
               split_id: int) -> ReidSplit:
    split = read_torchreid_splits(split_file, "viper", split_id)
    by_key = {(p.parent.name, p.name): ReidImage(p, i, c)
              for c, cam in enumerate((cam_a, cam_b)) for i, p in enumerate(cam)}
    parts = [match_torchreid_items(split.get(k, []), by_key, f"{split_file} split {split_id} {k}")
             for k in ("train", "query", "gallery")]
    meta = {"split_id": split_id, "split_file": str(split_file), "protocol": "single-shot"}
    return ReidSplit("viper", base, *parts, meta)


@register_dataset("viper")
def read_viper(root: Path, split_id: int = 0, seed: int = 0,
               split_file: str | Path | None = None) -> ReidSplit:
    """One of VIPeR's 20 sub-splits (``split_id`` 0..19), drawn from ``seed``, or taken from a
    torchreid ``splits.json`` (``split_file``)."""
    check_split_id("viper", split_id, 2 * NUM_SPLITS)
    base = root / "viper" / "VIPeR"
    for cand in (base, root / "VIPeR", root):
        if (cand / "cam_a").is_dir():
            base = cand
            break
    cam_a = list_files(need_dir(base / "cam_a", "VIPeR camera A images (*.bmp)"), (".bmp",))
    cam_b = list_files(need_dir(base / "cam_b", "VIPeR camera B images (*.bmp)"), (".bmp",))
    if len(cam_a) != len(cam_b) or not cam_a:
        raise DataFormatError(f"{base}: cam_a has {len(cam_a)} and cam_b {len(cam_b)} .bmp images "
                              f"(expected the same non-zero number, one per person)")
    for a, b in zip(cam_a, cam_b, strict=True):
        na, nb = _person_number(a), _person_number(b)
        if na is not None and nb is not None and int(na) != int(nb):
            raise DataFormatError(f"{b}: pairs with {a} by sorted order but names person {nb}, "
                                  f"not {na} (expected matching person numbers)")
    num = len(cam_a)
    if split_file is not None:
        return _from_file(base, cam_a, cam_b, Path(split_file), split_id)
    rng = split_rng(seed, "viper")
    for _ in range(split_id // 2 + 1):
        order = rng.permutation(num)
    train_ids, test_ids = sorted(order[: num // 2]), sorted(order[num // 2:])
    train = [ReidImage(p, int(i), c) for i in train_ids for c, p in ((0, cam_a[i]), (1, cam_b[i]))]
    test_a = [ReidImage(cam_a[i], int(i), 0) for i in test_ids]
    test_b = [ReidImage(cam_b[i], int(i), 1) for i in test_ids]
    query, gallery = (test_a, test_b) if split_id % 2 == 0 else (test_b, test_a)
    meta = {"split_id": split_id, "seed": seed, "protocol": "single-shot",
            "direction": "cam_a->cam_b" if split_id % 2 == 0 else "cam_b->cam_a"}
    return ReidSplit("viper", base, train, query, gallery, meta)
