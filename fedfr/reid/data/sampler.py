"""The P x K identity sampler (Hermans et al.): every batch holds P identities x K images each.

``PKSampler`` yields dataset indices, P*K consecutive indices per batch (use it as a DataLoader's
``sampler`` with ``batch_size = p * k`` and ``drop_last = True``, or iterate ``batches()``).
An identity with fewer than K images is sampled with replacement (its images repeat in the
batch); with at least K, without replacement. Deterministic: the order depends only on
(seed, epoch); each ``__iter__`` uses the current epoch and then advances it (``set_epoch``
overrides).

Epoch length (``epoch=``):
- ``"images"`` (default; torchreid's ``RandomIdentitySampler`` and BoT): each identity's images
  are shuffled and cut into groups of K (the last short group topped up with that identity's
  other images, so a group never repeats an image when n >= K; an identity with n < K images
  gives one group, its images plus repeats). Batches take P distinct identities
  that still have groups, chosen at random, one group each, until fewer than P identities have
  groups left. One epoch therefore covers about every image once.
- ``"identities"`` (the thesis's STE-NVAN code): every identity appears exactly once per epoch;
  floor(#identities / P) batches.

``replace`` (the ``"identities"`` rule's draw of K items per identity): ``"as-needed"`` (default:
with replacement only when the identity has fewer than K items) or ``"always"`` (STE-NVAN's
``np.random.choice(tracks, K)``, with replacement even when it has K or more).
``video_pk_sampler`` is the video form: P identities x K tracklets, STE-NVAN's rules by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from fedfr.errors import ConfigError

EPOCH_RULES = ("images", "identities")
REPLACE_RULES = ("as-needed", "always")


class PKSampler(Sampler[int]):
    """P identities x K images per batch over ``labels`` (N,) of any hashable integer ids."""

    def __init__(self, labels: Sequence[int] | torch.Tensor, p: int, k: int, seed: int = 0,
                 epoch: str = "images", replace: str = "as-needed") -> None:
        if type(p) is not int or p < 1 or type(k) is not int or k < 1:
            raise ConfigError(f"PKSampler: p and k must be positive ints, got p={p!r}, k={k!r}")
        if epoch not in EPOCH_RULES:
            raise ConfigError(f"PKSampler: epoch must be one of {EPOCH_RULES}, got {epoch!r}")
        if replace not in REPLACE_RULES:
            raise ConfigError(f"PKSampler: replace must be one of {REPLACE_RULES}, "
                              f"got {replace!r}")
        if replace == "always" and epoch != "identities":
            raise ConfigError("PKSampler: replace='always' needs epoch='identities' (the "
                              "'images' epoch cuts each identity's items into groups)")
        labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
        groups: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            groups.setdefault(int(y), []).append(i)
        if len(groups) < p:
            raise ConfigError(f"PKSampler: p={p} identities per batch but the data has only "
                              f"{len(groups)} identities; lower p (the batch is P x K)")
        self.p, self.k, self.seed, self.epoch_rule = p, k, int(seed), epoch
        self.replace = replace
        self.ids = sorted(groups)
        self.index = {y: np.asarray(groups[y], dtype=np.int64) for y in self.ids}
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _draw(self, rng: np.random.Generator, y: int, n: int) -> list[int]:
        idx = self.index[y]
        return rng.choice(idx, size=n, replace=self.replace == "always" or len(idx) < n).tolist()

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of one epoch (default: the current one), each P*K indices in
        identity-major order (K of the first identity, then K of the second, ...)."""
        e = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, e])
        if self.epoch_rule == "identities":
            order = rng.permutation(len(self.ids))
            out = []
            for b in range(len(order) // self.p):
                ids = [self.ids[j] for j in order[b * self.p:(b + 1) * self.p]]
                out.append([i for y in ids for i in self._draw(rng, y, self.k)])
            return out
        chunks: dict[int, list[list[int]]] = {}
        for y in self.ids:
            idx = rng.permutation(self.index[y]).tolist()
            if len(idx) < self.k:
                idx += rng.choice(self.index[y], size=self.k - len(idx)).tolist()
            elif len(idx) % self.k:  # top the short last group up with other images of y
                short = set(idx[len(idx) - len(idx) % self.k:])
                others = np.asarray([i for i in self.index[y] if i not in short])
                extra = self.k - len(short)
                idx += rng.choice(others, size=extra, replace=False).tolist()
            chunks[y] = [idx[j:j + self.k] for j in range(0, len(idx), self.k)]
        out = []
        alive = [y for y in self.ids if chunks[y]]
        while len(alive) >= self.p:
            pick = rng.choice(len(alive), size=self.p, replace=False)
            ids = [alive[j] for j in pick]
            out.append([i for y in ids for i in chunks[y].pop()])
            alive = [y for y in alive if chunks[y]]
        return out

    def __iter__(self) -> Iterator[int]:
        batches = self.batches()
        self.epoch += 1
        for b in batches:
            yield from b

    def __len__(self) -> int:
        if self.epoch_rule == "identities":
            return (len(self.ids) // self.p) * self.batch_size
        return len(self.batches()) * self.batch_size


def video_pk_sampler(tracklets: Sequence, p: int = 8, k: int = 4, seed: int = 0,
                     epoch: str = "identities", replace: str = "always") -> PKSampler:
    """P identities x K tracklets per batch over ``tracklets`` (anything with a ``pid``).

    Defaults are the thesis's video setting (P = 8, K = 4) with STE-NVAN's rules: one epoch =
    every identity once, K tracklets drawn with replacement. Use with ``VideoClipDataset``
    (``fedfr.reid.data.rrs``): each index is a tracklet, turned into a T-frame RRS clip.
    """
    return PKSampler([t.pid for t in tracklets], p, k, seed=seed, epoch=epoch, replace=replace)
