"""CUHK03 reader (Li et al., CVPR 2014), detected or labeled boxes, new or classic protocol.

Layout (torchreid's), under ``<root>/cuhk03/`` (or ``root`` itself):

* ``cuhk03_release/cuhk-03.mat``: MATLAB v7.3 (HDF5, read with h5py). ``detected`` and
  ``labeled``: 1 x 5 cells (camera pairs) of (persons x 10) cells of H x W x 3 uint8 images
  (images 1-5 from the pair's first view, 6-10 from the second; empty cells where a person has
  fewer images). ``testsets``: 1 x 20 cell of 100 x 2 ``[camera pair, person]`` (1-based) arrays.
* ``cuhk03_new_protocol_config_{detected,labeled}.mat`` (Zhong et al., CVPR 2017; read with
  ``scipy.io.loadmat``): ``filelist`` (image names), ``labels`` (pids), ``train_idx``,
  ``query_idx``, ``gallery_idx`` (1-based indices into ``filelist``): 767 train / 700 test ids.
* ``images_{detected,labeled}/{pair}_{person:03d}_{view}_{image:02d}.png``: the images of the
  .mat written out. torchreid writes them on first use; so do we, atomically (temp folder +
  rename), into ``extract_dir`` (default: the dataset folder). Folders already written by
  torchreid are used as they are.

camid = view - 1 (0/1; the five camera pairs are not told apart, as in torchreid).
New protocol: pid = the config's label. Classic protocol (``classic=True``, ``split_id`` 0..19):
the 100 test persons of ``testsets[split_id]`` form query = gallery (torchreid's convention; it is
meant for the CUHK03 single-gallery-shot metric), the other persons train; pid = ``pair * 1000 +
person``. Needs h5py for ``testsets`` (and for extraction); the new protocol on extracted images
needs only scipy.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fedfr.errors import DataFormatError
from fedfr.reid.data.files import (
    check_split_id,
    lazy_import,
    list_files,
    need_dir,
    need_file,
    parse_name,
)
from fedfr.reid.data.records import ReidImage, ReidSplit
from fedfr.reid.data.registry import register_dataset

NAME = re.compile(r"(\d)_(\d{3})_(\d)_(\d{2})\.png$")
NUM_CLASSIC_SPLITS = 20


def _dataset_dir(root: Path) -> Path:
    for cand in (root / "cuhk03", root):
        if (cand / "cuhk03_release").is_dir() or list(cand.glob("cuhk03_new_protocol_config_*")):
            return cand
    raise DataFormatError(f"{root}: missing folder (expected cuhk03/ holding cuhk03_release/ "
                          f"and cuhk03_new_protocol_config_{{detected,labeled}}.mat)")


def _open_h5(mat_path: Path):
    h5py = lazy_import("h5py", f"reading {mat_path} (MATLAB v7.3)")
    need_file(mat_path, "cuhk-03.mat (MATLAB v7.3 / HDF5)")
    try:
        return h5py.File(mat_path, "r")
    except OSError as exc:
        raise DataFormatError(
            f"{mat_path}: not a readable HDF5 / MATLAB v7.3 file ({exc})") from exc


def extract_images(mat_path: Path, kind: str, out_dir: Path) -> Path:
    """Write the ``kind`` ('detected' | 'labeled') images of cuhk-03.mat as PNGs into
    ``out_dir`` (created atomically). Returns ``out_dir``."""
    from PIL import Image

    with _open_h5(mat_path) as mat:
        if kind not in mat:
            raise DataFormatError(f"{mat_path}: no '{kind}' cell (expected keys detected, "
                                  f"labeled, testsets)")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        try:
            for pair, pair_ref in enumerate(np.ravel(mat[kind][()]), 1):
                cell = mat[pair_ref][()].T  # (persons, 10) references
                if cell.ndim != 2:
                    raise DataFormatError(f"{mat_path}: {kind} camera pair {pair} is not a "
                                          f"persons x 10 cell")
                for person in range(cell.shape[0]):
                    n = 0
                    for img_no, ref in enumerate(cell[person], 1):
                        img = mat[ref][()].T
                        if img.size == 0 or img.ndim < 3:
                            continue  # empty cell: the person has fewer images in this view
                        if img.ndim != 3 or img.shape[2] != 3:
                            raise DataFormatError(
                                f"{mat_path}: {kind} pair {pair} person {person + 1} image "
                                f"{img_no} has shape {img.shape} (expected H x W x 3)")
                        view = 1 if img_no <= 5 else 2
                        name = f"{pair}_{person + 1:03d}_{view}_{img_no:02d}.png"
                        Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(tmp / name)
                        n += 1
                    if n == 0:
                        raise DataFormatError(f"{mat_path}: {kind} pair {pair} person "
                                              f"{person + 1} has no image")
            try:
                os.replace(tmp, out_dir)
            except OSError:
                if not out_dir.is_dir():  # another process may have finished first
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _image_dir(ds: Path, kind: str, extract_dir: Path | None) -> Path:
    out = (extract_dir or ds) / f"images_{kind}"
    if out.is_dir() and any(out.iterdir()):
        return out
    mat_path = ds / "cuhk03_release" / "cuhk-03.mat"
    try:
        return extract_images(mat_path, kind, out)
    except PermissionError as exc:
        raise DataFormatError(f"{out}: cannot write the extracted images ({exc}); pass "
                              f"extract_dir= a writable folder") from exc


def _new_protocol(ds: Path, kind: str, img_dir: Path) -> tuple[list, list, list]:
    sio = lazy_import("scipy.io", "reading the CUHK03 new-protocol .mat")
    path = need_file(ds / f"cuhk03_new_protocol_config_{kind}.mat",
                     "the CUHK03 new-protocol split (filelist, labels, *_idx)")
    try:
        cfg = sio.loadmat(str(path))
        names = [str(np.ravel(x)[0]) for x in cfg["filelist"].ravel()]
        labels = cfg["labels"].ravel().astype(int)
        parts = {k: cfg[f"{k}_idx"].ravel().astype(int) - 1 for k in ("train", "query", "gallery")}
    except Exception as exc:  # scipy raises its own MatReadError too
        raise DataFormatError(f"{path}: expected filelist, labels, train_idx, query_idx, "
                              f"gallery_idx ({type(exc).__name__}: {exc})") from exc
    if len(labels) != len(names):
        raise DataFormatError(f"{path}: {len(names)} file names but {len(labels)} labels")
    out = []
    for part, idx in parts.items():
        if idx.size and (idx.min() < 0 or idx.max() >= len(names)):
            raise DataFormatError(f"{path}: {part}_idx outside 1..{len(names)}")
        recs = []
        for i in idx:
            p = img_dir / names[i]
            m = parse_name(NAME, p, "P_PPP_V_II.png")
            if not p.is_file():
                raise DataFormatError(f"{p}: missing image (listed in {path.name})")
            recs.append(ReidImage(p, int(labels[i]), int(m.group(3)) - 1))
        out.append(recs)
    return out[0], out[1], out[2]


def _classic(ds: Path, img_dir: Path, split_id: int) -> tuple[list, list, list]:
    mat_path = ds / "cuhk03_release" / "cuhk-03.mat"
    with _open_h5(mat_path) as mat:
        try:
            refs = np.ravel(mat["testsets"][()])
            test = mat[refs[split_id]][()].T
        except (KeyError, IndexError, ValueError) as exc:
            raise DataFormatError(f"{mat_path}: expected 'testsets', a cell of "
                                  f"{NUM_CLASSIC_SPLITS} (100 x 2) [pair, person] arrays") from exc
    test_keys = {(int(a), int(b)) for a, b in np.asarray(test).reshape(-1, 2)}
    train, test_recs = [], []
    for p in list_files(img_dir, (".png",)):
        m = parse_name(NAME, p, "P_PPP_V_II.png")
        key = (int(m.group(1)), int(m.group(2)))
        rec = ReidImage(p, key[0] * 1000 + key[1], int(m.group(3)) - 1)
        (test_recs if key in test_keys else train).append(rec)
    return train, test_recs, list(test_recs)


@register_dataset("cuhk03")
def read_cuhk03(root: Path, split_id: int = 0, labeled: bool = False, classic: bool = False,
                extract_dir: str | Path | None = None) -> ReidSplit:
    """CUHK03 detected (default) or ``labeled``; new protocol, or ``classic`` split ``split_id``."""
    kind = "labeled" if labeled else "detected"
    ds = _dataset_dir(root)
    if classic:
        check_split_id("cuhk03 (classic)", split_id, NUM_CLASSIC_SPLITS)
    else:
        check_split_id("cuhk03 (new protocol)", split_id, 1)
    img_dir = need_dir(_image_dir(ds, kind, Path(extract_dir) if extract_dir else None),
                       f"CUHK03 {kind} images")
    if classic:
        train, query, gallery = _classic(ds, img_dir, split_id)
    else:
        train, query, gallery = _new_protocol(ds, kind, img_dir)
    meta = {"split_id": split_id, "boxes": kind,
            "protocol": "cuhk03-classic" if classic else "cuhk03-new"}
    return ReidSplit("cuhk03", ds, train, query, gallery, meta)
