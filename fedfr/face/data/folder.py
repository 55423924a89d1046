"""``ImageFolderSource``: one sub-folder per identity, image files inside (e.g. ORL/AT&T faces)."""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fedfr.digest import files_fingerprint
from fedfr.errors import DataFormatError
from fedfr.face.data.source import FaceSource

DEFAULT_EXTENSIONS = (".pgm", ".png", ".jpg", ".jpeg", ".bmp")


def natural_key(name: str) -> tuple:
    """Sort key ordering embedded numbers by value: s1 < s2 < s10, 2.png < 10.png."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)) + (name,)


def decode_image(data: Path | bytes, where: str) -> np.ndarray:
    """Decode an image file (path or encoded bytes) to (H, W, 3) uint8 RGB.

    Grey images become 3 equal channels; palette, alpha and CMYK images are converted to RGB;
    16-bit grey keeps its 8 high bits. ``where`` names the file/record in error messages.
    """
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            img.load()
            if img.mode.startswith("I;16"):
                arr = np.asarray(img).astype(np.uint16)
                return np.repeat((arr >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
            arr = np.array(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataFormatError(
            f"{where}: cannot decode image ({exc}); expected an image file PIL can read "
            f"(PGM, PNG, JPEG, BMP)") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataFormatError(f"{where}: decoded to shape {arr.shape}, expected (H, W, 3)")
    return np.ascontiguousarray(arr, dtype=np.uint8)


class ImageFolderSource(FaceSource):
    """Images under ``root/<identity>/<file>``; identities and files in natural order.

    Non-directories at the root (e.g. a README), hidden entries and files with other extensions
    are ignored; identity folders without images are skipped with a warning. With
    ``skip_converted`` a file named after a sibling image plus an image extension (``1.pgm.png``
    next to ``1.pgm``: a format conversion of the same picture) is skipped, with one warning.
    """

    def __init__(self, root: str | os.PathLike,
                 extensions: tuple[str, ...] = DEFAULT_EXTENSIONS, skip_converted: bool = True):
        self.root = Path(root)
        self.extensions = tuple(e.lower() for e in extensions)
        if not self.root.exists():
            raise DataFormatError(f"{self.root}: image folder does not exist; expected a folder "
                                  "with one sub-folder of images per identity")
        if not self.root.is_dir():
            raise DataFormatError(f"{self.root}: is not a folder; expected a folder with one "
                                  "sub-folder of images per identity")
        self.name = self.root.name or str(self.root)
        folders = sorted((d for d in self.root.iterdir()
                          if d.is_dir() and not d.name.startswith(".")),
                         key=lambda d: natural_key(d.name))
        if not folders:
            raise DataFormatError(f"{self.root}: no identity folders; expected one sub-folder "
                                  f"of images ({', '.join(self.extensions)}) per identity")
        self.paths: list[Path] = []
        self.identity_names = []
        labels: list[int] = []
        converted: list[Path] = []
        for folder in folders:
            files = sorted((f for f in folder.iterdir() if f.is_file()
                            and not f.name.startswith(".")
                            and f.suffix.lower() in self.extensions),
                           key=lambda f: natural_key(f.name))
            if skip_converted:
                names = {f.name for f in files}
                copies = [f for f in files if f.stem in names]
                converted += copies
                files = [f for f in files if f.stem not in names]
            if not files:
                warnings.warn(f"{folder}: identity folder has no images "
                              f"({', '.join(self.extensions)}); skipped", stacklevel=2)
                continue
            label = len(self.identity_names)
            self.identity_names.append(folder.name)
            self.paths.extend(files)
            labels.extend([label] * len(files))
        if converted:
            warnings.warn(
                f"{self.root}: skipped {len(converted)} files that are format conversions of "
                f"another image in the same folder (e.g. {converted[0].relative_to(self.root)})",
                stacklevel=2)
        if not self.identity_names:
            raise DataFormatError(f"{self.root}: none of the {len(folders)} identity folders "
                                  f"holds images with extensions {', '.join(self.extensions)}")
        self.labels = np.asarray(labels, dtype=np.int64)

    def load(self, i: int) -> np.ndarray:
        path = self.paths[self._check_index(int(i))]
        return decode_image(path, str(path))

    def describe(self) -> dict:
        return {"kind": "folder", "path": str(self.root.resolve()), "num_images": len(self),
                "num_identities": self.num_identities}

    def digest_extra(self) -> bytes:
        """The relative file names and each file's portable content fingerprint (size + sampled
        bytes, ``fedfr.digest``), so that a renamed or replaced file changes the digest."""
        if "_content" not in self.__dict__:  # read once per source object
            self._content = files_fingerprint(self.paths, "portable", root=self.root,
                                              what="image file")
        return self._content.encode()
