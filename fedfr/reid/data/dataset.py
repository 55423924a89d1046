"""Re-ID images from files: ``ReidImageDataset`` over ``ReidImage`` records (PIL loading)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from fedfr.errors import DataFormatError
from fedfr.reid.data.records import ReidImage


def load_image(path: str | Path) -> Image.Image:
    """An image file as an RGB PIL image (fully decoded); DataFormatError naming the file if it
    is missing or not a readable image."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError as exc:
        raise DataFormatError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot decode image ({exc}); expected a JPEG, PNG or "
                              f"BMP file") from exc


class ReidImageDataset(Dataset):
    """Items ``(transform(image), pid, camid)`` for a list of records, in order.

    transform: a callable on the RGB PIL image (None: the PIL image itself). cache: keep each
    transformed item in memory after its first load (only for deterministic transforms such as
    ``ResizeToTensor``; the training engine uses it to decode every file once).
    """

    def __init__(self, records: Sequence[ReidImage],
                 transform: Callable[[Image.Image], Any] | None = None, *,
                 cache: bool = False) -> None:
        self.records = list(records)
        for i, r in enumerate(self.records):
            if not isinstance(r, ReidImage):
                raise TypeError(f"records[{i}]: expected a ReidImage, got {type(r).__name__}")
        self.transform = transform
        self.cache: dict[int, Any] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        r = self.records[index]
        if self.cache is not None and index in self.cache:
            return self.cache[index], r.pid, r.camid
        image = load_image(r.path)
        item = self.transform(image) if self.transform is not None else image
        if self.cache is not None:
            self.cache[index] = item
        return item, r.pid, r.camid

    @property
    def pids(self) -> torch.Tensor:
        """(N,) long: each record's pid."""
        return torch.tensor([r.pid for r in self.records], dtype=torch.long)

    @property
    def camids(self) -> torch.Tensor:
        """(N,) long: each record's camera id."""
        return torch.tensor([r.camid for r in self.records], dtype=torch.long)
