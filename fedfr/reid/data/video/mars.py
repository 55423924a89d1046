"""MARS reader (Zheng et al., ECCV 2016): 1,261 identities, 6 cameras, 20,478 tracklets.

Layout (torchreid's and the MARS-evaluation kit's)::

    <root>/mars/bbox_train/<pid4>/<name>.jpg      <root>/mars/bbox_test/<pid4>/<name>.jpg
    <root>/mars/info/train_name.txt               one frame name per line
    <root>/mars/info/test_name.txt
    <root>/mars/info/tracks_train_info.mat        key track_train_info, (8298, 4)
    <root>/mars/info/tracks_test_info.mat         key track_test_info, (12180, 4)
    <root>/mars/info/query_IDX.mat                key query_IDX, (1980,), 1-based rows
    <root>/mars/info/clean_tracks_test_info.mat   optional (CF-AAN release), (12180, 6)
    <root>/mars/info/frame_truth.csv              optional (fedfr's synthetic tracklets)

Info columns: start, end (1-based, inclusive rows of the names list), pid, camera (1..6); the
cleaned file adds new_pid, new_ambi. Frame name ``0001C1T0001F001.jpg``: pid ``name[:4]``
(``00-1`` for junk, ``0000`` for distractors), camera ``name[5]``, tracklet ``T0001``, frame
``F001``. The folder may also be ``MARS`` or ``MARS-DL`` (the CF-AAN release), or ``root``.

Parse rules: a tracklet's frames are its rows of the names list, re-ordered by the number after
``F`` (numeric order; the list is lexicographic); every frame's pid and camera must agree with
its info row. Junk tracklets (pid -1) are dropped from train, query and gallery but kept in
``VideoSplit.test``; distractors (pid 0) are kept.

Gallery rules (``gallery=``): ``"torchreid"`` (default; test minus query minus pid -1: 9,330
tracklets), ``"official"`` (every test tracklet with pid >= 0, the queries included: 11,310;
the MARS MATLAB code's gallery, whose junk rule removes the pid -1 and same-id-same-camera
ones), ``"cfaan"`` (test minus query, pid 0 and -1 dropped from query and gallery, as CF-AAN's
``MARS.py``). Whatever the choice, ``VideoSplit.test`` / ``query_index`` hold the whole test set
so that ``fedfr.reid.evaluation.mars`` can apply any protocol.

``clean=True`` reads ``clean_tracks_test_info.mat``: test tracklets get ``pid = new_pid``,
``ambi = new_ambi`` (None when it is <= 0 or equal to new_pid) and ``orig_pid = pid``; the
gallery rules then act on the original pid (CF-AAN drops tracklets by their original pid).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from fedfr.errors import ConfigError, DataFormatError
from fedfr.reid.data.files import lazy_import, need_dir, need_file
from fedfr.reid.data.records import FrameTruth, Tracklet, VideoSplit
from fedfr.reid.data.video.frames import find_dataset_dir
from fedfr.reid.data.video.registry import register_video_dataset

NAME = re.compile(r"^(\d{4}|00-1)C(\d)T(\d+)F(\d+)\.\w+$")
GALLERY_RULES = ("torchreid", "official", "cfaan")
NUM_CAMS = 6
TRUTH_FILE = "frame_truth.csv"
TRUTH_COLUMNS = ("name", "true_pid", "dx", "dy", "scale", "misaligned", "intruder_pid",
                 "truncated", "occluded")


def _names(path: Path) -> list[str]:
    need_file(path, "one MARS frame name per line")
    names = [ln.strip() for ln in path.read_text().splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataFormatError(f"{path}: empty (expected one frame name per line)")
    return names


def read_int_mat(path: Path, key: str, cols: tuple[int, ...] | None) -> np.ndarray:
    sio = lazy_import("scipy.io", "reading MARS .mat files")
    need_file(path, f"a MATLAB file with key {key!r}")
    try:
        data = sio.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a bad file
        raise DataFormatError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc
    if key not in data:
        found = ", ".join(k for k in data if not k.startswith("__"))
        raise DataFormatError(f"{path}: no key {key!r} (found: {found or 'none'})")
    arr = np.asarray(data[key])
    if cols is not None and (arr.ndim != 2 or arr.shape[1] not in cols):
        raise DataFormatError(f"{path}: {key} has shape {arr.shape} (expected (N, "
                              f"{' or '.join(map(str, cols))}))")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or \
            not np.all(arr == np.round(arr)):
        raise DataFormatError(f"{path}: {key} must hold integers")
    return arr.astype(np.int64)


def _truth(info: Path) -> dict[str, tuple]:
    path = info / TRUTH_FILE
    if not path.is_file():
        return {}
    out: dict[str, tuple] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != TRUTH_COLUMNS:
            raise DataFormatError(f"{path}: columns {reader.fieldnames} (expected "
                                  f"{','.join(TRUTH_COLUMNS)})")
        for i, row in enumerate(reader, start=2):
            try:
                out[row["name"]] = (int(row["true_pid"]), (float(row["dx"]), float(row["dy"]),
                                    float(row["scale"])), row["misaligned"] == "1",
                                    int(row["intruder_pid"]), row["truncated"] == "1",
                                    row["occluded"] == "1")
            except (TypeError, ValueError) as exc:
                raise DataFormatError(f"{path}:{i}: bad value ({exc})") from exc
    return out


def _tracklets(rows: np.ndarray, names: list[str], folder: Path, where: Path,
               truth: dict[str, tuple], clean: bool) -> list[Tracklet]:
    out = []
    n = len(names)
    for r, row in enumerate(rows):
        start, end, pid, cam = (int(v) for v in row[:4])
        if not 1 <= start <= end <= n:
            raise DataFormatError(f"{where}: row {r + 1}: frames {start}..{end} outside the "
                                  f"names list 1..{n}")
        if not 1 <= cam <= NUM_CAMS:
            raise DataFormatError(f"{where}: row {r + 1}: camera {cam} (expected 1..{NUM_CAMS})")
        parsed = []
        for name in names[start - 1:end]:
            m = NAME.match(name)
            if m is None:
                raise DataFormatError(f"{where}: row {r + 1}: frame name {name!r} (expected "
                                      f"PPPPCcTttttFfff.jpg, e.g. 0001C1T0001F001.jpg)")
            name_pid = -1 if m.group(1) == "00-1" else int(m.group(1))
            if name_pid != pid or int(m.group(2)) != cam:
                raise DataFormatError(f"{where}: row {r + 1}: frame {name} is pid "
                                      f"{name_pid} camera {m.group(2)}, the row says pid "
                                      f"{pid} camera {cam}")
            parsed.append((int(m.group(4)), name))
        parsed.sort()
        paths = tuple(folder / name[:4] / name for _, name in parsed)
        ft = None
        if truth:
            rec = [truth.get(name) for _, name in parsed]
            if all(x is not None for x in rec):
                ft = FrameTruth(*(tuple(col) for col in zip(*rec, strict=True)))
        if clean:
            new_pid, ambi = int(row[4]), int(row[5])
            out.append(Tracklet(paths, new_pid, cam - 1,
                                ambi=None if ambi <= 0 or ambi == new_pid else ambi,
                                orig_pid=pid, truth=ft))
        else:
            out.append(Tracklet(paths, pid, cam - 1, truth=ft))
    return out


def _key_pid(t: Tracklet) -> int:
    return t.orig_pid if t.orig_pid is not None else t.pid


@register_video_dataset("mars")
def read_mars(root: Path, gallery: str = "torchreid", clean: bool = False,
              min_seq_len: int = 0) -> VideoSplit:
    """MARS with the gallery rule ``gallery`` (see the module docstring); ``clean`` reads the
    cleaned test labels; ``min_seq_len`` drops shorter train tracklets (torchreid's option)."""
    if gallery not in GALLERY_RULES:
        raise ConfigError(f"mars: gallery={gallery!r} (expected one of {', '.join(GALLERY_RULES)})")
    base = find_dataset_dir([root / "mars", root / "MARS", root / "MARS-DL", root],
                            "info/tracks_test_info.mat", "MARS")
    info = base / "info"
    truth = _truth(info)
    train_rows = read_int_mat(info / "tracks_train_info.mat", "track_train_info", (4,))
    test_file = "clean_tracks_test_info.mat" if clean else "tracks_test_info.mat"
    test_rows = read_int_mat(info / test_file, "track_test_info", (6,) if clean else (4,))
    q_idx = read_int_mat(info / "query_IDX.mat", "query_IDX", None).reshape(-1) - 1
    if q_idx.size and (q_idx.min() < 0 or q_idx.max() >= len(test_rows)):
        raise DataFormatError(f"{info / 'query_IDX.mat'}: query rows outside 1..{len(test_rows)}")
    if len(set(q_idx.tolist())) != q_idx.size:
        raise DataFormatError(f"{info / 'query_IDX.mat'}: repeated query rows")
    train_dir = need_dir(base / "bbox_train", "MARS training frames bbox_train/<pid4>/")
    test_dir = need_dir(base / "bbox_test", "MARS test frames bbox_test/<pid4>/")
    train = _tracklets(train_rows, _names(info / "train_name.txt"), train_dir,
                       info / "tracks_train_info.mat", truth, False)
    train = [t for t in train if t.pid != -1 and len(t) >= min_seq_len]
    test = _tracklets(test_rows, _names(info / "test_name.txt"), test_dir, info / test_file,
                      truth, clean)
    for folder, tracks in ((train_dir, train), (test_dir, test)):
        for pid_dir in sorted({t.paths[0].parent for t in tracks}):
            need_dir(pid_dir, f"the frames of one MARS identity ({folder.name}/<pid4>/)")
    qset = set(q_idx.tolist())
    drop = {-1, 0} if gallery == "cfaan" else {-1}
    query = [test[i] for i in q_idx.tolist() if _key_pid(test[i]) not in drop]
    if gallery == "official":
        gal = [t for t in test if _key_pid(t) != -1]
    else:
        gal = [t for i, t in enumerate(test) if i not in qset and _key_pid(t) not in drop]
    meta = {"gallery": gallery, "clean": clean, "protocol": f"mars-{gallery}",
            "layout": base.name, "synthetic-truth": bool(truth)}
    return VideoSplit("mars", base, train, query, gal, meta, test=test,
                      query_index=q_idx.tolist())
