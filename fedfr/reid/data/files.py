"""File helpers shared by the re-ID readers: folder checks, sorted listings, name parsing, seeded
split draws, lazy optional imports and image verification.

Every failure raises :class:`fedfr.errors.DataFormatError` with one line naming the file or folder
and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedfr.errors import DataFormatError
from fedfr.reid.data.records import ReidImage


def need_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else a DataFormatError saying what was expected there."""
    if not path.is_dir():
        raise DataFormatError(f"{path}: missing folder (expected {what})")
    return path


def need_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a DataFormatError saying what was expected there."""
    if not path.is_file():
        raise DataFormatError(f"{path}: missing file (expected {what})")
    return path


def first_existing(candidates: Sequence[Path], what: str) -> Path:
    """The first of ``candidates`` that is a folder; the error lists every place looked at."""
    for c in candidates:
        if c.is_dir():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise DataFormatError(f"{what}: none of these folders exists: {tried}")


def list_files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Files directly in ``folder`` whose suffix (case-insensitive) is one of ``suffixes``, sorted
    by name (never filesystem order)."""
    suf = {s.lower() for s in suffixes}
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suf),
                  key=lambda p: p.name)


def parse_name(regex: re.Pattern[str], path: Path, expected: str) -> re.Match[str]:
    """Match ``regex`` at the start of ``path.name``; a DataFormatError names the file otherwise."""
    m = regex.match(path.name)
    if m is None:
        raise DataFormatError(f"{path}: file name does not match the layout (expected {expected})")
    return m


def check_range(path: Path, field: str, value: int, lo: int, hi: int) -> int:
    """``value`` if ``lo <= value <= hi``; otherwise a DataFormatError naming file and field."""
    if not lo <= value <= hi:
        raise DataFormatError(f"{path}: {field} {value} outside the dataset's range {lo}..{hi}")
    return value


def split_rng(seed: int, dataset: str) -> np.random.Generator:
    """The generator that draws a multi-split dataset's random splits.

    Seeded by ``(seed, dataset name)`` so that two datasets with the same seed draw independent
    splits; split ``k`` is the ``k``-th draw, so it does not depend on how many splits are asked.
    """
    tag = int.from_bytes(dataset.encode("utf-8")[:8].ljust(8, b"\0"), "little")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed & (2**63 - 1), tag])))


def check_split_id(dataset: str, split_id: int, num_splits: int) -> int:
    """``split_id`` if in ``0..num_splits-1``; else a DataFormatError naming the dataset."""
    if not isinstance(split_id, (int, np.integer)) or not 0 <= split_id < num_splits:
        raise DataFormatError(
            f"{dataset}: split_id {split_id!r} out of range (expected 0..{num_splits - 1})")
    return int(split_id)


def lazy_import(module: str, purpose: str) -> Any:
    """Import an optional package, or a DataFormatError saying which package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = module.split(".")[0]
        raise DataFormatError(
            f"{purpose} needs the '{pkg}' package, which is not installed "
            f"(pip install {pkg})") from exc


def verify_images(records: Iterable[ReidImage]) -> int:
    """Open and fully decode every image; a DataFormatError names the first unreadable one.

    Returns the number of images checked.
    """
    from PIL import Image, UnidentifiedImageError

    n = 0
    for rec in records:
        try:
            with Image.open(rec.path) as im:
                im.load()
                if im.width < 1 or im.height < 1:
                    raise OSError("empty image")
        except FileNotFoundError as exc:
            raise DataFormatError(f"{rec.path}: image file missing") from exc
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DataFormatError(
                f"{rec.path}: unreadable or corrupt image (expected a decodable JPEG/PNG/BMP; "
                f"{exc})") from exc
        n += 1
    return n


def read_torchreid_splits(path: str | Path, dataset: str, split_id: int) -> dict:
    """Split ``split_id`` of a torchreid ``splits*.json`` (the unseeded splits torchreid caches
    beside the data on first use), so that a torchreid user's exact splits can be reproduced."""
    import json

    p = Path(path)
    need_file(p, f"a torchreid {dataset} splits JSON")
    try:
        splits = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"{p}: not a readable JSON list of splits ({exc})") from exc
    if not isinstance(splits, list) or not splits or not isinstance(splits[0], dict):
        raise DataFormatError(f"{p}: expected a JSON list of split objects")
    check_split_id(f"{dataset} ({p.name})", split_id, len(splits))
    return splits[split_id]


def match_torchreid_items(items: list, by_key: dict[tuple[str, str], ReidImage], where: str
                          ) -> list[ReidImage]:
    """Map torchreid ``[path, pid, camid]`` items (paths from the machine that wrote them) onto our
    records by (camera folder, file name)."""
    out = []
    for item in items:
        try:
            p = Path(str(item[0]))
        except (TypeError, IndexError, KeyError) as exc:
            raise DataFormatError(f"{where}: expected [path, pid, camid] items, got {item!r}"
                                  ) from exc
        rec = by_key.get((p.parent.name, p.name))
        if rec is None:
            raise DataFormatError(f"{where}: {p.parent.name}/{p.name} is not in the dataset "
                                  f"folder (expected the same release the splits were made for)")
        out.append(rec)
    return out
