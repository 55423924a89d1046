"""``FaceSource``: the interface every dataset of labelled face images implements.

A source is an ordered, indexable set of N images with an identity label per image. Images are
decoded on demand (``load``) or in batches resized to the model input (``load_many``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import numpy as np
import torch

from fedfr.face.data.transforms import to_uint8_chw


class FaceSource:
    """Base class of labelled face datasets.

    Subclasses set ``name``, ``labels`` ((N,) int64, identity index per image in
    0..num_identities-1) and ``identity_names`` (one per identity), and implement ``load`` and
    ``describe``.
    """

    name: str = "source"
    labels: np.ndarray
    identity_names: list[str]

    @property
    def num_identities(self) -> int:
        """Number of identities K (labels lie in 0..K-1)."""
        return len(self.identity_names)

    def __len__(self) -> int:
        return int(len(self.labels))

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as an (H, W, 3) uint8 RGB array."""
        raise NotImplementedError

    def load_many(self, indices: Iterable[int], size: int) -> torch.Tensor:
        """Images ``indices`` resized to ``size`` x ``size``: uint8 tensor (n, 3, size, size).

        The default decodes one image at a time, so images of different sizes may be mixed.
        """
        idx = [int(i) for i in indices]
        out = torch.empty((len(idx), 3, size, size), dtype=torch.uint8)
        for row, i in enumerate(idx):
            out[row] = to_uint8_chw(self.load(self._check_index(i))[None], size)[0]
        return out

    def describe(self) -> dict:
        """JSON-able description: ``kind``, path or generator parameters, counts."""
        raise NotImplementedError

    def digest_extra(self) -> bytes:
        """Bytes beyond ``describe()`` and the labels that identify the data (e.g. file names)."""
        return b""

    def digest(self) -> str:
        """Stable 16-hex-char sha256 of ``describe()`` (without ``path``), extras and the labels.

        The location (``path``) is left out so that copies of one dataset at different paths
        (e.g. one per node) share a digest.
        """
        desc = {k: v for k, v in self.describe().items() if k != "path"}
        h = hashlib.sha256(json.dumps(desc, sort_keys=True).encode())
        h.update(self.digest_extra())
        h.update(np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        return h.hexdigest()[:16]

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.name}: image index {i} out of range for {n} images")
        return i % n

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, images={len(self)}, "
                f"identities={self.num_identities})")
