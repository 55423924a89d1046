"""Tiny video re-ID datasets written in the exact on-disk layouts of the real ones, for tests
(frames are small identity-coloured images; .mat files through ``scipy.io.savemat``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedfr.reid.data.fixtures import tiny_image


def mars_name(pid: int, cam: int, tracklet: int, frame: int) -> str:
    """MARS frame name, e.g. ``0001C1T0001F001.jpg`` (``00-1`` for junk pid -1)."""
    p = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{p}C{cam}T{tracklet:04d}F{frame:03d}.jpg"


def write_mars_info(base: Path, names: dict[str, list[str]], rows: dict[str, np.ndarray],
                    query_rows: Sequence[int], clean_rows: np.ndarray | None = None) -> None:
    """MARS's ``info/`` files: ``{part}_name.txt`` and ``tracks_{part}_info.mat`` for part in
    train / test (rows (N, 4): start, end 1-based into the names, pid, camera 1-based),
    ``query_IDX.mat`` (from 0-based ``query_rows``) and, if given, ``clean_tracks_test_info.mat``
    (rows (N, 6))."""
    import scipy.io as sio

    info = base / "info"
    info.mkdir(parents=True, exist_ok=True)
    for part in ("train", "test"):
        (info / f"{part}_name.txt").write_text("".join(n + "\n" for n in names[part]))
        sio.savemat(str(info / f"tracks_{part}_info.mat"),
                    {f"track_{part}_info": np.asarray(rows[part], np.float64).reshape(-1, 4)})
    sio.savemat(str(info / "query_IDX.mat"),
                {"query_IDX": np.asarray(query_rows, np.float64)[None, :] + 1})
    if clean_rows is not None:
        sio.savemat(str(info / "clean_tracks_test_info.mat"),
                    {"track_test_info": np.asarray(clean_rows, np.float64).reshape(-1, 6)})


def write_mars(root: Path, train: Sequence[tuple[int, int, int]],
               test: Sequence[tuple[int, int, int]], query_rows: Sequence[int],
               clean: Sequence[tuple[int, int]] | None = None, reverse_names: bool = False,
               dataset_dir: str = "mars") -> Path:
    """MARS with tracklets ``(pid, camera 1-based, frames)`` per part; ``query_rows`` 0-based
    rows of ``test``; ``clean``: (new_pid, new_ambi) per test row. Names files list each
    tracklet's frames in order (reversed with ``reverse_names``, to test the reader's numeric
    sort). Returns the dataset folder."""
    base = root / dataset_dir
    names: dict[str, list[str]] = {}
    rows: dict[str, np.ndarray] = {}
    for part, tracks in (("train", train), ("test", test)):
        counter: dict[tuple[int, int], int] = {}
        lst, rr = [], []
        for pid, cam, nf in tracks:
            tid = counter[(pid, cam)] = counter.get((pid, cam), 0) + 1
            frames = [mars_name(pid, cam, tid, f + 1) for f in range(nf)]
            for f, name in enumerate(frames):
                tiny_image(base / f"bbox_{part}" / name[:4] / name, pid * 100 + cam * 10 + f % 3)
            rr.append((len(lst) + 1, len(lst) + nf, pid, cam))
            lst += frames[::-1] if reverse_names else frames
        names[part], rows[part] = lst, np.asarray(rr)
    clean_rows = None
    if clean is not None:
        clean_rows = np.concatenate([rows["test"], np.asarray(clean).reshape(-1, 2)], axis=1)
    write_mars_info(base, names, rows, query_rows, clean_rows)
    return base


def write_dukev(root: Path, parts: dict[str, Sequence[tuple[int, int, int]]],
                old_names: bool = False) -> Path:
    """DukeMTMC-VideoReID with tracklets ``(pid, camera 1-based, frames)`` per part (train,
    query, gallery); frame names ``0001_C6_F0001_X00001.jpg`` (``old_names``: ``0001C6F0001X00001
    .jpg``)."""
    base = root / "dukemtmc-vidreid" / "DukeMTMC-VideoReID"
    for part, tracks in parts.items():
        count: dict[int, int] = {}
        for pid, cam, nf in tracks:
            count[pid] = count.get(pid, 0) + 1
            tdir = base / part / f"{pid:04d}" / f"{count[pid]:04d}"
            for f in range(nf):
                name = (f"{pid:04d}C{cam}F{f + 1:04d}X{f:05d}.jpg" if old_names
                        else f"{pid:04d}_C{cam}_F{f + 1:04d}_X{f:05d}.jpg")
                tiny_image(tdir / name, pid * 10 + cam)
    return base


def write_ilidsvid(root: Path, people: int = 6, frames: int = 4, splits: int = 10,
                   seed: int = 0) -> Path:
    """iLIDS-VID: ``people`` person folders (person001, person003, ...: the real numbering has
    gaps) in cam1 and cam2 with unpadded frame numbers 8..8+frames-1 (so that a lexicographic
    sort would be wrong), and the splits .mat (``ls_set``, 1-based indices, first half test)."""
    import scipy.io as sio

    base = root / "ilids-vid"
    seq = base / "i-LIDS-VID" / "sequences"
    for i in range(people):
        pname = f"person{2 * i + 1:03d}"
        for c in (1, 2):
            for f in range(frames):
                tiny_image(seq / f"cam{c}" / pname / f"cam{c}_{pname}_{8 + f}.png",
                           i * 10 + c)
    rng = np.random.default_rng(seed)
    ls = np.stack([rng.permutation(people) + 1 for _ in range(splits)]).astype(np.float64)
    sdir = base / "train-test people splits"
    sdir.mkdir(parents=True, exist_ok=True)
    sio.savemat(str(sdir / "train_test_splits_ilidsvid.mat"), {"ls_set": ls})
    return base


def write_prid2011(root: Path, frames_a: dict[int, int], frames_b: dict[int, int],
                   splits: list[dict[str, list[str]]] | None = None) -> Path:
    """PRID2011 multi-shot: person number -> frame count per camera (frames ``0001.png``...);
    ``splits`` writes torchreid's ``splits_prid2011.json`` beside ``prid_2011/``."""
    base = root / "prid2011" / "prid_2011"
    for cam, people in (("cam_a", frames_a), ("cam_b", frames_b)):
        for pid, nf in people.items():
            for f in range(nf):
                tiny_image(base / "multi_shot" / cam / f"person_{pid:04d}" / f"{f + 1:04d}.png",
                           pid * 10 + len(cam))
    if splits is not None:
        (base.parent / "splits_prid2011.json").write_text(json.dumps(splits))
    return base
