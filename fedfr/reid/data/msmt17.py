"""MSMT17 reader (Wei et al., CVPR 2018; released on request only).

Layout (torchreid's): ``<root>/msmt17/MSMT17_V1/{train,test}/`` or
``<root>/msmt17/MSMT17_V2/{mask_train_v2,mask_test_v2}/`` (V1 is taken when both exist), with
``list_train.txt``, ``list_val.txt``, ``list_query.txt`` and ``list_gallery.txt`` beside them.
Line format ``<relpath> <pid>``, e.g. ``0000/0000_000_01_0303morning_0015_0.jpg 0``; the train
and val lists are relative to the train folder, query and gallery to the test folder. camid =
``int(relpath.split('_')[2]) - 1`` (15 cameras, 0..14). pids are the list's own numbers (train
and test both start at 0: they are different people; only query against gallery is compared).
``list_val`` is added to train only with ``combineall=True`` (torchreid's rule; the conventional
protocol trains on ``list_train`` alone, 30248 images). Full set: 32621 (train + val) / 11659 /
82161.
"""

from __future__ import annotations

from pathlib import Path

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import check_range, need_dir, need_file
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.registry import register_dataset

VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}


def read_list(list_path: Path, image_dir: Path) -> list[ReidImage]:
    """Records of one MSMT17 list file, in file order; every line is checked."""
    need_file(list_path, "an MSMT17 list of '<relpath> <pid>' lines")
    out = []
    with open(list_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            fields = text.split()
            where = f"{list_path}:{lineno}"
            if len(fields) != 2:
                raise DataFormatError(f"{where}: expected '<relpath> <pid>', got {text!r}")
            rel, pid_text = fields
            try:
                pid = int(pid_text)
                camid = int(rel.split("_")[2]) - 1
            except (ValueError, IndexError):
                raise DataFormatError(
                    f"{where}: expected '<pid>/<pid>_<idx>_<cam>_... <pid>' with integer pid and "
                    f"camera, got {text!r}") from None
            check_range(Path(where), "camera", camid + 1, 1, 15)
            check_range(Path(where), "person id", pid, 0, 10**6)
            out.append(ReidImage(image_dir / rel, pid, camid))
    return out


@register_dataset("msmt17")
def read_msmt17(root: Path, combineall: bool = False) -> ReidSplit:
    """MSMT17 V1 or V2 from its list files."""
    base = None
    for dataset_dir in (root / "msmt17", root):
        for version in VERSIONS:
            if (dataset_dir / version).is_dir():
                base = dataset_dir / version
                break
        if base is not None:
            break
    if base is None:
        raise DataFormatError(f"{root}: missing folder (expected msmt17/MSMT17_V1 or "
                              f"msmt17/MSMT17_V2 under it)")
    train_sub, test_sub = VERSIONS[base.name]
    train_dir = need_dir(base / train_sub, f"the MSMT17 train images ({train_sub}/)")
    test_dir = need_dir(base / test_sub, f"the MSMT17 test images ({test_sub}/)")
    train = read_list(base / "list_train.txt", train_dir)
    val = read_list(base / "list_val.txt", train_dir)
    query = read_list(base / "list_query.txt", test_dir)
    gallery = read_list(base / "list_gallery.txt", test_dir)
    if combineall:
        train = train + val
    meta = {"version": base.name, "protocol": "market1501", "combineall": combineall,
            "val-images": len(val)}
    return ReidSplit("msmt17", base, train, query, gallery, meta)
