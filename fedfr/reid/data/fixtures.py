"""Tiny re-ID datasets written in the exact on-disk layouts of the real ones, for tests.

Each writer puts a few identities of small images (identity-coloured, 16 x 8 by default) under
``root`` where the matching reader looks (torchreid's folder names) and returns the dataset
folder. The .mat files are written with ``scipy.io.savemat`` and, for ``cuhk-03.mat`` (MATLAB
v7.3), with h5py.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

SIZE = (16, 8)  # H, W


def tiny_image(path: Path, key: int, size: tuple[int, int] = SIZE) -> Path:
    """Write a small image whose colour depends on ``key``; format from the suffix."""
    from PIL import Image

    rng = np.random.default_rng(abs(key))
    arr = np.clip(rng.integers(0, 256, 3)[None, None, :] + rng.integers(-20, 20, (*size, 3)),
                  0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[path.suffix.lower()]
    Image.fromarray(arr).save(path, format=fmt)
    return path


def write_market(root: Path, train: Iterable[tuple[int, int]], query: Iterable[tuple[int, int]],
                 gallery: Iterable[tuple[int, int]], *, inner: str | None = "Market-1501-v15.09.15",
                 dataset_dir: str = "market1501", duke_names: bool = False) -> Path:
    """(pid, camera 1-based) pairs per part; pid -1 writes Market's ``-1_c1s1_...`` junk name.
    ``inner=None`` writes the flat legacy layout. Returns the folder holding the three parts."""
    base = root / dataset_dir / inner if inner else root / dataset_dir
    parts = {"bounding_box_train": train, "query": query, "bounding_box_test": gallery}
    for sub, items in parts.items():
        for k, (pid, cam) in enumerate(items):
            pid_s = "-1" if pid == -1 else f"{pid:04d}"
            name = (f"{pid_s}_c{cam}_f{k:07d}.jpg" if duke_names
                    else f"{pid_s}_c{cam}s1_{k:06d}_01.jpg")
            tiny_image(base / sub / name, pid * 10 + cam)
    return base


def write_msmt17(root: Path, version: str = "MSMT17_V1", ids: int = 3,
                 cams: tuple[int, ...] = (1, 12)) -> Path:
    """MSMT17 folders and list files; ``ids`` people per list (train/val share, test starts at 0
    again as in the release), one image per camera each. Returns the version folder."""
    train_sub, test_sub = {"MSMT17_V1": ("train", "test"),
                           "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}[version]
    base = root / "msmt17" / version
    lists = {"list_train.txt": (train_sub, 0), "list_val.txt": (train_sub, 1),
             "list_query.txt": (test_sub, 0), "list_gallery.txt": (test_sub, 1)}
    for list_name, (sub, shot) in lists.items():
        lines = []
        for pid in range(ids):
            for cam in cams:
                rel = f"{pid:04d}/{pid:04d}_{shot:03d}_{cam:02d}_0303morning_{cam:04d}_{shot}.jpg"
                tiny_image(base / sub / rel, pid * 100 + cam + 7 * shot)
                lines.append(f"{rel} {pid}")
        (base / list_name).write_text("\n".join(lines) + "\n")
    return base


def write_viper(root: Path, ids: int = 6) -> Path:
    """``viper/VIPeR/cam_a|cam_b/NNN_angle.bmp``; person numbers skip (as the release does)."""
    base = root / "viper" / "VIPeR"
    for i in range(ids):
        tiny_image(base / "cam_a" / f"{3 * i:03d}_45.bmp", i)
        tiny_image(base / "cam_b" / f"{3 * i:03d}_90.bmp", i + 1000)
    return base


def write_ilids(root: Path, ids: int = 6, per_id: int = 4) -> Path:
    """``ilids/i-LIDS_Pedestrian/Persons/PPPPNNN.jpg``."""
    base = root / "ilids" / "i-LIDS_Pedestrian" / "Persons"
    for pid in range(1, ids + 1):
        for n in range(1, per_id + 1):
            tiny_image(base / f"{pid:04d}{n:03d}.jpg", pid * 10 + n)
    return base


def write_prid(root: Path, shared: int = 6, only_a: int = 2, only_b: int = 4) -> Path:
    """``prid2011/prid_2011/single_shot/cam_a|cam_b/person_NNNN.png``: persons 1..shared in both
    views, then ``only_a`` more in A and ``only_b`` more in B."""
    base = root / "prid2011" / "prid_2011" / "single_shot"
    for i in range(1, shared + only_a + 1):
        tiny_image(base / "cam_a" / f"person_{i:04d}.png", i)
    for i in range(1, shared + only_b + 1):
        tiny_image(base / "cam_b" / f"person_{i:04d}.png", i + 1000)
    return base


def write_prid450s(root: Path, ids: int = 6) -> Path:
    """``prid450s/cam_a|cam_b/img_NNNN.png`` plus the release's mask files beside them."""
    base = root / "prid450s"
    for i in range(1, ids + 1):
        for cam, off in (("cam_a", 0), ("cam_b", 1000)):
            tiny_image(base / cam / f"img_{i:04d}.png", i + off)
            tiny_image(base / cam / f"man_img_{i:04d}.png", 7)
    return base


def write_grid(root: Path, ids: int = 6, distractors: int = 3, splits: int = 10) -> Path:
    """``grid/underground_reid/{probe,gallery}/*.jpeg`` + ``features_and_partitions.mat``: persons
    1..ids in both folders, ``distractors`` pid-0 gallery images; partition k trains on half of
    the persons (rotating)."""
    from scipy.io import savemat

    base = root / "grid" / "underground_reid"
    for pid in range(1, ids + 1):
        cam_p, cam_g = 1 + pid % 8, 1 + (pid + 3) % 8
        tiny_image(base / "probe" / f"{pid:04d}_{cam_p}_25004_107_32_130.jpeg", pid)
        tiny_image(base / "gallery" / f"{pid:04d}_{cam_g}_25005_100_30_128.jpeg", pid + 500)
    for k in range(distractors):
        tiny_image(base / "gallery" / f"0000_{1 + k % 8}_{30000 + k}_90_30_120.jpeg", 900 + k)
    cells = np.empty((1, splits), dtype=object)
    for s in range(splits):
        train = sorted((np.arange(ids // 2) + s) % ids + 1)
        cells[0, s] = {"ind_probe": np.zeros((1, 1)), "ind_gallery": np.zeros((1, 1)),
                       "idx_train": np.array(train, dtype=float)[None, :]}
    savemat(base / "features_and_partitions.mat", {"trainIdxAll": cells})
    return base


def cuhk03_people(pairs: int = 2, persons: int = 4) -> list[tuple[int, int, list[int]]]:
    """(pair, person, image numbers 1..10) of the tiny CUHK03: 2 images per view, and the last
    person of each pair has only its first view's images plus one of the second."""
    out = []
    for pair in range(1, pairs + 1):
        for person in range(1, persons + 1):
            imgs = [1, 2, 6, 7] if person < persons else [1, 2, 6]
            out.append((pair, person, imgs))
    return out


def write_cuhk03_mat(root: Path, pairs: int = 2, persons: int = 4, testsets: int = 20) -> Path:
    """``cuhk03/cuhk03_release/cuhk-03.mat`` as MATLAB v7.3 writes it (HDF5 references, data
    stored transposed, empty cells as 2-element uint64 arrays). Test set k holds persons
    ``1 + k % persons`` and ``persons`` of every pair."""
    import h5py

    path = root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    people = cuhk03_people(pairs, persons)
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        n = 0

        def put(arr: np.ndarray):
            nonlocal n
            n += 1
            return refs.create_dataset(f"r{n}", data=arr).ref

        empty = None
        for kind, shift in (("detected", 0), ("labeled", 50)):
            pair_refs = np.empty((1, pairs), dtype=h5py.ref_dtype)
            for pair in range(1, pairs + 1):
                cell = np.empty((10, persons), dtype=h5py.ref_dtype)  # stored transposed
                for (pp, person, imgs) in people:
                    if pp != pair:
                        continue
                    for img_no in range(1, 11):
                        if img_no in imgs:
                            rng = np.random.default_rng(pair * 1000 + person * 10 + shift)
                            hwc = np.clip(rng.integers(0, 256, 3)[None, None, :]
                                          + rng.integers(-9, 9, (12, 6, 3)), 0, 255)
                            cell[img_no - 1, person - 1] = put(hwc.astype(np.uint8).T)
                        else:
                            if empty is None:
                                empty = put(np.zeros(2, dtype=np.uint64))
                            cell[img_no - 1, person - 1] = empty
                pair_refs[0, pair - 1] = put(cell)
            f.create_dataset(kind, data=pair_refs)
        test_refs = np.empty((1, testsets), dtype=h5py.ref_dtype)
        for k in range(testsets):
            rows = [(pair, p) for pair in range(1, pairs + 1) for p in (1 + k % persons, persons)]
            test_refs[0, k] = put(np.array(rows, dtype=float).T)
        f.create_dataset("testsets", data=test_refs)
    return path


def write_cuhk03_images(root: Path, kind: str = "detected", pairs: int = 2,
                        persons: int = 4) -> Path:
    """``cuhk03/images_{kind}/{pair}_{person:03d}_{view}_{img:02d}.png`` as torchreid extracts."""
    base = root / "cuhk03" / f"images_{kind}"
    for pair, person, imgs in cuhk03_people(pairs, persons):
        for img_no in imgs:
            view = 1 if img_no <= 5 else 2
            tiny_image(base / f"{pair}_{person:03d}_{view}_{img_no:02d}.png",
                       pair * 1000 + person * 10 + img_no)
    return base


def write_cuhk03_new_protocol(root: Path, kind: str = "detected", pairs: int = 2,
                              persons: int = 4) -> Path:
    """``cuhk03/cuhk03_new_protocol_config_{kind}.mat``: pair 1 trains, the rest test; the
    first image of each test person is the query, the others the gallery (1-based indices,
    labels numbered over all persons)."""
    from scipy.io import savemat

    names, labels, train, query, gallery = [], [], [], [], []
    for label, (pair, person, imgs) in enumerate(cuhk03_people(pairs, persons), 1):
        for j, img_no in enumerate(imgs):
            view = 1 if img_no <= 5 else 2
            names.append(f"{pair}_{person:03d}_{view}_{img_no:02d}.png")
            labels.append(label)
            idx = len(names)
            (train if pair == 1 else query if j == 0 else gallery).append(idx)
    filelist = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        filelist[i, 0] = n
    path = root / "cuhk03" / f"cuhk03_new_protocol_config_{kind}.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    col = lambda a: np.array(a, dtype=float)[:, None]  # noqa: E731
    savemat(path, {"filelist": filelist, "labels": col(labels), "train_idx": col(train),
                   "query_idx": col(query), "gallery_idx": col(gallery)})
    return path
