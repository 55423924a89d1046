"""Data layer: face sources (synthetic, image folder, RecordIO) and the federated split."""

from __future__ import annotations

import os
from typing import Any

from fedfr.errors import ConfigError
from fedfr.face.data.folder import ImageFolderSource
from fedfr.face.data.recordio import RecordIOSource, RecordIOWriter, write_source_as_recordio
from fedfr.face.data.source import FaceSource
from fedfr.face.data.split import ClientPart, FederatedSplit, SplitSpec, make_split
from fedfr.face.data.synthetic import SyntheticFaces

SOURCE_KINDS = ("synthetic", "folder", "recordio")

__all__ = [
    "SOURCE_KINDS", "ClientPart", "FaceSource", "FederatedSplit", "ImageFolderSource",
    "RecordIOSource", "RecordIOWriter", "SplitSpec", "SyntheticFaces", "build_source",
    "make_split", "write_source_as_recordio",
]


def build_source(kind: str, root: str | os.PathLike | None = None, **kw: Any) -> FaceSource:
    """The ``FaceSource`` of ``kind``: "synthetic" (``kw`` = SyntheticFaces arguments, no root),
    "folder" (``root`` = the image folder) or "recordio" (``root`` = .rec file or its folder).
    """
    if kind == "synthetic":
        if root:
            raise ConfigError(f"dataset 'synthetic' takes no data root, got {str(root)!r}")
        return SyntheticFaces(**kw)
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"dataset: unknown kind {kind!r}; expected one of {SOURCE_KINDS}")
    if not root:
        raise ConfigError(f"dataset '{kind}': a data root is required (the "
                          f"{'image folder' if kind == 'folder' else '.rec file or its folder'})")
    if kind == "folder":
        return ImageFolderSource(root, **kw)
    return RecordIOSource(root, **kw)
